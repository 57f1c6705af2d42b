/* config: `leadsync config check`: the effective settings, masked, and the
 * checks `leadsync run` makes before it starts, plus every enabled offer's
 * rule loaded once (see config.h). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "mask.h"
#include "poller.h"
#include "rule.h"
#include "store.h"

/* A connection string with its credentials masked, as key=value pairs
 * (a URI is shown in that form too); "***" when it does not parse. */
static int config__conninfo(const char *conninfo, struct buf *out)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	PQconninfoOption *o;
	bool first = true;
	int rc = 0;

	if (!opts)
		return buf_adds(out, "***");
	for (o = opts; o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		rc |= buf_addf(out, "%s%s=%s", first ? "" : " ", o->keyword,
			       mask_name(o->keyword) ? "***" : o->val);
		first = false;
	}
	PQconninfoFree(opts);
	return rc ? -1 : 0;
}

int config_describe(const struct settings *s, struct buf *out)
{
	size_t i;
	int rc = 0;

	rc |= buf_adds(out, "settings:\n");
	for (i = 0; i < settings_count; i++) {
		const struct setting *t = &settings_table[i];
		const char *p = (const char *)s + t->offset;
		const char *env = getenv(t->env);
		const char *from = settings_from_flag(s, t->name) ? "flag"
				   : env && *env			   ? "environment"
									   : "default";

		rc |= buf_addf(out, "  %-29s ", t->env);
		if (t->type == SETTING_INT) {
			rc |= buf_addf(out, "%ld", *(const long *)(const void *)p);
		} else {
			const char *v = *(char *const *)(const void *)p;

			if (!v)
				rc |= buf_adds(out, "unset");
			else if (!t->secret)
				rc |= buf_adds(out, v);
			else if (strcmp(t->name, "db") == 0)
				rc |= config__conninfo(v, out);
			else
				rc |= buf_adds(out, "***");
		}
		rc |= buf_addf(out, "  (%s)\n", from);
	}
	return rc ? -1 : 0;
}

/* Every enabled offer with a rule: its time zone is known and its rule
 * loads. Each rule is loaded once; a failure names the offers using it. */
static int config__offers(PGconn *c, const struct poller_config *pc, struct buf *out, char *err,
			  size_t errlen)
{
	PGresult *r = NULL;
	char msg[1024];
	int i, n, rc = -1;

	/* the zones PostgreSQL knows: the daemon leaves every zone rule to it */
	r = store_query(c, "offers' time zones",
			"SELECT id, tz FROM offers WHERE enabled AND rule IS NOT NULL AND tz IS NOT NULL"
			" AND tz NOT IN (SELECT name FROM pg_timezone_names) ORDER BY id LIMIT 1",
			0, NULL, err, errlen);
	if (!r)
		goto out;
	if (PQntuples(r)) {
		snprintf(err, errlen, "offer %s: unknown time zone '%s' (fix the offer's tz and "
			 "import it again)", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
		goto out;
	}
	PQclear(r);
	r = store_query(c, "offers' rules",
			"SELECT rule, string_agg(id::text, ', ' ORDER BY id), count(*) FROM offers "
			"WHERE enabled AND rule IS NOT NULL GROUP BY rule ORDER BY rule",
			0, NULL, err, errlen);
	if (!r)
		goto out;
	n = PQntuples(r);
	for (i = 0; i < n; i++) {
		const char *name = PQgetvalue(r, i, 0), *ids = PQgetvalue(r, i, 1);
		bool many = strcmp(PQgetvalue(r, i, 2), "1") != 0;
		struct rule_rt *rt = NULL;
		char path[4200];
		int v, k = 0;

		snprintf(path, sizeof(path), "%s/%s.lua", pc->rules_dir, name);
		if (rule_load(path, &pc->rule_limits, &rt, msg, sizeof(msg)) < 0) {
			snprintf(err, errlen, "offer%s %s: rule '%s' does not load: %s", many ? "s" : "",
				 ids, name, msg);
			goto out;
		}
		if (buf_addf(out, "  ok  rule %s loads (offer%s %s):", path, many ? "s" : "", ids) < 0)
			k = -1;
		for (v = 0; v < RULE_VARIANTS && k == 0; v++) {
			struct rule_variant_info vi;

			rule_variant_info(rt, (enum rule_variant)v, &vi);
			if (vi.present && buf_addf(out, " %s", rule_variant_name((enum rule_variant)v)) < 0)
				k = -1;
		}
		rule_free(rt);
		if (k < 0 || buf_addc(out, '\n') < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	if (buf_addf(out, "  ok  %d rule%s of the enabled offers load%s\n", n, n == 1 ? "" : "s",
		     n == 1 ? "s" : "") < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = 0;
out:
	PQclear(r);
	return rc;
}

int config_check(const struct settings *s, struct buf *out, char *err, size_t errlen)
{
	struct poller_config pc;
	PGconn *c = NULL;
	DIR *dir = NULL;
	const char *tz;
	int known, rc = -1, w = 0; /* w: a write to out failed */

	/* the values `leadsync run` hands its poller */
	poller_config_from_settings(&pc, s);
	tz = pc.tz && *pc.tz ? pc.tz : "UTC";
	if (config_describe(s, out) < 0 || buf_adds(out, "checks:\n") < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	dir = opendir(pc.rules_dir);
	if (!dir) {
		snprintf(err, errlen, "rules (LEADSYNC_RULES): cannot open folder '%s': %s",
			 pc.rules_dir, strerror(errno));
		goto out;
	}
	w |= buf_addf(out, "  ok  rules folder %s can be read\n", pc.rules_dir);
	if (!s->db || !*s->db) {
		snprintf(err, errlen, "no database configured: set LEADSYNC_DB or --db");
		goto out;
	}
	/* as `leadsync run` does: a host that does not answer fails in 5 s */
	setenv("PGCONNECT_TIMEOUT", "5", 0);
	if (store_connect(s->db, &c, err, errlen) < 0)
		goto out;
	w |= buf_addf(out, "  ok  database answers (PostgreSQL %d.%d)\n", PQserverVersion(c) / 10000,
		       PQserverVersion(c) % 10000);
	if (store_check_migrated(c, err, errlen) < 0)
		goto out;
	w |= buf_addf(out, "  ok  database holds all %zu migrations\n", store_migrations_count);
	/* the daemon leaves every zone rule to PostgreSQL */
	known = store_zone_known(c, tz, err, errlen);
	if (known <= 0) {
		if (!known)
			snprintf(err, errlen, "tz (LEADSYNC_TZ): unknown time zone '%s'", tz);
		goto out;
	}
	w |= buf_addf(out, "  ok  time zone %s is known\n", tz);
	if (w) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = config__offers(c, &pc, out, err, errlen);
out:
	if (dir)
		closedir(dir);
	PQfinish(c);
	return rc ? -1 : 0;
}
