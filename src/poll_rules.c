/* poll_rules: the poller's rules cache and its offers' status words cache
 * (poller_int.h). */
#include "poller_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "log.h"
#include "poll_sql.h"
#include "store.h"

void poller__rule_put(struct poll_rule *r)
{
	size_t i;

	if (r && --r->refs == 0) {
		/* no job holds a runtime: every pair holding r has ended */
		for (i = 0; i < r->nidle; i++)
			if (r->idle[i] != r->rt)
				rule_free(r->idle[i]);
		rule_free(r->rt);
		free(r->idle);
		pthread_mutex_destroy(&r->mu);
		free(r);
	}
}

/* On a rule thread: a runtime of r for this thread alone (NULL with err
 * when a clone cannot be made). */
struct rule_rt *poller__rt_take(struct poll_rule *r, char *err, size_t errlen)
{
	struct rule_rt *rt = NULL;

	pthread_mutex_lock(&r->mu);
	if (r->nidle)
		rt = r->idle[--r->nidle];
	else
		r->made++;
	pthread_mutex_unlock(&r->mu);
	if (!rt && rule_clone(r->rt, &rt, err, errlen) < 0) {
		pthread_mutex_lock(&r->mu);
		r->made--;
		pthread_mutex_unlock(&r->mu);
		return NULL;
	}
	return rt;
}

/* Gives rt back to r's idle runtimes (there is room: capidle is kept at
 * made, every runtime ever made). */
void poller__rt_give(struct poll_rule *r, struct rule_rt *rt)
{
	struct rule_rt **v;

	pthread_mutex_lock(&r->mu);
	if (r->nidle == r->capidle) {
		v = realloc(r->idle, (r->made + 1) * sizeof(*v));
		if (!v) { /* out of memory: this one is dropped */
			r->made--;
			pthread_mutex_unlock(&r->mu);
			if (rt != r->rt)
				rule_free(rt);
			return;
		}
		r->idle = v;
		r->capidle = r->made + 1;
	}
	r->idle[r->nidle++] = rt;
	pthread_mutex_unlock(&r->mu);
}

static int poller__rule_load(struct poller *p, struct poll_rule_entry *e, char *err, size_t errlen)
{
	char path[4096 + POLL_RULE_NAME_MAX + 8];
	struct poll_rule *r;
	struct rule_rt *rt;

	snprintf(path, sizeof(path), "%s/%s.lua", p->rules_dir, e->name);
	p->st.rule_loads++;
	if (rule_load(path, &p->cfg.rule_limits, &rt, err, errlen) < 0) {
		p->st.rule_load_errors++;
		return -1;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		rule_free(rt);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->rt = rt;
	r->refs = 1;
	pthread_mutex_init(&r->mu, NULL);
	r->idle = malloc(sizeof(*r->idle));
	if (r->idle) { /* else the first job clones it */
		r->idle[0] = rt;
		r->nidle = r->capidle = 1;
	}
	r->made = 1;
	poller__rule_put(e->cur);
	e->cur = r;
	e->err[0] = '\0';
	return 0;
}

static bool poller__rule_eq(const struct htab_node *x, const void *key)
{
	return strcmp(container_of(x, struct poll_rule_entry, hn)->name, key) == 0;
}

/* The current version of rule name, with a reference taken; NULL with err
 * when it cannot be loaded. */
struct poll_rule *poller__rule_get(struct poller *p, const char *name, char *err,
					  size_t errlen)
{
	uint64_t h = htab_hash(name, strlen(name));
	struct htab_node *x = htab_find(&p->rules, h, poller__rule_eq, name);
	struct poll_rule_entry *e = x ? container_of(x, struct poll_rule_entry, hn) : NULL;

	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || htab_add(&p->rules, &e->hn, h) < 0) {
			free(e);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		snprintf(e->name, sizeof(e->name), "%s", name);
	}
	if (!e->cur) {
		if (e->err[0] && poller__now_ms() - e->failed_ms < (uint64_t)p->cfg.rule_retry_s * 1000) {
			snprintf(err, errlen, "%s", e->err);
			return NULL;
		}
		if (poller__rule_load(p, e, e->err, sizeof(e->err)) < 0) {
			e->failed_ms = poller__now_ms();
			log_warn("rule not loaded", "rule=%s err=\"%s\"", e->name, e->err);
			snprintf(err, errlen, "%s", e->err);
			return NULL;
		}
	}
	e->cur->refs++;
	return e->cur;
}

int poller_reload_rules(struct poller *p)
{
	struct htab_node *x;
	char err[POLL_ERR_MAX], q[POLL_ERR_MAX + 64];
	int failed = 0;
	size_t i;

	htab_for_each(&p->rules, i, x) {
		struct poll_rule_entry *e = container_of(x, struct poll_rule_entry, hn);

		if (poller__rule_load(p, e, err, sizeof(err)) == 0) {
			log_info("rule reloaded", "rule=%s", e->name);
			continue;
		}
		failed++;
		log_quote(q, sizeof(q), err);
		if (e->cur)
			log_warn("rule reload failed, previous version kept", "rule=%s err=%s", e->name, q);
		else {
			snprintf(e->err, sizeof(e->err), "%s", err);
			e->failed_ms = poller__now_ms();
			log_warn("rule reload failed", "rule=%s err=%s", e->name, q);
		}
	}
	return failed;
}

/* ------------------------------------------------------------ words cache */

void poller__words_put(struct poll_words *pw)
{
	if (pw && --pw->refs == 0) {
		status_words_free(pw->w);
		free(pw);
	}
}

static bool poller__words_eq(const struct htab_node *x, const void *key)
{
	return container_of(x, struct poll_words_slot, hn)->offer == *(const int64_t *)key;
}

/* The slot of offer; with add, made when missing (NULL: out of memory);
 * without, NULL when missing. */
static struct poll_words_slot *poller__words_slot(struct poller *p, int64_t offer, bool add)
{
	uint64_t h = htab_hash(&offer, sizeof(offer));
	struct htab_node *x = htab_find(&p->words, h, poller__words_eq, &offer);
	struct poll_words_slot *s;

	if (x || !add)
		return x ? container_of(x, struct poll_words_slot, hn) : NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->offer = offer;
	if (htab_add(&p->words, &s->hn, h) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

/* The status words of offer o, with a reference for the caller (*out NULL
 * when the offer has none). The offer row, and so its status_words text, is
 * read with every claim; the words are parsed again only when that text
 * differs from the one the cached entry was parsed from, so an import that
 * changes them takes effect at the offer's next claim and an unchanged
 * offer is never reparsed. Pairs keep the version they began with. Entries
 * live as long as the poller: one per offer that had words (an offer whose
 * words went back to {} keeps an empty slot). Returns -1 with err (the
 * offer named) when the words do not parse; nothing is cached then. */
int poller__words_get(struct poller *p, const struct poll_offer *o, struct poll_words **out,
			     char *err, size_t errlen)
{
	struct poll_words_slot *s = poller__words_slot(p, o->id, false);
	struct status_words *w = NULL;
	struct poll_words *pw;
	char why[POLL_ERR_MAX - 64];
	size_t len;

	*out = NULL;
	if (s && s->cur && strcmp(s->cur->json, o->words) == 0) {
		s->cur->refs++;
		*out = s->cur;
		return 0;
	}
	if (s) {
		poller__words_put(s->cur);
		s->cur = NULL;
	}
	if (status_words_from_json(o->words, &w, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "offer %" PRId64 ": status_words: %s", o->id, why);
		return -1;
	}
	if (!w)
		return 0;
	len = strlen(o->words);
	pw = malloc(sizeof(*pw) + len + 1);
	if (pw && !s)
		s = poller__words_slot(p, o->id, true);
	if (!pw || !s) {
		free(pw);
		status_words_free(w);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pw->refs = 2; /* the cache's and the caller's */
	pw->w = w;
	memcpy(pw->json, o->words, len + 1);
	s->cur = pw;
	p->st.words_parsed++;
	*out = pw;
	return 0;
}
