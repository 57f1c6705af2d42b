/* test_cli: the leadsync binary as an operator runs it: status words,
 * migrate, import, lead show, and the README's settings table and command
 * list. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"
#include "settings.h"

static const char *bin(void)
{
	const char *b = getenv("LEADSYNC_TEST_BIN");

	return b && *b ? b : "build/test/leadsync";
}

TEST(cli_status_json_prints_the_design_recognitions)
{
	char *argv[] = { (char *)bin(), "status", "sold", "Оплачен", "spam", "accepted",
			 "В пути", "nonsense", "--json", NULL };
	char *out = NULL, *err = NULL;
	int rc = test_run(argv, NULL, NULL, &out, &err);

	if (rc != 0)
		test__fail(__FILE__, __LINE__, "exit %d: %s", rc, err);
	else if (strcmp(out,
			"{\"text\":\"sold\",\"status\":10,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"Оплачен\",\"status\":10,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"spam\",\"status\":5,\"reason\":6,\"accept\":false}\n"
			"{\"text\":\"accepted\",\"status\":6,\"reason\":null,\"accept\":true}\n"
			"{\"text\":\"В пути\",\"status\":8,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"nonsense\",\"status\":null,\"reason\":null,\"accept\":false}\n") != 0)
		test__fail(__FILE__, __LINE__, "unexpected output:\n%s", out);
	free(out);
	free(err);
}

/* Issue 8: the default statuses of the CRMs Russian-speaking networks use
 * most, and a reject reason's English name, all read (DESIGN.md "Extended
 * vocabulary"). */
TEST(cli_status_reads_the_words_real_crms_use)
{
	char *argv[] = { (char *)bin(), "status", "Отказ", "Недозвон", "Дубль", "Треш",
			 "Подтвержден", "Выкуплен", "Отправлен", "Невыкуп", "wrong number",
			 "refused", "Недозвон 3", "Отказ (дорого)", "--json", NULL };
	char *out = NULL, *err = NULL;
	int rc = test_run(argv, NULL, NULL, &out, &err);

	if (rc != 0)
		test__fail(__FILE__, __LINE__, "exit %d: %s", rc, err);
	else if (strcmp(out,
			"{\"text\":\"Отказ\",\"status\":5,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"Недозвон\",\"status\":3,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"Дубль\",\"status\":5,\"reason\":7,\"accept\":false}\n"
			"{\"text\":\"Треш\",\"status\":5,\"reason\":6,\"accept\":false}\n"
			"{\"text\":\"Подтвержден\",\"status\":6,\"reason\":null,\"accept\":true}\n"
			"{\"text\":\"Выкуплен\",\"status\":10,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"Отправлен\",\"status\":8,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"Невыкуп\",\"status\":11,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"wrong number\",\"status\":5,\"reason\":1,\"accept\":false}\n"
			"{\"text\":\"refused\",\"status\":5,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"Недозвон 3\",\"status\":3,\"reason\":null,\"accept\":false}\n"
			"{\"text\":\"Отказ (дорого)\",\"status\":5,\"reason\":null,\"accept\":false}\n") != 0)
		test__fail(__FILE__, __LINE__, "unexpected output:\n%s", out);
	free(out);
	free(err);
	if (test__failed())
		return;
	/* the readable form says "not recognised" for none of them */
	argv[13] = NULL;
	rc = test_run(argv, NULL, NULL, &out, &err);
	if (rc != 0 || strstr(out, "not recognised") || !strstr(out, "reason 1 wrong number"))
		test__fail(__FILE__, __LINE__, "exit %d:\n%s", rc, out);
	free(out);
	free(err);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

TEST(cli_status_reasons_lists_the_17_reasons)
{
	char *a1[] = { (char *)bin(), "status", "--reasons", NULL };
	char *a2[] = { (char *)bin(), "status", "--reasons", "--json", NULL };
	char *out = NULL, *err = NULL;
	int rc = test_run(a1, NULL, NULL, &out, &err);

	if (rc != 0 || count_lines(out) != 17 ||
	    strncmp(out, " 1  wrong number                 Некорректный номер               trash\n",
		    strlen(" 1  wrong number                 Некорректный номер               trash\n")) ||
	    !strstr(out, "\n 9  too expensive                Дорого\n") ||
	    !strstr(out, "\n17  rejected by timer            Отклонён по таймеру\n"))
		test__fail(__FILE__, __LINE__, "exit %d:\n%s", rc, out);
	free(out);
	free(err);
	if (test__failed())
		return;
	rc = test_run(a2, NULL, NULL, &out, &err);
	if (rc != 0 || count_lines(out) != 17 ||
	    strncmp(out, "{\"reason\":1,\"name\":\"wrong number\",\"name_ru\":"
			 "\"Некорректный номер\",\"trash\":true}\n",
		    strlen("{\"reason\":1,\"name\":\"wrong number\",\"name_ru\":"
			   "\"Некорректный номер\",\"trash\":true}\n")) ||
	    !strstr(out, "{\"reason\":17,\"name\":\"rejected by timer\",\"name_ru\":"
			 "\"Отклонён по таймеру\",\"trash\":false}\n"))
		test__fail(__FILE__, __LINE__, "exit %d:\n%s", rc, out);
	free(out);
	free(err);
}

TEST(cli_status_help_and_unknown_option)
{
	char *a1[] = { (char *)bin(), "status", "--help", NULL };
	char *a2[] = { (char *)bin(), "status", "sold", "--reason", NULL };
	char *a3[] = { (char *)bin(), "status", NULL };
	char *out = NULL, *err = NULL;
	int rc = test_run(a1, NULL, NULL, &out, &err);

	if (rc != 0 || strncmp(out, "usage: leadsync status TEXT...", 30) || strstr(out, "--help"))
		test__fail(__FILE__, __LINE__, "exit %d:\n%s", rc, out);
	free(out);
	free(err);
	if (test__failed())
		return;
	rc = test_run(a2, NULL, NULL, &out, &err);
	if (rc != 2 || *out || !strstr(err, "unknown option '--reason'"))
		test__fail(__FILE__, __LINE__, "exit %d: %s", rc, err);
	free(out);
	free(err);
	if (test__failed())
		return;
	rc = test_run(a3, NULL, NULL, &out, &err);
	if (rc != 2 || !strstr(err, "usage: leadsync status"))
		test__fail(__FILE__, __LINE__, "exit %d: %s", rc, err);
	free(out);
	free(err);
}

TEST(cli_unknown_command_and_bad_setting_are_usage_errors)
{
	char *a1[] = { (char *)bin(), "frobnicate", NULL };
	char *a2[] = { (char *)bin(), "--batch-max", "0", "status", "x", NULL };
	char *out = NULL, *err = NULL;
	int rc = test_run(a1, NULL, NULL, &out, &err);

	if (rc != 2 || !strstr(err, "unknown command 'frobnicate'"))
		test__fail(__FILE__, __LINE__, "exit %d: %s", rc, err);
	free(out);
	free(err);
	if (test__failed())
		return;
	rc = test_run(a2, NULL, NULL, &out, &err);
	if (rc != 2 || !strstr(err, "batch_max (LEADSYNC_BATCH_MAX): '0' is not a whole number in 1..100000"))
		test__fail(__FILE__, __LINE__, "exit %d: %s", rc, err);
	free(out);
	free(err);
}

/* Runs the CLI with LEADSYNC_DB=db; returns the exit code, output in *out. */
static int run_db(const char *db, char *const args[], const char *in, char **out, char **err)
{
	char *argv[16];
	char env[1024];
	const char *envp[] = { env, NULL };
	size_t i;

	snprintf(env, sizeof(env), "LEADSYNC_DB=%s", db);
	argv[0] = (char *)bin();
	for (i = 0; args[i] && i < 14; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	return test_run(argv, envp, in, out, err);
}

static const char network[] =
	"{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"
	"{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"Nutra X\", \"rule\": \"acme_crm\", "
	"\"params\": {\"host\": \"127.0.0.1:9001\", \"key\": \"s3cret\"}, \"secret_params\": [\"key\"], "
	"\"intervals\": {\"processing\": 600, \"accepted\": 10800, \"dates\": 3600}, "
	"\"hold_days\": 7, \"reject_reason\": 2, \"reject_after_days\": 30, "
	"\"tz\": \"Europe/Moscow\", \"landing_url\": \"https://shop.example/x\", "
	"\"click_param\": \"click_id\", \"enabled\": true}}\n"
	"{\"goal\": {\"offer\": 10, \"code\": \"lead\", \"payout\": \"fixed\", \"wm\": 5, \"pay\": 8, \"ref\": 0, \"currency\": \"USD\"}}\n"
	"{\"lead\": {\"id\": 1001, \"offer\": 10, \"ext\": \"A-17\", \"status\": 2, "
	"\"created\": \"2026-11-20T10:00:00Z\", \"goal\": \"lead\", \"click_id\": null, \"base\": 30, \"counts\": 1}}\n";

TEST(cli_migrate_twice_then_import_and_show)
{
	char *db = test_db_fresh("ls_cli_flow");
	char *mig[] = { "migrate", NULL };
	char *imp[] = { "import", "-", NULL };
	char *show[] = { "lead", "show", "1001", "--json", NULL };
	char *out = NULL, *err = NULL;
	int rc;

	if (!db)
		return;
	rc = run_db(db, mig, NULL, &out, &err);
	if (rc != 0 || !strstr(out, "applied "))
		test__fail(__FILE__, __LINE__, "first migrate: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	if (!test__failed()) {
		rc = run_db(db, mig, NULL, &out, &err);
		if (rc != 0 || strcmp(out, "database is up to date\n") != 0)
			test__fail(__FILE__, __LINE__, "second migrate: exit %d: %s%s", rc, out, err);
		free(out);
		free(err);
	}
	if (!test__failed()) {
		rc = run_db(db, imp, network, &out, &err);
		/* rules/acme_crm.lua does not exist: imported, with a warning */
		if (rc != 0 || !strstr(out, "1 advertisers, 1 offers, 1 goals, 1 leads") ||
		    !strstr(err, "leadsync: import: warning: offer 10 names rule 'acme_crm', but "
				 "./rules/acme_crm.lua does not exist (imported: deploy the rule to "
				 "poll it)\n"))
			test__fail(__FILE__, __LINE__, "import: exit %d: %s%s", rc, out, err);
		free(out);
		free(err);
	}
	if (!test__failed()) {
		rc = run_db(db, imp,
			    "{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"Y\","
			    " \"rule\": \"demo_crm\"}}\n",
			    &out, &err);
		if (rc != 0 || strstr(err, "warning"))
			test__fail(__FILE__, __LINE__, "import: exit %d: %s%s", rc, out, err);
		free(out);
		free(err);
	}
	if (!test__failed()) {
		rc = run_db(db, show, NULL, &out, &err);
		if (rc != 0)
			test__fail(__FILE__, __LINE__, "lead show: exit %d: %s", rc, err);
		else {
			const char *want[] = { "\"id\":1001", "\"offer\":10", "\"ext\":\"A-17\"",
					       "\"status\":2", "\"created\":\"2026-11-20T10:00:00Z\"",
					       "\"goal\":\"lead\"", "\"click_id\":null", "\"base\":30",
					       "\"counts\":1", "\"reason\":null", "\"approved_at\":null",
					       "\"hold_until\":null", "\"history\":[{", "\"source\":\"import\"" };
			size_t i;

			for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
				if (!strstr(out, want[i])) {
					test__fail(__FILE__, __LINE__, "lead show lacks %s: %s", want[i], out);
					break;
				}
		}
		free(out);
		free(err);
	}
	free(db);
}

TEST(cli_import_bad_line_names_it_and_writes_nothing)
{
	char *db = test_db_fresh("ls_cli_badline");
	char *mig[] = { "migrate", NULL };
	char *imp[] = { "import", NULL, NULL };
	char *show[] = { "lead", "show", "1001", NULL };
	char *out = NULL, *err = NULL, *path = NULL;
	struct buf f;
	int rc;

	if (!db)
		return;
	buf_init(&f, 0);
	if (buf_adds(&f, network) < 0 ||
	    buf_adds(&f, "{\"lead\": {\"id\": 1002, \"offer\": 10, \"ext\": \"A-18\", \"status\": 13}}\n") < 0)
		goto out;
	path = test_tmpfile(f.p);
	imp[1] = path;
	rc = run_db(db, mig, NULL, &out, &err);
	free(out);
	free(err);
	if (rc != 0) {
		test__fail(__FILE__, __LINE__, "migrate failed");
		goto out;
	}
	rc = run_db(db, imp, NULL, &out, &err);
	if (rc != 1 || !strstr(err, "line 5:") || !strstr(err, "nothing was written"))
		test__fail(__FILE__, __LINE__, "import: exit %d: %s", rc, err);
	free(out);
	free(err);
	if (test__failed())
		goto out;
	rc = run_db(db, show, NULL, &out, &err);
	if (rc != 1 || !strstr(err, "lead 1001 not found"))
		test__fail(__FILE__, __LINE__, "lead 1001 exists after a failed import: %d %s", rc, out);
	free(out);
	free(err);
out:
	if (path)
		unlink(path);
	free(path);
	buf_release(&f);
	free(db);
}

TEST(cli_readme_settings_table_matches_the_binary)
{
	struct buf md;
	char *readme = test_slurp("README.md");

	buf_init(&md, 0);
	if (!readme) {
		test__fail(__FILE__, __LINE__, "cannot read README.md");
		return;
	}
	if (settings_describe(&md, true) < 0)
		test__fail(__FILE__, __LINE__, "settings_describe failed");
	else if (!readme || !strstr(readme, md.p))
		test__fail(__FILE__, __LINE__,
			   "README.md's settings table is stale: paste `build/leadsync settings --markdown` "
			   "between the settings markers:\n%s", md.p);
	free(readme);
	buf_release(&md);
}

/* Every command `leadsync help` lists answers --help and -h with its usage
 * on stdout, exit 0, before reading any argument. */
TEST(cli_every_command_answers_help)
{
	char *argv[] = { (char *)bin(), "help", NULL };
	char *out = NULL, *err = NULL, *p, *list = NULL;
	size_t n = 0;

	if (test_run(argv, NULL, NULL, &list, &err) != 0 || !(p = strstr(list, "commands:\n"))) {
		test__fail(__FILE__, __LINE__, "help: %s%s", list, err);
		goto out;
	}
	free(err);
	err = NULL;
	for (p = strchr(p, '\n') + 1; strncmp(p, "  ", 2) == 0; p = strchr(p, '\n') + 1) {
		char name[32], want[64];
		char *a[] = { (char *)bin(), name, "--help", NULL };
		size_t len = strcspn(p + 2, " \n");
		int k;

		if (p[2] == ' ') /* the help text of a long line, on a line of its own */
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)len, p + 2);
		snprintf(want, sizeof(want), "usage: leadsync %s", name);
		for (k = 0; k < 2; k++) {
			int rc;

			a[2] = k ? "-h" : "--help";
			rc = test_run(a, NULL, NULL, &out, &err);
			if (rc != 0 || strncmp(out, want, strlen(want)) != 0 || *err) {
				test__fail(__FILE__, __LINE__, "%s %s: exit %d: %s%s", name, a[2], rc, out,
					   err);
				goto out;
			}
			free(out);
			free(err);
			out = err = NULL;
		}
		n++;
	}
	if (n < 11)
		test__fail(__FILE__, __LINE__, "only %zu commands in: %s", n, list);
out:
	free(list);
	free(out);
	free(err);
}

/* A wrong command line exits 2 and names the argument at fault. */
TEST(cli_usage_errors_exit_2_and_name_the_argument)
{
	static const char *const cases[][8] = {
		{ "rule", "test", "rules/demo_crm.lua", "--variant", "processing", "--leads", "x.json", "--params" },
		{ "import", "a.jsonl", "b.jsonl" },
		{ "check", "abc" },
		{ "check", "10", "--variant", "weekly" },
		{ "lead", "show", "x" },
		{ "migrate", "now" },
		{ "rule", "test", "rules/demo_crm.lua", "--variant", "processing", "--frobnicate", "1" },
		{ "rule", "test", "--case" },
	};
	static const char *const why[] = {
		"--params needs a value", "unexpected argument 'b.jsonl'", "'abc' is not an offer id",
		"--variant 'weekly'", "'x' is not a lead id", "unexpected argument 'now'",
		"unknown option '--frobnicate'", "--case needs a folder",
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[10] = { (char *)bin() };
		char *out = NULL, *err = NULL;
		size_t k;
		int rc;

		for (k = 0; k < 8 && cases[i][k]; k++)
			argv[k + 1] = (char *)cases[i][k];
		rc = test_run(argv, NULL, NULL, &out, &err);
		if (rc != 2 || !strstr(err, why[i]) || !strstr(err, "usage: leadsync"))
			test__fail(__FILE__, __LINE__, "%s %s: exit %d: %s", cases[i][0], cases[i][1], rc,
				   err);
		free(out);
		free(err);
		if (test__failed())
			return;
	}
}

#define RT_CASE "tests/rules/demo_crm_dates"

/* rule test on the demo_crm dates case, with extra arguments and env. */
static int rt_run(const char *const *extra, const char *env, const char *leads, char **out,
		  char **err)
{
	char *argv[32] = { (char *)bin(), "rule", "test", "rules/demo_crm.lua", "--variant", "dates",
			   "--leads", (char *)(leads ? leads : RT_CASE "/leads.json"), "--response",
			   RT_CASE "/answer.json", "--params", RT_CASE "/params.json", "--now",
			   "2026-11-23T12:00:00Z" };
	const char *envp[] = { env, NULL };
	int n = 14;

	while (extra && *extra && n < 30)
		argv[n++] = (char *)*extra++;
	argv[n] = NULL;
	return test_run(argv, env ? envp : NULL, NULL, out, err);
}

/* The leads' days (16th 00:30 UTC .. 22nd 23:59 UTC) move with the zone:
 * --tz, then the file's offer tz, then LEADSYNC_TZ, then UTC. */
TEST(cli_rule_test_honours_the_time_zone)
{
	static const char leads_tz[] =
		"{\"offer\": {\"id\": 10, \"tz\": \"America/Los_Angeles\"}, \"leads\": ["
		"{\"id\": 1101, \"ext\": \"A-41\", \"status\": 2, \"created\": \"2026-11-16T00:30:00Z\"},"
		"{\"id\": 1106, \"ext\": \"A-46\", \"status\": 2, \"created\": \"2026-11-22T23:59:00Z\"}]}";
	const char *tokyo[] = { "--tz", "Asia/Tokyo", NULL };
	const char *mars[] = { "--tz", "Mars/Olympus", NULL };
	char *file = test_tmpfile(leads_tz);
	char *out = NULL, *err = NULL;
	int rc;

	ASSERT(file);
	rc = rt_run(NULL, NULL, NULL, &out, &err);
	if (rc != 0 || !strstr(out, "(json, 2026-11-16 .. 2026-11-22)"))
		test__fail(__FILE__, __LINE__, "UTC: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	rc = rt_run(tokyo, NULL, NULL, &out, &err);
	if (!test__failed() && (rc != 0 || !strstr(out, "(json, 2026-11-16 .. 2026-11-23)") ||
				!strstr(out, "from=2026-11-16&to=2026-11-23")))
		test__fail(__FILE__, __LINE__, "--tz: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	rc = rt_run(NULL, "LEADSYNC_TZ=Asia/Tokyo", NULL, &out, &err);
	if (!test__failed() && (rc != 0 || !strstr(out, "(json, 2026-11-16 .. 2026-11-23)")))
		test__fail(__FILE__, __LINE__, "LEADSYNC_TZ: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	/* the file's zone beats LEADSYNC_TZ; --tz beats the file's */
	rc = rt_run(NULL, "LEADSYNC_TZ=Asia/Tokyo", file, &out, &err);
	if (!test__failed() && (rc != 0 || !strstr(out, "(json, 2026-11-15 .. 2026-11-22)")))
		test__fail(__FILE__, __LINE__, "file tz: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	rc = rt_run(tokyo, NULL, file, &out, &err);
	if (!test__failed() && (rc != 0 || !strstr(out, "(json, 2026-11-16 .. 2026-11-23)")))
		test__fail(__FILE__, __LINE__, "--tz over file: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	rc = rt_run(mars, NULL, NULL, &out, &err);
	if (!test__failed() && (rc != 2 || !strstr(err, "--tz: unknown time zone 'Mars/Olympus'")))
		test__fail(__FILE__, __LINE__, "unknown --tz: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	rc = rt_run(NULL, "LEADSYNC_TZ=Mars/Olympus", NULL, &out, &err);
	if (!test__failed() && (rc != 2 || !strstr(err, "LEADSYNC_TZ: unknown time zone 'Mars/Olympus'")))
		test__fail(__FILE__, __LINE__, "unknown LEADSYNC_TZ: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	unlink(file);
	free(file);
}

/* rule test computes the day bounds offline (the C library's reading of
 * the zone files) and must agree with the daemon's (PostgreSQL's, see
 * test_poller's poller_dates_bounds_follow_dst_in_postgresql): New York's
 * 23-hour 2026-03-08, Havana's 25-hour 2026-11-01 that starts at its first
 * (ambiguous) midnight, and Moscow's 25-hour 2014-10-26 (+4 to +3). */
TEST(cli_rule_test_day_bounds_follow_dst)
{
	static const char rule[] =
		"return {\n  process = function(data) end,\n"
		"  dates = { url = 'http://{host}/d?from={from}&to={to}&ufrom={ufrom}&uto={uto}"
		"&utom={utom}', days = 7 },\n}\n";
	static const struct {
		const char *tz, *created, *want;
	} cases[] = {
		{ "America/New_York", "2026-03-08T12:00:00Z",
		  "from=2026-03-08&to=2026-03-08&ufrom=1772946000&uto=1773028799&utom=1773028800" },
		{ "America/Havana", "2026-11-01T04:30:00Z",
		  "from=2026-11-01&to=2026-11-01&ufrom=1793505600&uto=1793595599&utom=1793595600" },
		{ "Europe/Moscow", "2014-10-26T12:00:00Z",
		  "from=2014-10-26&to=2014-10-26&ufrom=1414267200&uto=1414357199&utom=1414357200" },
	};
	char *rfile = test_tmpfile(rule);
	size_t i;

	ASSERT(rfile);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]) && !test__failed(); i++) {
		char leads[512];
		char *lfile, *out = NULL, *err = NULL;
		char *argv[] = { (char *)bin(), "rule", "test", rfile, "--variant", "dates",
				 "--leads", NULL, "--response", RT_CASE "/answer.json", "--params",
				 RT_CASE "/params.json", NULL };
		int rc;

		snprintf(leads, sizeof(leads),
			 "{\"offer\": {\"id\": 10, \"tz\": \"%s\"}, \"leads\": [{\"id\": 1, \"ext\": "
			 "\"A-1\", \"status\": 2, \"created\": \"%s\"}]}", cases[i].tz,
			 cases[i].created);
		lfile = test_tmpfile(leads);
		ASSERT(lfile);
		argv[7] = lfile;
		rc = test_run(argv, NULL, NULL, &out, &err);
		if (rc != 0 || !strstr(out, cases[i].want))
			test__fail(__FILE__, __LINE__, "%s: exit %d: %s%s", cases[i].tz, rc, out, err);
		free(out);
		free(err);
		unlink(lfile);
		free(lfile);
	}
	unlink(rfile);
	free(rfile);
}

TEST(cli_rule_test_bad_params_and_backwards_dates_are_usage_errors)
{
	const char *bad[] = { "--params", "{bad", NULL };
	const char *back[] = { "--from", "2026-11-22", "--to", "2026-11-16", NULL };
	char *out = NULL, *err = NULL;
	int rc = rt_run(bad, NULL, NULL, &out, &err);

	if (rc != 2 || !strstr(err, "--params: expected a JSON object") || *out)
		test__fail(__FILE__, __LINE__, "--params: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
	rc = rt_run(back, NULL, NULL, &out, &err);
	if (!test__failed() && (rc != 2 || !strstr(err, "--from '2026-11-22' is after --to '2026-11-16'")))
		test__fail(__FILE__, __LINE__, "--from/--to: exit %d: %s%s", rc, out, err);
	free(out);
	free(err);
}

/* Secrets are masked as `check` masks them: the file's secret_params,
 * --secret NAME, and names that look secret; in URLs, headers, bodies,
 * log lines and errors. */
TEST(cli_rule_test_masks_secrets)
{
	static const char rule[] =
		"return {\n"
		"  processing = { url = 'https://{host}/o?ids={idel}&acct={acct}&apiKey={apiKey}',\n"
		"    method = 'POST', batch = 10,\n"
		"    headers = { Authorization = 'Bearer {token}', ['X-Acct'] = '{acct}',\n"
		"                ['Content-Type'] = 'application/x-www-form-urlencoded' },\n"
		"    prepare = function(r) r.body = 'acct=' .. offer.params.acct .. '&password=pw1234&n=1' end },\n"
		"  process = function(data)\n"
		"    log('using ' .. offer.params.plain .. ' ' .. offer.params.acct)\n"
		"    error('denied for ' .. offer.params.token)\n"
		"  end,\n"
		"}\n";
	static const char leads[] =
		"{\"offer\": {\"id\": 3, \"secret_params\": [\"plain\"]}, \"leads\": ["
		"{\"id\": 1, \"ext\": \"X-1\", \"status\": 2, \"created\": \"2026-11-16T00:30:00Z\"}]}";
	static const char params[] =
		"{\"host\": \"crm.example\", \"acct\": \"acc-7781\", \"apiKey\": \"ak-555\","
		" \"token\": \"tk-9999\", \"plain\": \"pl-4242\"}";
	char *rf = test_tmpfile(rule), *lf = test_tmpfile(leads), *pf = test_tmpfile(params);
	char *af = test_tmpfile("[]");
	char rpath[300];
	char *argv[] = { (char *)bin(), "rule", "test", rpath, "--variant", "processing", "--leads", lf,
			 "--response", af, "--params", pf, "--secret", "acct", NULL };
	char *out = NULL, *err = NULL;
	int rc;

	ASSERT(rf && lf && pf && af);
	/* the rule must be a .lua path */
	snprintf(rpath, sizeof(rpath), "%s.lua", rf);
	ASSERT_EQ(rename(rf, rpath), 0);
	rc = test_run(argv, NULL, NULL, &out, &err);
	if (rc != 1 || strstr(out, "acc-7781") || strstr(out, "ak-555") || strstr(out, "tk-9999") ||
	    strstr(out, "pl-4242") || strstr(out, "pw1234") || strstr(err, "tk-9999") ||
	    !strstr(out, "/o?ids=X-1&acct=***&apiKey=***\n") ||
	    !strstr(out, "header    Authorization: Bearer ***\n") ||
	    !strstr(out, "header    X-Acct: ***\n") ||
	    !strstr(out, "body      acct=***&password=***&n=1\n") ||
	    !strstr(out, ": using *** ***\n") || !strstr(out, "denied for ***"))
		test__fail(__FILE__, __LINE__, "exit %d:\n%s%s", rc, out, err);
	free(out);
	free(err);
	unlink(rpath);
	unlink(lf);
	unlink(pf);
	unlink(af);
	free(rf);
	free(lf);
	free(pf);
	free(af);
}
/* The README's command list is the commands part of `leadsync help`
 * (scripts/readme-help.sh writes it: `make readme-help`). */
TEST(cli_readme_command_list_is_leadsync_help)
{
	char *argv[] = { (char *)bin(), "help", NULL };
	char *out = NULL, *err = NULL, *readme = NULL, *cut;
	const char *begin, *end;
	struct buf want;
	int rc = test_run(argv, NULL, NULL, &out, &err);

	buf_init(&want, 0);
	if (rc != 0) {
		test__fail(__FILE__, __LINE__, "help: exit %d: %s", rc, err);
		goto out;
	}
	/* the commands part: up to the blank line before the settings */
	cut = strstr(out, "\n\nsettings (");
	if (!cut) {
		test__fail(__FILE__, __LINE__, "help has no settings part:\n%s", out);
		goto out;
	}
	cut[1] = '\0';
	if (buf_adds(&want, "```\n") < 0 || buf_adds(&want, out) < 0 || buf_adds(&want, "```\n") < 0)
		goto out;
	readme = test_slurp("README.md");
	if (!readme) {
		test__fail(__FILE__, __LINE__, "cannot read README.md");
		goto out;
	}
	begin = readme ? strstr(readme, "<!-- commands:begin") : NULL;
	begin = begin ? strchr(begin, '\n') : NULL;
	end = begin ? strstr(begin, "<!-- commands:end -->") : NULL;
	if (!begin || !end) {
		test__fail(__FILE__, __LINE__, "README.md lacks the commands:begin/end markers");
		goto out;
	}
	begin++;
	if ((size_t)(end - begin) != want.len || memcmp(begin, want.p, want.len) != 0)
		test__fail(__FILE__, __LINE__,
			   "README.md's command list is not `leadsync help`'s: run `make readme-help`, "
			   "or put this between the commands markers:\n%s", want.p);
out:
	buf_release(&want);
	free(readme);
	free(out);
	free(err);
}
