/* cli: subcommand table and handlers of the leadsync binary. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "buf.h"
#include "config.h"
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
#include "views.h"

#define LEADSYNC_VERSION "0.1.0"

/* A subcommand: its handler, the line `leadsync help` shows, and the
 * usage that `leadsync NAME --help` prints (cli_main answers --help and -h
 * for every command from this row, before the handler runs). */
struct cli_cmd {
	const char *name;
	int (*fn)(struct settings *s, int argc, char **argv);
	const char *args;
	const char *help;
	const char *usage;
};

static int cli_help(struct settings *s, int argc, char **argv);

/* Exit codes: 0 ok, 1 the work failed, 2 the command line is wrong. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* The command cli_main is running: its row names usage errors. */
static const struct cli_cmd *cli_current;

static int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error: what is wrong (naming the argument), then the command's
 * synopsis, on stderr. Returns EXIT_USAGE. */
static int cli_usage(const char *fmt, ...)
{
	const char *p, *nl;
	va_list ap;

	fprintf(stderr, "leadsync: %s: ", cli_current ? cli_current->name : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	/* the synopsis only: the rest is for --help */
	for (p = cli_current ? cli_current->usage : ""; *p && (strncmp(p, "usage:", 6) == 0 || *p == ' ');
	     p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			nl = p + strlen(p) - 1;
		fwrite(p, 1, (size_t)(nl + 1 - p), stderr);
	}
	return EXIT_USAGE;
}

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

	if (argc != 1)
		return cli_usage("unexpected argument '%s'", argv[1]);
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

	if (argc < 2)
		return cli_usage("missing FILE (or - for stdin)");
	if (argc > 2)
		return cli_usage("unexpected argument '%s'", argv[2]);
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

	if (argc < 2 || strcmp(argv[1], "show") != 0)
		return cli_usage(argc < 2 ? "missing 'show'" : "unknown subcommand '%s'", argv[1]);
	if (argc < 3)
		return cli_usage("missing lead ID");
	if (argc > 3)
		return cli_usage("unexpected argument '%s'", argv[3]);
	if (parse_id(argv[2], &id) < 0)
		return cli_usage("'%s' is not a lead id", argv[2]);
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

/* ------------------------------------------------- the operator's views */

/* The options of the views (`offers`, `history`, `postbacks`): which ones
 * a command takes, and what they set. */
enum {
	VO_JSON = 1 << 0, VO_LIMIT = 1 << 1, VO_BEFORE = 1 << 2, VO_OFFER = 1 << 3,
	VO_VARIANT = 1 << 4, VO_OUTCOME = 1 << 5, VO_FAILED = 1 << 6, VO_SINCE = 1 << 7,
	VO_ADVERTISER = 1 << 8, VO_ERRORS = 1 << 9, VO_LEAD = 1 << 10, VO_FAILING = 1 << 11,
};

static const struct view_opt {
	const char *name;
	unsigned bit;
	bool value;
} view_opts[] = {
	{ "--json", VO_JSON, false },         { "--limit", VO_LIMIT, true },
	{ "--before", VO_BEFORE, true },      { "--offer", VO_OFFER, true },
	{ "--variant", VO_VARIANT, true },    { "--outcome", VO_OUTCOME, true },
	{ "--failed", VO_FAILED, false },     { "--since", VO_SINCE, true },
	{ "--advertiser", VO_ADVERTISER, true }, { "--errors", VO_ERRORS, false },
	{ "--lead", VO_LEAD, true },          { "--failing", VO_FAILING, false },
};

/* Reads a view's command line into f: the options in allowed, and at most
 * one positional ID (when id is not NULL; 0 when absent). Which options
 * were given go to *seen. Returns 0, or EXIT_USAGE after naming the
 * argument. */
static int view_args(int argc, char **argv, unsigned allowed, struct views_filter *f, bool *json,
		     int64_t *id, unsigned *seen)
{
	int i;

	*seen = 0;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL, *eq = strchr(a, '=');
		size_t nlen = eq && strncmp(a, "--", 2) == 0 ? (size_t)(eq - a) : strlen(a);
		const struct view_opt *o = NULL;
		size_t k;

		if (a[0] != '-') {
			if (!id)
				return cli_usage("unexpected argument '%s'", a);
			if (*id)
				return cli_usage("unexpected argument '%s': one ID at most", a);
			if (parse_id(a, id) < 0)
				return cli_usage("'%s' is not an id", a);
			continue;
		}
		for (k = 0; k < sizeof(view_opts) / sizeof(view_opts[0]); k++)
			if (strlen(view_opts[k].name) == nlen && strncmp(view_opts[k].name, a, nlen) == 0)
				o = &view_opts[k];
		if (!o || !(o->bit & allowed))
			return cli_usage("unknown option '%.*s'", (int)nlen, a);
		if (o->value) {
			v = eq && nlen < strlen(a) ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
			if (!v || !*v)
				return cli_usage("%s needs a value", o->name);
		} else if (nlen < strlen(a))
			return cli_usage("%s takes no value", o->name);
		*seen |= o->bit;
		switch (o->bit) {
		case VO_JSON:
			*json = true;
			break;
		case VO_FAILED:
		case VO_FAILING:
			f->failed = true;
			break;
		case VO_ERRORS:
			f->errors = true;
			break;
		case VO_LIMIT: {
			int64_t n;

			if (parse_id(v, &n) < 0 || n > VIEWS_LIMIT_MAX)
				return cli_usage("--limit '%s' is not a number in 1..%d", v,
						 VIEWS_LIMIT_MAX);
			f->limit = (int)n;
			break;
		}
		case VO_SINCE:
			if (views_since_parse(v, (int64_t)time(NULL), &f->since) < 0)
				return cli_usage("--since '%s' is not an ISO-8601 time or an age "
						 "(30m, 2h, 7d)", v);
			break;
		case VO_VARIANT:
			if (rule_variant_parse(v) < 0)
				return cli_usage("--variant '%s' is not processing, accepted or dates", v);
			f->variant = v;
			break;
		case VO_OUTCOME:
			f->outcome = v;
			break;
		default: {
			int64_t n;

			if (parse_id(v, &n) < 0)
				return cli_usage("%s '%s' is not an id", o->name, v);
			if (o->bit == VO_BEFORE)
				f->before = n;
			else if (o->bit == VO_OFFER)
				f->offer = n;
			else if (o->bit == VO_ADVERTISER)
				f->advertiser = n;
			else
				f->lead = n;
		}
		}
	}
	if ((*seen & VO_OUTCOME) && (*seen & VO_FAILED))
		return cli_usage("--outcome and --failed do not go together");
	{
		char err[256];

		if (views_filter_check(f, err, sizeof(err)) < 0)
			return cli_usage("--%s", err);
	}
	if (id && *id && (*seen & ~(unsigned)VO_JSON)) {
		for (i = 0; !(view_opts[i].bit & *seen & ~(unsigned)VO_JSON); i++)
			;
		return cli_usage("%s lists; it does not go with an ID", view_opts[i].name);
	}
	return 0;
}

/* Runs one view on the configured database and prints it. */
static int view_print(struct settings *s, int (*list)(PGconn *, const struct views_filter *,
						      enum views_format, struct buf *, char *,
						      size_t),
		      int (*one)(PGconn *, int64_t, enum views_format, struct buf *, char *, size_t),
		      const struct views_filter *f, int64_t id, bool json)
{
	enum views_format fmt = json ? VIEWS_JSON : VIEWS_TEXT;
	struct buf out;
	PGconn *c = NULL;
	char err[1024];
	int rc = EXIT_FAIL, r;

	buf_init(&out, 0);
	if (open_db(s, &c) < 0)
		goto out;
	r = id ? one(c, id, fmt, &out, err, sizeof(err)) : list(c, f, fmt, &out, err, sizeof(err));
	if (r == VIEWS_EINVAL) {
		rc = cli_usage("%s", err);
		goto out;
	}
	if (r < 0) {
		fprintf(stderr, "leadsync: %s: %s\n", cli_current ? cli_current->name : "", err);
		goto out;
	}
	if ((json && buf_addc(&out, '\n') < 0) || print_buf(stdout, &out) < 0)
		goto out;
	rc = EXIT_OK;
out:
	buf_release(&out);
	PQfinish(c);
	return rc;
}

static int cli_offers(struct settings *s, int argc, char **argv)
{
	struct views_filter f = { 0 };
	unsigned seen;
	bool json = false;
	int rc = view_args(argc, argv, VO_JSON | VO_LIMIT | VO_BEFORE | VO_OFFER | VO_FAILING, &f,
			   &json, NULL, &seen);

	return rc ? rc : view_print(s, views_offers, NULL, &f, 0, json);
}

static int cli_history(struct settings *s, int argc, char **argv)
{
	struct views_filter f = { 0 };
	unsigned seen;
	int64_t run = 0;
	bool json = false;
	int rc = view_args(argc, argv,
			   VO_JSON | VO_LIMIT | VO_BEFORE | VO_OFFER | VO_VARIANT | VO_OUTCOME |
				   VO_FAILED | VO_SINCE,
			   &f, &json, &run, &seen);

	return rc ? rc : view_print(s, views_polls, views_poll, &f, run, json);
}

static int cli_postbacks(struct settings *s, int argc, char **argv)
{
	struct views_filter f = { 0 };
	unsigned seen;
	int64_t id = 0;
	bool json = false;
	int rc = view_args(argc, argv,
			   VO_JSON | VO_LIMIT | VO_BEFORE | VO_ADVERTISER | VO_ERRORS | VO_SINCE |
				   VO_LEAD,
			   &f, &json, &id, &seen);

	return rc ? rc : view_print(s, views_postbacks, views_postback, &f, id, json);
}

/* `leadsync check`: one poll of an offer now, as the daemon would make it;
 * --save DIR keeps it as a `rule test --case` folder. */
static int cli_check(struct settings *s, int argc, char **argv)
{
	bool dry = has_flag(&argc, argv, "--dry-run");
	struct poller_config pc;
	struct buf out;
	char err[2048];
	const char *variant = NULL, *save = NULL;
	int64_t offer;
	int i, v = -1, rc;

	if (argc < 2)
		return cli_usage("missing OFFER");
	for (i = 2; i < argc; i++) {
		if (strncmp(argv[i], "--variant=", 10) == 0)
			variant = argv[i] + 10;
		else if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc)
			variant = argv[++i];
		else if (strncmp(argv[i], "--save=", 7) == 0)
			save = argv[i] + 7;
		else if (strcmp(argv[i], "--save") == 0 && i + 1 < argc)
			save = argv[++i];
		else if (strcmp(argv[i], "--variant") == 0 || strcmp(argv[i], "--save") == 0)
			return cli_usage("%s needs a value", argv[i]);
		else
			return cli_usage("unexpected argument '%s'", argv[i]);
	}
	if (parse_id(argv[1], &offer) < 0)
		return cli_usage("'%s' is not an offer id", argv[1]);
	if (variant && (v = rule_variant_parse(variant)) < 0)
		return cli_usage("--variant '%s' is not processing, accepted or dates", variant);
	if (save && !*save)
		return cli_usage("--save needs a folder");
	if (!s->db || !*s->db) {
		fprintf(stderr, "leadsync: no database configured: set LEADSYNC_DB or --db\n");
		return EXIT_FAIL;
	}
	poller_config_from_settings(&pc, s);
	pc.check_save = save;
	buf_init(&out, 0);
	rc = poller_check(s->db, &pc, offer, v, dry, &out, err, sizeof(err));
	if (print_buf(stdout, &out) < 0 && rc == 0)
		rc = 1;
	if (rc < 0)
		fprintf(stderr, "leadsync: check: %s\n", err);
	buf_release(&out);
	return rc == 0 ? EXIT_OK : EXIT_FAIL;
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

/* Reads `rule test` options (argv[0] is RULE) into o, from the command
 * line or a case's args file (where names it). Returns 0, or EXIT_USAGE
 * after saying which argument is wrong. */
static int rule_test_opts(struct settings *s, int argc, char **argv, const char *where,
			  struct ruletest_opts *o, struct buf *path)
{
	const char *variant = NULL;
	char at[600] = "";
	int i;

	if (where)
		snprintf(at, sizeof(at), "%s: ", where);
	if (argc < 1 || argv[0][0] == '-')
		return cli_usage("%smissing RULE", at);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--json") == 0) {
			o->json = true;
			continue;
		}
		if (strcmp(a, "--variant") != 0 && strcmp(a, "--leads") != 0 &&
		    strcmp(a, "--response") != 0 && strcmp(a, "--params") != 0 &&
		    strcmp(a, "--now") != 0 && strcmp(a, "--status") != 0 &&
		    strcmp(a, "--from") != 0 && strcmp(a, "--to") != 0 && strcmp(a, "--tz") != 0 &&
		    strcmp(a, "--secret") != 0 && strcmp(a, "--content-type") != 0)
			return cli_usage("%sunknown option '%s'", at, a);
		if (!v)
			return cli_usage("%s%s needs a value", at, a);
		i++;
		if (strcmp(a, "--variant") == 0) {
			variant = v;
			if (rule_variant_parse(v) < 0)
				return cli_usage("%s--variant '%s' is not processing, accepted or dates",
						 at, v);
			o->variant = (enum rule_variant)rule_variant_parse(v);
		} else if (strcmp(a, "--leads") == 0)
			o->leads = v;
		else if (strcmp(a, "--response") == 0) {
			if (o->nresponses == RULETEST_PAGES_MAX)
				return cli_usage("%sat most %d --response files", at, RULETEST_PAGES_MAX);
			o->responses[o->nresponses++] = v;
		} else if (strcmp(a, "--params") == 0)
			o->params = v;
		else if (strcmp(a, "--now") == 0) {
			if (parse_now(v, &o->now) < 0)
				return cli_usage("%s--now '%s' is not an ISO-8601 time or UNIX time", at, v);
		} else if (strcmp(a, "--status") == 0) {
			char *end;
			long n = strtol(v, &end, 10);

			if (*end || end == v || n < 100 || n > 599)
				return cli_usage("%s--status '%s' is not an HTTP status", at, v);
			if (o->nstatuses == RULETEST_PAGES_MAX)
				return cli_usage("%sat most %d --status", at, RULETEST_PAGES_MAX);
			o->statuses[o->nstatuses++] = (int)n;
		} else if (strcmp(a, "--from") == 0)
			o->from = v;
		else if (strcmp(a, "--to") == 0)
			o->to = v;
		else if (strcmp(a, "--tz") == 0)
			o->tz = v;
		else if (strcmp(a, "--content-type") == 0)
			o->content_type = v;
		else {
			if (o->nsecrets == RULETEST_SECRETS_MAX)
				return cli_usage("%sat most %d --secret", at, RULETEST_SECRETS_MAX);
			o->secrets[o->nsecrets++] = v;
		}
	}
	if (!variant)
		return cli_usage("%smissing --variant", at);
	if (!o->leads)
		return cli_usage("%smissing --leads", at);
	if (strchr(argv[0], '/') || strstr(argv[0], ".lua"))
		o->rule = argv[0];
	else if (buf_addf(path, "%s/%s.lua", s->rules, argv[0]) < 0)
		return cli_usage("%sRULE '%s' is too long", at, argv[0]);
	else
		o->rule = path->p;
	o->rule_label = argv[0];
	return 0;
}

/* `leadsync rule test --case DIR`: runs a case folder, compares. */
static int rule_test_case(struct settings *s, const char *dir, struct ruletest_opts *o,
			  struct buf *path, struct buf *out)
{
	struct ruletest_case c;
	struct buf diff;
	char err[2048], where[600];
	size_t dl = strlen(dir);
	char *d = strdup(dir);
	int rc, got;

	buf_init(&diff, 0);
	if (!d) {
		fprintf(stderr, "leadsync: rule test: out of memory\n");
		return EXIT_FAIL;
	}
	while (dl > 1 && d[dl - 1] == '/')
		d[--dl] = '\0';
	if (ruletest_case_read(d, &c, err, sizeof(err)) < 0) {
		rc = cli_usage("--case '%s' is not a case folder: %s", d, err);
		goto out;
	}
	snprintf(where, sizeof(where), "case %s/args", d);
	if ((rc = rule_test_opts(s, c.argc, c.argv, where, o, path)) != 0)
		goto out;
	o->label_base = d;
	got = ruletest_run(o, out, err, sizeof(err));
	if (got == RULETEST_EUSAGE) {
		rc = cli_usage("%s: %s", where, err);
		goto out;
	}
	got = got < 0 ? EXIT_FAIL : EXIT_OK;
	rc = EXIT_FAIL;
	{
		char want_name[700];

		snprintf(want_name, sizeof(want_name), "%s/expected.txt", d);
		switch (ruletest_diff(c.expected, out->p ? out->p : "", want_name, "rule test", &diff)) {
		case 0:
			if (got == c.exit_code) {
				printf("ok        case %s: the report matches expected.txt\n", d);
				rc = EXIT_OK;
			}
			break;
		case 1:
			break;
		default:
			fprintf(stderr, "leadsync: rule test: out of memory\n");
			goto out;
		}
	}
	if (rc != EXIT_OK) {
		if (print_buf(stdout, &diff) < 0)
			rc = EXIT_FAIL;
		if (got != c.exit_code)
			printf("exit      %d, expected %d\n", got, c.exit_code);
		fprintf(stderr, "leadsync: rule test: case %s differs from its expected.txt\n", d);
	}
out:
	ruletest_case_release(&c);
	buf_release(&diff);
	free(d);
	return rc;
}

/* `leadsync rule test`: a rule on files, no database, no network. */
static int cli_rule(struct settings *s, int argc, char **argv)
{
	struct ruletest_opts o;
	struct rule_limits lim = { 0 };
	struct buf out, path;
	char err[2048];
	int rc = EXIT_USAGE, r;

	memset(&o, 0, sizeof(o));
	buf_init(&out, 0);
	buf_init(&path, 4096);
	o.http_status = 200;
	o.now = (int64_t)time(NULL);
	/* --tz is a setting too: as a flag it wins over the leads file's zone,
	 * as LEADSYNC_TZ it only stands in for a file that names none */
	o.tz = settings_from_flag(s, "tz") ? s->tz : NULL;
	o.tz_default = s->tz;
	lim.instructions = s->rule_instructions;
	lim.memory = (size_t)s->rule_memory_mb << 20;
	lim.time_ms = (unsigned)s->rule_time_ms;
	lim.batch_max = (size_t)s->batch_max;
	o.limits = &lim;
	if (argc < 2) {
		rc = cli_usage("missing 'test'");
		goto out;
	}
	if (strcmp(argv[1], "test") != 0) {
		rc = cli_usage("unknown subcommand '%s'", argv[1]);
		goto out;
	}
	if (argc >= 3 && strcmp(argv[2], "--case") == 0) {
		if (argc != 4) {
			rc = cli_usage(argc < 4 ? "--case needs a folder"
						: "--case takes no other argument: '%s'",
				       argv[argc - 1]);
			goto out;
		}
		rc = rule_test_case(s, argv[3], &o, &path, &out);
		goto out;
	}
	if ((rc = rule_test_opts(s, argc - 2, argv + 2, NULL, &o, &path)) != 0)
		goto out;
	r = ruletest_run(&o, &out, err, sizeof(err));
	if (r == RULETEST_EUSAGE) {
		rc = cli_usage("%s", err);
		goto out;
	}
	rc = r < 0 ? EXIT_FAIL : EXIT_OK;
	if (print_buf(stdout, &out) < 0)
		rc = EXIT_FAIL;
	if (rc != EXIT_OK)
		fprintf(stderr, "leadsync: rule test: %s\n", err);
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

	if (argc > 1)
		return cli_usage("unexpected argument '%s'", argv[1]);
	buf_init(&out, 0);
	rc = settings_describe(&out, md) < 0 || print_buf(stdout, &out) < 0 ? EXIT_FAIL : EXIT_OK;
	buf_release(&out);
	return rc;
}

static int cli_run(struct settings *s, int argc, char **argv)
{
	if (argc != 1)
		return cli_usage("unexpected argument '%s'", argv[1]);
	if (!s->db || !*s->db) {
		fprintf(stderr, "leadsync: no database configured: set LEADSYNC_DB or --db\n");
		return EXIT_FAIL;
	}
	return daemon_run(s) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* `leadsync config check`: the settings as `run` reads them (masked) and
 * the checks `run` makes, plus every enabled offer's rule loaded. */
static int cli_config(struct settings *s, int argc, char **argv)
{
	struct buf out;
	char err[2048];
	int rc;

	if (argc < 2 || strcmp(argv[1], "check") != 0)
		return cli_usage(argc < 2 ? "missing 'check'" : "unknown subcommand '%s'", argv[1]);
	if (argc > 2)
		return cli_usage("unexpected argument '%s'", argv[2]);
	buf_init(&out, 0);
	rc = config_check(s, &out, err, sizeof(err));
	if (rc == 0 && buf_adds(&out, "configuration OK\n") < 0)
		rc = -1;
	if (print_buf(stdout, &out) < 0 && rc == 0) {
		snprintf(err, sizeof(err), "cannot write the report");
		rc = -1;
	}
	if (rc < 0)
		fprintf(stderr, "leadsync: config check: %s\n", err);
	buf_release(&out);
	return rc == 0 ? EXIT_OK : EXIT_FAIL;
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

		if (strcmp(argv[a], "--key") != 0 && strcmp(argv[a], "--seed") != 0 &&
		    strcmp(argv[a], "--step-ms") != 0 && strcmp(argv[a], "--flaky-key") != 0 &&
		    strcmp(argv[a], "--fail-every") != 0)
			return cli_usage("unexpected argument '%s'", argv[a]);
		if (!v || !*v)
			return cli_usage("%s needs a value", argv[a]);
		if (strcmp(argv[a], "--key") == 0)
			cfg.key = v;
		else if (strcmp(argv[a], "--flaky-key") == 0)
			cfg.flaky_key = v;
		else if (strcmp(argv[a], "--fail-every") == 0) {
			unsigned long n = strtoul(v, &end, 10);

			if (*end || end == v || *v == '-' || n < 1 || n > 1000000)
				return cli_usage("--fail-every '%s' is not a number in 1..1000000", v);
			cfg.fail_every = (unsigned)n;
			end = NULL;
		} else if (strcmp(argv[a], "--seed") == 0)
			cfg.seed = strtoull(v, &end, 10);
		else
			cfg.step_ms = strtoull(v, &end, 10);
		if (end && (*end || end == v || *v == '-'))
			return cli_usage("%s '%s' is not a whole number", argv[a], v);
		a++;
	}
	return demo_crm_run(&cfg) == 0 ? EXIT_OK : EXIT_FAIL;
}

static int cli_version(struct settings *s, int argc, char **argv)
{
	if (argc > 1)
		return cli_usage("unexpected argument '%s'", argv[1]);
	printf("leadsync %s\n", LEADSYNC_VERSION);
	return EXIT_OK;
}

static const char rule_usage[] =
	"usage: leadsync rule test RULE --variant processing|accepted|dates --leads LEADS.json\n"
	"         [--response FILE]... [--status N]... [--params JSON|FILE] [--now TIME]\n"
	"         [--content-type TYPE] [--from YYYY-MM-DD --to YYYY-MM-DD] [--tz ZONE]\n"
	"         [--secret NAME]... [--json]\n"
	"       leadsync rule test --case DIR\n"
	"Runs a rule on files: no database, no network. RULE is a file, or a name in the\n"
	"rules folder (acme_crm: LEADSYNC_RULES/acme_crm.lua). One --response per page;\n"
	"one --status for all pages, or one per page in order. --tz, else the leads\n"
	"file's offer \"tz\", else LEADSYNC_TZ, else UTC: the dates variant's zone.\n"
	"Secrets are masked: the offer's secret_params, each --secret NAME, and params\n"
	"whose name looks like a credential (key, token, secret, password, auth).\n"
	"--content-type gives every answer the Content-Type the CRM sends, so its\n"
	"charset converts the answer to UTF-8 as in the daemon.\n"
	"--case DIR runs a case folder (args, leads.json, answers, params.json,\n"
	"expected.txt, optional exit; `leadsync check --save` writes one) and compares\n"
	"its report with expected.txt: exit 0 on a match, 1 with a diff.\n";

static const struct cli_cmd cli_cmds[] = {
	{ "migrate", cli_migrate, "", "apply the database migrations that are missing",
	  "usage: leadsync migrate\n" },
	{ "import", cli_import, "FILE|-", "upsert advertisers, offers, goals and leads from JSON lines",
	  "usage: leadsync import FILE|-\n"
	  "Reads JSON lines (advertiser, offer, goal, lead, click records; - is stdin) and\n"
	  "upserts them in one transaction: a bad line writes nothing.\n" },
	{ "lead", cli_lead, "show ID [--json]", "show a lead and the history of its changes",
	  "usage: leadsync lead show ID [--json]\n" },
	{ "offers", cli_offers, "[--failing] [--json]",
	  "offer health: last run, failures, leads waiting per variant",
	  "usage: leadsync offers [--failing] [--offer N] [--limit N] [--before OFFER] [--json]\n"
	  "One row per offer that names a rule and variant: the rule, the last run, its\n"
	  "outcome and time, when the next is due, consecutive failures, the last error\n"
	  "(secrets masked), the leads waiting in the variant's statuses and who holds\n"
	  "the lease. --failing: only the variants failing now. Highest offer id first;\n"
	  "--limit offers a page (default 50, at most 1000), --before the next page.\n"
	  "--json: one JSON array.\n" },
	{ "history", cli_history, "[RUN] [--offer N] [--failed] [...]",
	  "poll runs, newest first, or one run whole: request, answer, edits",
	  "usage: leadsync history [--offer N] [--variant V] [--outcome O | --failed]\n"
	  "         [--since TIME] [--limit N] [--before RUN] [--json]\n"
	  "       leadsync history RUN [--json]\n"
	  "Lists poll runs, newest first: outcome, HTTP status, time taken, leads asked\n"
	  "and changed, the error. --failed: every outcome but ok and caught_up. --since\n"
	  "takes an ISO-8601 time or an age (30m, 2h, 7d). --limit runs a page (default\n"
	  "50, at most 1000), --before RUN the next page. With RUN: that run whole, the\n"
	  "request (secrets masked), HTTP status, timing, counters, the error with the\n"
	  "rule's file:line, notes, the answer's first bytes and the leads it changed.\n"
	  "--json: one JSON array, or one object for RUN.\n" },
	{ "postbacks", cli_postbacks, "[ID] [--lead N] [--errors] [...]",
	  "incoming postbacks, newest first, or one whole",
	  "usage: leadsync postbacks [--advertiser N] [--errors] [--since TIME] [--lead N]\n"
	  "         [--limit N] [--before ID] [--json]\n"
	  "       leadsync postbacks ID [--json]\n"
	  "Lists the incoming-postback log, newest first: the request (API key masked),\n"
	  "the HTTP status answered, the outcome, the lead, the error. --errors: only\n"
	  "those answered 4xx or 5xx. --since takes an ISO-8601 time or an age (30m, 2h,\n"
	  "7d). With ID: that postback whole, its body and the lead changes it made.\n"
	  "--json: one JSON array, or one object for ID.\n" },
	{ "check", cli_check, "OFFER [--variant V] [--dry-run] [--save DIR]",
	  "poll an offer's CRM now: the request, the answer, the edits",
	  "usage: leadsync check OFFER [--variant processing|accepted|dates] [--dry-run]\n"
	  "         [--save DIR]\n"
	  "Polls the offer now (every variant its rule declares, or --variant) as the\n"
	  "daemon would, and writes the edits (--dry-run: nothing). --save DIR keeps each\n"
	  "request as a case folder for `leadsync rule test --case DIR` (the second and\n"
	  "later as DIR.2, DIR.3 ...): leads, params with secrets masked, every page of\n"
	  "the answer, statuses, args and the report of this run as expected.txt.\n" },
	{ "run", cli_run, "", "run the daemon: listener, postbacks, timers and the CRM poller",
	  "usage: leadsync run\n" },
	{ "config", cli_config, "check", "check the settings, database and rules as `run` would",
	  "usage: leadsync config check\n"
	  "Prints the settings as `leadsync run` would read them (secrets masked, each\n"
	  "with where it came from), then checks what `run` needs: the time zone, the\n"
	  "rules folder, the database reachable and migrated, and every enabled offer's\n"
	  "time zone and rule (each rule loaded once). Ends with \"configuration OK\",\n"
	  "or exits 1 at the first failure with what failed and what to do.\n" },
	{ "demo-crm", cli_demo_crm, "[--key KEY] [--seed N]",
	  "the demo CRM of `make run` (--listen, default 127.0.0.1:9001)",
	  "usage: leadsync demo-crm [--listen HOST:PORT] [--key KEY] [--seed N] [--step-ms MS]\n"
	  "         [--flaky-key KEY] [--fail-every N]\n"
	  "Requests with --flaky-key (default " DEMO_CRM_FLAKY_KEY ", the demo's offer 11) fail\n"
	  "every N-th time (default 4), by turns a 500 and an HTML page sent as 200.\n" },
	{ "rule", cli_rule, "test RULE --variant V --leads F --response F [...]",
	  "run a rule on files: the request, the edits, the counters", rule_usage },
	{ "status", cli_status, "TEXT... | --reasons [--json]",
	  "show how status words are recognised, or list the reject reasons",
	  "usage: leadsync status TEXT... [--json]\n"
	  "       leadsync status --reasons [--json]\n"
	  "Shows how the daemon reads each CRM status word (status, reason, approval),\n"
	  "or lists the reject reasons.\n" },
	{ "settings", cli_settings, "[--markdown]", "list the settings and their variables",
	  "usage: leadsync settings [--markdown]\n" },
	{ "version", cli_version, "", "print the version", "usage: leadsync version\n" },
	{ "help", cli_help, "[COMMAND]", "this help, or a command's usage",
	  "usage: leadsync help [COMMAND]\n" },
};

#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

static const struct cli_cmd *cli_find(const char *name)
{
	size_t i;

	for (i = 0; i < CLI_NCMDS; i++)
		if (strcmp(name, cli_cmds[i].name) == 0)
			return &cli_cmds[i];
	return NULL;
}

static int cli_help(struct settings *s, int argc, char **argv)
{
	struct buf out;
	size_t i;
	int rc = 0;

	if (argc > 2)
		return cli_usage("unexpected argument '%s'", argv[2]);
	if (argc == 2) {
		const struct cli_cmd *c = cli_find(argv[1]);

		if (!c)
			return cli_usage("unknown command '%s'", argv[1]);
		fputs(c->usage, stdout);
		return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
	}
	buf_init(&out, 0);
	rc |= buf_adds(&out, "usage: leadsync [SETTINGS] COMMAND [ARGS]\n\ncommands:\n");
	for (i = 0; i < CLI_NCMDS; i++) {
		char head[128];

		snprintf(head, sizeof(head), "%s %s", cli_cmds[i].name, cli_cmds[i].args);
		/* a long head gets a line of its own, so the texts stay in a column */
		if (strlen(head) > 28)
			rc |= buf_addf(&out, "  %s\n  %-28s %s\n", head, "", cli_cmds[i].help);
		else
			rc |= buf_addf(&out, "  %-28s %s\n", head, cli_cmds[i].help);
	}
	rc |= buf_adds(&out, "\n`leadsync COMMAND --help` shows a command's usage.\n");
	rc |= buf_adds(&out, "\nsettings (flag, environment variable):\n");
	rc |= settings_describe(&out, false);
	if (rc == 0)
		rc = print_buf(stdout, &out);
	buf_release(&out);
	return rc ? EXIT_FAIL : EXIT_OK;
}

/* True when args hold --help or -h (before a "--"). */
static bool cli_wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	return false;
}

int cli_main(int argc, char **argv)
{
	struct settings s;
	char err[512];
	int rc = EXIT_USAGE;

	if (settings_load(&s, &argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "leadsync: %s\n", err);
		goto out;
	}
	log_level = log_level_parse(s.log_level);
	log_format = log_format_parse(s.log_format);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		rc = cli_help(&s, 1, argv);
		if (argc < 2)
			rc = EXIT_USAGE;
		goto out;
	}
	cli_current = cli_find(argv[1]);
	if (!cli_current) {
		fprintf(stderr, "leadsync: unknown command '%s': see 'leadsync help'\n", argv[1]);
		goto out;
	}
	if (cli_wants_help(argc - 1, argv + 1)) {
		fputs(cli_current->usage, stdout);
		rc = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
		goto out;
	}
	rc = cli_current->fn(&s, argc - 1, argv + 1);
out:
	cli_current = NULL;
	settings_release(&s);
	return rc;
}
