/* test_pack: what operators deploy with: `leadsync config check` against a
 * real PostgreSQL, `make install` into a staging folder, and docker/ (the
 * Dockerfile, compose file, systemd unit and alert rules) checked
 * statically, since Docker is not on the build machines. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *bin(void)
{
	const char *b = getenv("LEADSYNC_TEST_BIN");

	return b && *b ? b : "build/test/leadsync";
}

static bool exists(const char *path)
{
	return access(path, X_OK) == 0 || access(path, R_OK) == 0;
}

/* A fresh folder under /tmp, removed (with what is in it) after the test. */
static void rm_tree(void *dir)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", (char *)dir);
	if (strncmp(dir, "/tmp/leadsync-pack-", 19) == 0 && system(cmd) != 0)
		printf("  could not remove %s\n", (char *)dir);
	free(dir);
}

static char *tmp_dir(void)
{
	char tmpl[] = "/tmp/leadsync-pack-XXXXXX";
	char *d;

	if (!mkdtemp(tmpl))
		return NULL;
	d = strdup(tmpl);
	if (d)
		test_defer(rm_tree, d);
	return d;
}

/* Captured output of a command, freed after the test (and before each
 * reuse by cap_reset). */
struct cap {
	char *out, *err;
};

static void cap_reset(struct cap *c)
{
	free(c->out);
	free(c->err);
	c->out = c->err = NULL;
}

static void cap_free(void *p)
{
	cap_reset(p);
	free(p);
}

static struct cap *cap_new(void)
{
	struct cap *c = calloc(1, sizeof(*c));

	if (c)
		test_defer(cap_free, c);
	return c;
}

static bool write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fputs(text, f) >= 0;

	if (f && fclose(f) != 0)
		ok = false;
	return ok;
}

/* ------------------------------------------------------- config check */

/* Runs `leadsync config check` with env (NULL-terminated) and extra
 * arguments before the command (settings flags). */
static int config_check(const char *const *env, const char *flag, char **out, char **err)
{
	char *argv[] = { (char *)bin(), (char *)flag, "config", "check", NULL };

	if (!flag) {
		argv[1] = "config";
		argv[2] = "check";
		argv[3] = NULL;
	}
	return test_run(argv, env, NULL, out, err);
}

static const char pack_network[] =
	"{\"advertiser\": {\"id\": 1, \"name\": \"Acme\", \"api_key\": \"k-acme\"}}\n"
	"{\"offer\": {\"id\": 10, \"advertiser\": 1, \"name\": \"X\", \"rule\": \"demo_crm\", "
	"\"params\": {\"host\": \"127.0.0.1:9001\", \"key\": \"s3cret\"}, \"tz\": \"Europe/Moscow\"}}\n"
	"{\"offer\": {\"id\": 11, \"advertiser\": 1, \"name\": \"Y\", \"rule\": \"demo_crm\"}}\n"
	"{\"offer\": {\"id\": 12, \"advertiser\": 1, \"name\": \"Z\", \"rule\": \"gone\", "
	"\"enabled\": false}}\n"
	"{\"offer\": {\"id\": 13, \"advertiser\": 1, \"name\": \"W\", \"rule\": null}}\n";

/* A database of pack_network: migrated and imported through the CLI. */
static char *pack_db(const char *name, char *envdb, size_t len)
{
	char *db = test_db_fresh(name);
	char *mig[] = { (char *)bin(), "migrate", NULL };
	char *imp[] = { (char *)bin(), "import", "-", NULL };
	const char *env[] = { envdb, NULL };
	char *out = NULL, *err = NULL;
	int rc;

	if (!db)
		return NULL;
	snprintf(envdb, len, "LEADSYNC_DB=%s", db);
	rc = test_run(mig, env, NULL, &out, &err);
	free(out);
	free(err);
	if (rc == 0) {
		rc = test_run(imp, env, pack_network, &out, &err);
		free(out);
		free(err);
	}
	if (rc != 0) {
		test__fail(__FILE__, __LINE__, "migrate or import failed: %d", rc);
		free(db);
		return NULL;
	}
	return db;
}

TEST(pack_config_check_prints_masked_settings_and_ends_ok)
{
	char envdb[1024], envtok[] = "LEADSYNC_ADMIN_TOKEN=tok-very-secret-42";
	char *db = pack_db("ls_pack_ok", envdb, sizeof(envdb));
	char *out = NULL, *err = NULL;
	const char *env[] = { envdb, envtok, NULL };
	const char *last;
	int rc;

	ASSERT(db);
	test_defer(free, db);
	/* the test server trusts local users: the password only shows masking */
	snprintf(envdb, sizeof(envdb), "LEADSYNC_DB=%s password=hunter2-secret", db);
	rc = config_check(env, "--batch-max=5000", &out, &err);
	test_defer(free, out);
	test_defer(free, err);
	if (rc != 0)
		test__fail(__FILE__, __LINE__, "exit %d: %s%s", rc, out, err);
	ASSERT_EQ(rc, 0);
	ASSERT_EQ(strlen(err), 0);
	last = strstr(out, "configuration OK\n");
	ASSERT(last && last[17] == '\0');
	/* secrets masked, the rest of the connection string shown */
	ASSERT(!strstr(out, "hunter2-secret"));
	ASSERT(!strstr(out, "tok-very-secret-42"));
	ASSERT_CONTAINS(out, "password=***");
	ASSERT_CONTAINS(out, "  LEADSYNC_ADMIN_TOKEN          ***  (environment)\n");
	/* each value says where it came from */
	ASSERT_CONTAINS(out, "  LEADSYNC_BATCH_MAX            5000  (flag)\n");
	ASSERT_CONTAINS(out, "  LEADSYNC_RULES                ./rules  (default)\n");
	ASSERT_CONTAINS(out, "  ok  database holds all ");
	/* one load per rule, naming its enabled offers; disabled and ruleless
	 * offers are not checked */
	ASSERT_CONTAINS(out, "  ok  rule ./rules/demo_crm.lua loads (offers 10, 11): processing "
			     "accepted dates\n");
	ASSERT(!strstr(out, "gone"));
	ASSERT_CONTAINS(out, "  ok  1 rule of the enabled offers loads\n");
}

TEST(pack_config_check_stops_at_an_unmigrated_database)
{
	char *db = test_db_fresh("ls_pack_nomig");
	char envdb[1024];
	const char *env[] = { envdb, NULL };
	char *out = NULL, *err = NULL;
	int rc;

	ASSERT(db);
	test_defer(free, db);
	snprintf(envdb, sizeof(envdb), "LEADSYNC_DB=%s", db);
	rc = config_check(env, NULL, &out, &err);
	test_defer(free, out);
	test_defer(free, err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(out, "  ok  database answers (PostgreSQL ");
	ASSERT(!strstr(out, "configuration OK"));
	ASSERT_CONTAINS(err, "leadsync: config check: ");
	ASSERT_CONTAINS(err, "(run 'leadsync migrate')");
}

/* A rule that no longer compiles is named with its file and line, and with
 * the offers that use it; so are a missing rules folder, a bad zone, and a
 * rule over the daemon's limits. */
TEST(pack_config_check_names_the_rule_that_does_not_load)
{
	char envdb[1024], envrules[300], path[300];
	char *db = pack_db("ls_pack_badrule", envdb, sizeof(envdb));
	char *dir = tmp_dir();
	const char *env[] = { envdb, envrules, NULL };
	struct cap *c = cap_new();
	int rc;

	ASSERT(db);
	test_defer(free, db);
	ASSERT(dir && c);
	snprintf(path, sizeof(path), "%s/demo_crm.lua", dir);
	ASSERT(write_file(path, "return {\n  processing = { url = 'http://x/{idel}' },\n"
				"  process = function(data)\n"));
	snprintf(envrules, sizeof(envrules), "LEADSYNC_RULES=%s", dir);
	rc = config_check(env, NULL, &c->out, &c->err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(c->out, "  ok  database holds all ");
	ASSERT(!strstr(c->out, "configuration OK"));
	ASSERT_CONTAINS(c->err, "config check: offers 10, 11: rule 'demo_crm' does not load: ");
	ASSERT_CONTAINS(c->err, "/demo_crm.lua:4: ");

	cap_reset(c);
	snprintf(envrules, sizeof(envrules), "LEADSYNC_RULES=%s/nope", dir);
	rc = config_check(env, NULL, &c->out, &c->err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(c->err, "rules (LEADSYNC_RULES): cannot open folder '");
	ASSERT(!strstr(c->out, "database answers"));

	/* the zone is PostgreSQL's to know: checked once the database answers */
	cap_reset(c);
	env[1] = "LEADSYNC_RULES=rules";
	rc = config_check(env, "--tz=Mars/Olympus", &c->out, &c->err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(c->err, "tz (LEADSYNC_TZ): unknown time zone 'Mars/Olympus'");
	ASSERT_CONTAINS(c->out, "  ok  database holds all ");

	/* the rules load under run's limits: a batch over --batch-max fails */
	cap_reset(c);
	rc = config_check(env, "--batch-max=7", &c->out, &c->err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(c->err, "rule 'demo_crm' does not load: rules/demo_crm.lua: processing: "
				"batch must be an integer in 1..7");
}

TEST(pack_config_check_without_a_database_says_what_to_set)
{
	const char *env[] = { "LEADSYNC_RULES=rules", "LEADSYNC_DB=", NULL };
	char *out = NULL, *err = NULL;
	int rc = config_check(env, NULL, &out, &err);

	test_defer(free, out);
	test_defer(free, err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(out, "  LEADSYNC_DB                   unset  (default)\n");
	ASSERT_CONTAINS(err, "no database configured: set LEADSYNC_DB or --db");
}

/* ------------------------------------------------------------ install */

static int run_make(const char *a1, const char *a2, char **out, char **err)
{
	char *argv[] = { "/usr/bin/make", "-s", "install", (char *)a1, (char *)a2, NULL };

	return test_run(argv, NULL, NULL, out, err);
}

TEST(pack_make_install_lays_out_the_files)
{
	static const char *const files[] = {
		"/usr/local/bin/leadsync",
		"/usr/local/share/leadsync/rules/demo_crm.lua",
		"/usr/local/lib/systemd/system/leadsync.service",
		"/usr/local/share/doc/leadsync/README.md",
		"/usr/local/share/doc/leadsync/rules.md",
		"/usr/local/share/doc/leadsync/alerts.yml",
	};
	char *dir = tmp_dir(), arg[300], path[600];
	struct cap *c = cap_new();
	char *unit;
	struct stat st;
	size_t i;
	int rc;

	ASSERT(dir && c);
	snprintf(arg, sizeof(arg), "DESTDIR=%s", dir);
	rc = run_make(arg, NULL, &c->out, &c->err);
	if (rc != 0)
		test__fail(__FILE__, __LINE__, "make install: exit %d: %s%s", rc, c->out, c->err);
	ASSERT_EQ(rc, 0);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", dir, files[i]);
		if (stat(path, &st) != 0)
			test__fail(__FILE__, __LINE__, "make install: no %s", path);
		ASSERT(stat(path, &st) == 0);
	}
	snprintf(path, sizeof(path), "%s/usr/local/bin/leadsync", dir);
	ASSERT(access(path, X_OK) == 0);
	/* PREFIX moves everything, and the unit's paths with it */
	snprintf(arg, sizeof(arg), "PREFIX=%s/usr", dir);
	cap_reset(c);
	rc = run_make(arg, NULL, &c->out, &c->err);
	ASSERT_EQ(rc, 0);
	snprintf(path, sizeof(path), "%s/usr/lib/systemd/system/leadsync.service", dir);
	unit = test_slurp(path);
	ASSERT(unit);
	test_defer(free, unit);
	snprintf(path, sizeof(path), "ExecStart=%s/usr/bin/leadsync run\n", dir);
	ASSERT_CONTAINS(unit, path);
	snprintf(path, sizeof(path), "LEADSYNC_RULES=%s/usr/share/leadsync/rules\n", dir);
	ASSERT_CONTAINS(unit, path);
	ASSERT(!strstr(unit, "/usr/local/"));
	/* systemd's own check, where systemd is installed: the unit is
	 * verified against the files it names, here the ones just installed */
	if (exists("/usr/bin/systemd-analyze")) {
		char *v[] = { "/usr/bin/systemd-analyze", "verify", "--man=no",
			      "--recursive-errors=no", NULL, NULL };

		snprintf(path, sizeof(path), "%s/usr/lib/systemd/system/leadsync.service", dir);
		v[4] = path;
		cap_reset(c);
		rc = test_run(v, NULL, NULL, &c->out, &c->err);
		if (rc != 0 || (c->err && *c->err))
			test__fail(__FILE__, __LINE__, "systemd-analyze verify: exit %d: %s%s", rc,
				   c->out, c->err);
	} else {
		printf("  systemd-analyze is not installed: the unit's keys only\n");
	}
}

/* ------------------------------------------------------------- docker */

TEST(pack_docker_files_pass_the_static_checks)
{
	char *argv[] = { "/usr/bin/python3", "scripts/check-docker", NULL };
	char *out = NULL, *err = NULL;
	int rc = test_run(argv, NULL, NULL, &out, &err);

	test_defer(free, out);
	test_defer(free, err);
	if (rc != 0)
		test__fail(__FILE__, __LINE__, "scripts/check-docker: exit %d:\n%s%s", rc, out, err);
	ASSERT_EQ(rc, 0);
	ASSERT_STREQ(out, "docker/ checked\n");
}

/* The checker bites: a Dockerfile that runs as root, copies what is not
 * there and lacks a -dev package, and a compose file whose daemon does not
 * wait for the import, are each refused with the reason. */
TEST(pack_docker_check_refuses_broken_files)
{
	char *dir = tmp_dir(), df[300], ign[300], cf[300];
	char *text, *p, *out = NULL, *err = NULL;
	char *argv[] = { "/usr/bin/python3", "scripts/check-docker", "--dockerfile", df,
			 "--compose", cf, NULL };
	int rc;

	ASSERT(dir);
	snprintf(df, sizeof(df), "%s/Dockerfile", dir);
	snprintf(ign, sizeof(ign), "%s/Dockerfile.dockerignore", dir);
	snprintf(cf, sizeof(cf), "%s/compose.yml", dir);
	text = test_slurp("docker/Dockerfile");
	ASSERT(text);
	test_defer(free, text);
	p = strstr(text, "\nUSER ");
	ASSERT(p);
	memcpy(p + 1, "#SER", 4);
	p = strstr(text, "COPY docs/ docs/");
	ASSERT(p);
	memcpy(p, "COPY dogs/ dogs/", 16);
	p = strstr(text, "libpq-dev ");
	ASSERT(p);
	memcpy(p, "          ", 10);
	ASSERT(write_file(df, text));
	ASSERT(write_file(ign, "build\n"));
	text = test_slurp("docker/compose.yml");
	ASSERT(text);
	test_defer(free, text);
	p = strstr(text, "      import:\n        condition: service_completed_successfully");
	ASSERT(p);
	memcpy(p + 6, "xmport", 6);
	ASSERT(write_file(cf, text));
	rc = test_run(argv, NULL, NULL, &out, &err);
	test_defer(free, out);
	test_defer(free, err);
	ASSERT_EQ(rc, 1);
	ASSERT_CONTAINS(out, "the runtime stage has no USER: it would run as root");
	ASSERT_CONTAINS(out, "COPY dogs/: no such path in the repository");
	ASSERT_CONTAINS(out, "the build stage does not install libpq-dev");
	ASSERT_CONTAINS(out, "leadsync depends on xmport, which is not a service");
}

TEST(pack_docker_yaml_passes_yamllint)
{
	char *argv[] = { "/usr/bin/yamllint", "-s", "-c", "docker/yamllint.yml", "docker/compose.yml",
			 "docker/alerts.yml", NULL };
	char *out = NULL, *err = NULL;
	int rc;

	if (!exists(argv[0])) {
		test__fail(__FILE__, __LINE__, "yamllint is not installed: run scripts/deps.sh");
		return;
	}
	rc = test_run(argv, NULL, NULL, &out, &err);
	if (rc != 0)
		test__fail(__FILE__, __LINE__, "yamllint: exit %d:\n%s%s", rc, out, err);
	free(out);
	free(err);
}

/* promtool (Debian's prometheus package) checks the alert rules' PromQL
 * where it is installed; elsewhere check-docker's structure check stands. */
TEST(pack_alert_rules_pass_promtool)
{
	char *argv[] = { "/usr/bin/promtool", "check", "rules", "docker/alerts.yml", NULL };
	char *out = NULL, *err = NULL;
	int rc;

	if (!exists(argv[0])) {
		printf("  promtool is not installed: alerts.yml checked by yamllint and check-docker\n");
		return;
	}
	rc = test_run(argv, NULL, NULL, &out, &err);
	if (rc != 0 || !strstr(out, "SUCCESS"))
		test__fail(__FILE__, __LINE__, "promtool check rules: exit %d:\n%s%s", rc, out, err);
	free(out);
	free(err);
}
