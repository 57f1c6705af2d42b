/* cli: subcommand table and handlers of the leadsync binary. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "buf.h"
#include "demo_crm.h"
#include "daemon.h"
#include "history.h"
#include "import.h"
#include "lead.h"
#include "log.h"
#include "poller.h"
#include "rule.h"
#include "ruletest.h"
#include "settings.h"
#include "status.h"
#include "store.h"

#define LEADSYNC_VERSION "0.1.0"

struct cli_cmd {
	const char *name;
	int (*fn)(struct settings *s, int argc, char **argv);
	const char *args;
	const char *help;
};

static int cli_help(struct settings *s, int argc, char **argv);

/* Exit codes: 0 ok, 1 the work failed, 2 the command line is wrong. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static bool has_flag(int *argc, char **argv, const char *flag)
{
	int i, o;
	bool found = false;

	for (i = 1, o = 1; i < *argc; i++) {
		if (strcmp(argv[i], flag) == 0)
			found = true;
		else
			argv[o++] = argv[i];
	}
	*argc = o;
	argv[o] = NULL;
	return found;
}

static int print_buf(FILE *f, const struct buf *b)
{
	if (b->len && fwrite(b->p, 1, b->len, f) != b->len)
		return -1;
	return fflush(f);
}

static int open_db(const struct settings *s, PGconn **c)
{
	char err[512];

	if (!s->db || !*s->db) {
		fprintf(stderr, "leadsync: no database configured: set LEADSYNC_DB or --db\n");
		return -1;
	}
	if (store_connect(s->db, c, err, sizeof(err)) < 0) {
		fprintf(stderr, "leadsync: %s\n", err);
		return -1;
	}
	return 0;
}

static int cli_migrate(struct settings *s, int argc, char **argv)
{
	PGconn *c = NULL;
	char err[1024];
	int applied = 0, rc = EXIT_FAIL;

	if (argc != 1) {
		fprintf(stderr, "usage: leadsync migrate\n");
		return EXIT_USAGE;
	}
	if (open_db(s, &c) < 0)
		goto out;
	if (store_migrate(c, &applied, err, sizeof(err)) < 0) {
		fprintf(stderr, "leadsync: migrate: %s\n", err);
		goto out;
	}
	if (applied)
		printf("applied %d migration%s\n", applied, applied == 1 ? "" : "s");
	else
		printf("database is up to date\n");
	rc = EXIT_OK;
out:
	PQfinish(c);
	return rc;
}

/* Offers naming a rule file that is not there yet: a warning, not an
 * error (rules may be deployed after their offers). */
static void print_import_warnings(const struct import_stats *st, const char *rules)
{
	struct buf w;
	const char *p, *nl;

	buf_init(&w, 0);
	if (import_missing_rules(st, rules, &w) > 0)
		for (p = w.p; (nl = strchr(p, '\n')) != NULL; p = nl + 1)
			fprintf(stderr, "leadsync: import: warning: %.*s\n", (int)(nl - p), p);
	buf_release(&w);
}

static int cli_import(struct settings *s, int argc, char **argv)
{
	struct import_stats st = { 0 };
	PGconn *c = NULL;
	FILE *in = NULL;
	char err[1024];
	int rc = EXIT_FAIL;

	if (argc != 2) {
		fprintf(stderr, "usage: leadsync import FILE|-\n");
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-") == 0)
		in = stdin;
	else if (!(in = fopen(argv[1], "r"))) {
		fprintf(stderr, "leadsync: import: cannot open '%s': %s\n", argv[1], strerror(errno));
		goto out;
	}
	if (open_db(s, &c) < 0)
		goto out;
	if (import_run(c, in, &st, err, sizeof(err)) < 0) {
		fprintf(stderr, "leadsync: import %s: %s; nothing was written\n",
			in == stdin ? "-" : argv[1], err);
		goto out;
	}
	printf("imported %zu line%s: %zu advertisers, %zu offers, %zu goals, %zu leads, %zu clicks\n",
	       st.lines, st.lines == 1 ? "" : "s", st.advertisers, st.offers, st.goals, st.leads,
	       st.clicks);
	print_import_warnings(&st, s->rules);
	rc = EXIT_OK;
out:
	if (in && in != stdin)
		fclose(in);
	PQfinish(c);
	return rc;
}

static int parse_id(const char *s, int64_t *id)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v <= 0)
		return -1;
	*id = v;
	return 0;
}

static int cli_lead(struct settings *s, int argc, char **argv)
{
	bool json = has_flag(&argc, argv, "--json");
	struct buf out;
	PGconn *c = NULL;
	char err[512];
	int64_t id;
	int rc = EXIT_FAIL;

	if (argc != 3 || strcmp(argv[1], "show") != 0) {
		fprintf(stderr, "usage: leadsync lead show ID [--json]\n");
		return EXIT_USAGE;
	}
	if (parse_id(argv[2], &id) < 0) {
		fprintf(stderr, "leadsync: lead show: '%s' is not a lead id\n", argv[2]);
		return EXIT_USAGE;
	}
	buf_init(&out, 0);
	if (open_db(s, &c) < 0)
		goto out;
	if (history_lead_show(c, id, json, &out, err, sizeof(err)) < 0) {
		fprintf(stderr, "leadsync: %s\n", err);
		goto out;
	}
	if (print_buf(stdout, &out) < 0)
		goto out;
	rc = EXIT_OK;
out:
	buf_release(&out);
	PQfinish(c);
	return rc;
}

static const char check_usage[] =
	"usage: leadsync check OFFER [--variant processing|accepted|dates] [--dry-run]\n";

/* `leadsync check`: one poll of an offer now, as the daemon would make it. */
static int cli_check(struct settings *s, int argc, char **argv)
{
	bool dry = has_flag(&argc, argv, "--dry-run");
	struct poller_config pc;
	struct buf out;
	char err[2048];
	const char *variant = NULL;
	int64_t offer;
	int i, v = -1, rc;

	if (argc < 2)
		goto usage;
	for (i = 2; i < argc; i++) {
		if (strncmp(argv[i], "--variant=", 10) == 0)
			variant = argv[i] + 10;
		else if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc)
			variant = argv[++i];
		else
			goto usage;
	}
	if (parse_id(argv[1], &offer) < 0) {
		fprintf(stderr, "leadsync: check: '%s' is not an offer id\n", argv[1]);
		return EXIT_USAGE;
	}
	if (variant && (v = rule_variant_parse(variant)) < 0) {
		fprintf(stderr, "leadsync: check: variant '%s' is not processing, accepted or dates\n",
			variant);
		return EXIT_USAGE;
	}
	if (!s->db || !*s->db) {
		fprintf(stderr, "leadsync: no database configured: set LEADSYNC_DB or --db\n");
		return EXIT_FAIL;
	}
	poller_config_from_settings(&pc, s);
	buf_init(&out, 0);
	rc = poller_check(s->db, &pc, offer, v, dry, &out, err, sizeof(err));
	if (print_buf(stdout, &out) < 0 && rc == 0)
		rc = 1;
	if (rc < 0)
		fprintf(stderr, "leadsync: check: %s\n", err);
	buf_release(&out);
	return rc == 0 ? EXIT_OK : EXIT_FAIL;
usage:
	fputs(check_usage, stderr);
	return EXIT_USAGE;
}

/* Appends s padded with spaces to width columns (UTF-8 aware, so Cyrillic
 * words line up with Latin ones). */
static int add_padded(struct buf *out, const char *s, size_t width)
{
	size_t cols = 0;
	const char *p;

	for (p = s; *p; p++)
		if (((unsigned char)*p & 0xc0) != 0x80)
			cols++;
	if (buf_adds(out, s) < 0)
		return -1;
	for (; cols < width; cols++)
		if (buf_addc(out, ' ') < 0)
			return -1;
	return buf_addc(out, ' ');
}

static int status_line(struct buf *out, const char *text, bool json)
{
	struct status_match m;
	bool ok = status_recognise(NULL, text, strlen(text), &m);

	if (json) {
		int rc = buf_adds(out, "{\"text\":");

		rc |= buf_add_json_str(out, text, strlen(text));
		if (ok)
			rc |= buf_addf(out, ",\"status\":%d", m.status);
		else
			rc |= buf_adds(out, ",\"status\":null");
		if (m.reason)
			rc |= buf_addf(out, ",\"reason\":%d", m.reason);
		else
			rc |= buf_adds(out, ",\"reason\":null");
		rc |= buf_addf(out, ",\"accept\":%s}\n", m.accept ? "true" : "false");
		return rc ? -1 : 0;
	}
	if (add_padded(out, text, 20) < 0)
		return -1;
	if (!ok)
		return buf_adds(out, "not recognised: no status change\n");
	if (buf_addf(out, "%d %s (%s)", m.status, status_code(m.status),
		     status_name_ru(m.status)) < 0)
		return -1;
	if (m.accept && buf_adds(out, ", approve: payouts computed") < 0)
		return -1;
	if (m.reason && buf_addf(out, ", reason %d %s", m.reason, reason_name(m.reason)) < 0)
		return -1;
	if (m.status == LS_CANCEL && !m.reason && buf_adds(out, ", the offer's default reason") < 0)
		return -1;
	return buf_addc(out, '\n');
}

static const char status_usage[] =
	"usage: leadsync status TEXT... [--json]\n"
	"       leadsync status --reasons [--json]\n"
	"Shows how each TEXT reads as a CRM's status word (numbers, our codes, the\n"
	"Russian names, the synonyms and the reject reasons' names; case and\n"
	"ё-insensitive, a trailing count or note in brackets ignored). --reasons\n"
	"lists the reject reasons: id, English and Russian name, trash or not.\n"
	"--json prints one JSON object per line.\n";

/* One line per standard reject reason: "6  trash or test  Треш или тест  trash". */
static int reasons_list(struct buf *out, bool json)
{
	int r, rc = 0;

	for (r = 1; r <= REASON_STD_MAX && rc == 0; r++) {
		if (json) {
			rc |= buf_addf(out, "{\"reason\":%d,\"name\":", r);
			rc |= buf_add_json_str(out, reason_name(r), strlen(reason_name(r)));
			rc |= buf_adds(out, ",\"name_ru\":");
			rc |= buf_add_json_str(out, reason_name_ru(r), strlen(reason_name_ru(r)));
			rc |= buf_addf(out, ",\"trash\":%s}\n", reason_is_trash(r) ? "true" : "false");
			continue;
		}
		rc |= buf_addf(out, "%2d  ", r);
		rc |= add_padded(out, reason_name(r), 28);
		if (reason_is_trash(r)) {
			rc |= add_padded(out, reason_name_ru(r), 32);
			rc |= buf_adds(out, "trash\n");
		} else {
			rc |= buf_addf(out, "%s\n", reason_name_ru(r));
		}
	}
	return rc ? -1 : 0;
}

static int cli_status(struct settings *s, int argc, char **argv)
{
	bool json = has_flag(&argc, argv, "--json");
	bool reasons = has_flag(&argc, argv, "--reasons");
	struct buf out;
	int i, rc = EXIT_OK;

	if (has_flag(&argc, argv, "--help") || has_flag(&argc, argv, "-h")) {
		fputs(status_usage, stdout);
		return EXIT_OK;
	}
	for (i = 1; i < argc; i++)
		if (strncmp(argv[i], "--", 2) == 0) {
			fprintf(stderr, "leadsync: status: unknown option '%s'\n%s", argv[i],
				status_usage);
			return EXIT_USAGE;
		}
	if (argc < 2 && !reasons) {
		fputs(status_usage, stderr);
		return EXIT_USAGE;
	}
	buf_init(&out, 0);
	if (reasons && reasons_list(&out, json) < 0)
		rc = EXIT_FAIL;
	for (i = 1; i < argc; i++)
		if (status_line(&out, argv[i], json) < 0)
			rc = EXIT_FAIL;
	if (print_buf(stdout, &out) < 0)
		rc = EXIT_FAIL;
	buf_release(&out);
	return rc;
}

static int parse_now(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (lead_time_parse(s, out) == 0)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		return -1;
	*out = v;
	return 0;
}

static const char rule_test_usage[] =
	"usage: leadsync rule test RULE --variant processing|accepted|dates --leads LEADS.json\n"
	"       --response FILE [--response FILE...] [--params JSON|FILE] [--now TIME]\n"
	"       [--status N] [--from YYYY-MM-DD --to YYYY-MM-DD --tz ZONE] [--json]\n"
	"RULE is a file, or a name in the rules folder (acme_crm: LEADSYNC_RULES/acme_crm.lua)\n";

/* `leadsync rule test`: a rule on files, no database, no network. */
static int cli_rule(struct settings *s, int argc, char **argv)
{
	struct ruletest_opts o;
	struct rule_limits lim = { 0 };
	struct buf out, path;
	char err[2048];
	const char *variant = NULL;
	int i, rc = EXIT_USAGE;

	memset(&o, 0, sizeof(o));
	buf_init(&out, 0);
	buf_init(&path, 4096);
	o.http_status = 200;
	o.now = (int64_t)time(NULL);
	o.json = has_flag(&argc, argv, "--json");
	if (argc < 3 || strcmp(argv[1], "test") != 0)
		goto usage;
	for (i = 3; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			goto usage;
		i++;
		if (strcmp(a, "--variant") == 0)
			variant = v;
		else if (strcmp(a, "--leads") == 0)
			o.leads = v;
		else if (strcmp(a, "--response") == 0) {
			if (o.nresponses == RULETEST_PAGES_MAX) {
				fprintf(stderr, "leadsync: rule test: at most %d --response files\n",
					RULETEST_PAGES_MAX);
				goto out;
			}
			o.responses[o.nresponses++] = v;
		} else if (strcmp(a, "--params") == 0)
			o.params = v;
		else if (strcmp(a, "--now") == 0) {
			if (parse_now(v, &o.now) < 0) {
				fprintf(stderr, "leadsync: rule test: --now '%s' is not an ISO-8601 time or UNIX time\n", v);
				goto out;
			}
		} else if (strcmp(a, "--status") == 0) {
			char *end;
			long n = strtol(v, &end, 10);

			if (*end || n < 100 || n > 599) {
				fprintf(stderr, "leadsync: rule test: --status '%s' is not an HTTP status\n", v);
				goto out;
			}
			o.http_status = (int)n;
		} else if (strcmp(a, "--from") == 0)
			o.from = v;
		else if (strcmp(a, "--to") == 0)
			o.to = v;
		else if (strcmp(a, "--tz") == 0)
			o.tz = v;
		else {
			fprintf(stderr, "leadsync: rule test: unknown option '%s'\n", a);
			goto usage;
		}
	}
	if (!variant || !o.leads)
		goto usage;
	if (rule_variant_parse(variant) < 0) {
		fprintf(stderr, "leadsync: rule test: variant '%s' is not processing, accepted or dates\n",
			variant);
		goto out;
	}
	o.variant = (enum rule_variant)rule_variant_parse(variant);
	if (strchr(argv[2], '/') || strstr(argv[2], ".lua"))
		o.rule = argv[2];
	else if (buf_addf(&path, "%s/%s.lua", s->rules, argv[2]) < 0)
		goto usage;
	else
		o.rule = path.p;
	lim.instructions = s->rule_instructions;
	lim.memory = (size_t)s->rule_memory_mb << 20;
	lim.batch_max = (size_t)s->batch_max;
	o.limits = &lim;
	rc = ruletest_run(&o, &out, err, sizeof(err)) < 0 ? EXIT_FAIL : EXIT_OK;
	if (print_buf(stdout, &out) < 0)
		rc = EXIT_FAIL;
	if (rc != EXIT_OK)
		fprintf(stderr, "leadsync: rule test: %s\n", err);
	goto out;
usage:
	fputs(rule_test_usage, stderr);
out:
	buf_release(&out);
	buf_release(&path);
	return rc;
}

static int cli_settings(struct settings *s, int argc, char **argv)
{
	bool md = has_flag(&argc, argv, "--markdown");
	struct buf out;
	int rc;

	buf_init(&out, 0);
	rc = settings_describe(&out, md) < 0 || print_buf(stdout, &out) < 0 ? EXIT_FAIL : EXIT_OK;
	buf_release(&out);
	return rc;
}

static int cli_run(struct settings *s, int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: leadsync run\n");
		return EXIT_USAGE;
	}
	if (!s->db || !*s->db) {
		fprintf(stderr, "leadsync: no database configured: set LEADSYNC_DB or --db\n");
		return EXIT_FAIL;
	}
	return daemon_run(s) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* `leadsync demo-crm`: the CRM of `make run`. --listen is the settings'
 * flag; left at the daemon's default it means the demo's own address. */
static int cli_demo_crm(struct settings *s, int argc, char **argv)
{
	struct demo_crm_config cfg = { 0 };
	const char *listen_def = NULL;
	size_t i;
	int a;

	for (i = 0; i < settings_count; i++)
		if (strcmp(settings_table[i].name, "listen") == 0)
			listen_def = settings_table[i].def;
	cfg.addr = listen_def && strcmp(s->listen, listen_def) == 0 ? DEMO_CRM_LISTEN : s->listen;
	for (a = 1; a < argc; a++) {
		const char *v = a + 1 < argc ? argv[a + 1] : NULL;
		char *end = NULL;

		if (!v)
			goto usage;
		if (strcmp(argv[a], "--key") == 0 && *v)
			cfg.key = v;
		else if (strcmp(argv[a], "--seed") == 0)
			cfg.seed = strtoull(v, &end, 10);
		else if (strcmp(argv[a], "--step-ms") == 0)
			cfg.step_ms = strtoull(v, &end, 10);
		else
			goto usage;
		if (end && (*end || end == v || *v == '-'))
			goto usage;
		a++;
	}
	return demo_crm_run(&cfg) == 0 ? EXIT_OK : EXIT_FAIL;
usage:
	fprintf(stderr, "usage: leadsync demo-crm [--listen HOST:PORT] [--key KEY] [--seed N] "
			"[--step-ms MS]\n");
	return EXIT_USAGE;
}

static int cli_version(struct settings *s, int argc, char **argv)
{
	printf("leadsync %s\n", LEADSYNC_VERSION);
	return EXIT_OK;
}

static const struct cli_cmd cli_cmds[] = {
	{ "migrate", cli_migrate, "", "apply the database migrations that are missing" },
	{ "import", cli_import, "FILE|-", "upsert advertisers, offers, goals and leads from JSON lines" },
	{ "lead", cli_lead, "show ID [--json]", "show a lead and the history of its changes" },
	{ "check", cli_check, "OFFER [--variant V] [--dry-run]",
	  "poll an offer's CRM now: the request, the answer, the edits" },
	{ "run", cli_run, "", "run the daemon: listener, postbacks, timers and the CRM poller" },
	{ "demo-crm", cli_demo_crm, "[--key KEY] [--seed N]",
	  "the demo CRM of `make run` (--listen, default 127.0.0.1:9001)" },
	{ "rule", cli_rule, "test RULE --variant V --leads F --response F [...]",
	  "run a rule on files: the request, the edits, the counters" },
	{ "status", cli_status, "TEXT... | --reasons [--json]",
	  "show how status words are recognised, or list the reject reasons" },
	{ "settings", cli_settings, "[--markdown]", "list the settings and their variables" },
	{ "version", cli_version, "", "print the version" },
	{ "help", cli_help, "", "this help" },
};

static int cli_help(struct settings *s, int argc, char **argv)
{
	struct buf out;
	size_t i;
	int rc = 0;

	buf_init(&out, 0);
	rc |= buf_adds(&out, "usage: leadsync [SETTINGS] COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++) {
		char head[64];

		snprintf(head, sizeof(head), "%s %s", cli_cmds[i].name, cli_cmds[i].args);
		rc |= buf_addf(&out, "  %-28s %s\n", head, cli_cmds[i].help);
	}
	rc |= buf_adds(&out, "\nsettings (flag, environment variable):\n");
	rc |= settings_describe(&out, false);
	if (rc == 0)
		rc = print_buf(stdout, &out);
	buf_release(&out);
	return rc ? EXIT_FAIL : EXIT_OK;
}

int cli_main(int argc, char **argv)
{
	struct settings s;
	char err[512];
	size_t i;
	int rc = EXIT_USAGE;

	if (settings_load(&s, &argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "leadsync: %s\n", err);
		goto out;
	}
	log_level = log_level_parse(s.log_level);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		rc = cli_help(&s, argc, argv);
		if (argc < 2)
			rc = EXIT_USAGE;
		goto out;
	}
	for (i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
		if (strcmp(argv[1], cli_cmds[i].name) == 0) {
			rc = cli_cmds[i].fn(&s, argc - 1, argv + 1);
			goto out;
		}
	fprintf(stderr, "leadsync: unknown command '%s': see 'leadsync help'\n", argv[1]);
out:
	settings_release(&s);
	return rc;
}
