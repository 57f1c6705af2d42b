/* htab: the chained hash table of htab.h. */
#include "htab.h"

#include <stdlib.h>

/* FNV-1a's low bits mix weakly on short keys: fold the high half in. */
static size_t htab__slot(uint64_t hash, size_t nslots)
{
	return (size_t)(hash ^ (hash >> 32)) & (nslots - 1);
}

struct htab_node *htab_find(const struct htab *t, uint64_t hash, htab_eq_fn eq, const void *key)
{
	struct htab_node *x;

	if (!t->nslots)
		return NULL;
	for (x = t->slots[htab__slot(hash, t->nslots)]; x; x = x->next)
		if (x->hash == hash && eq(x, key))
			return x;
	return NULL;
}

static int htab__grow(struct htab *t)
{
	size_t ns = t->nslots ? t->nslots * 2 : 16, i;
	struct htab_node **s = calloc(ns, sizeof(*s));

	if (!s)
		return -1;
	for (i = 0; i < t->nslots; i++) {
		while (t->slots[i]) {
			struct htab_node *x = t->slots[i];
			size_t k = htab__slot(x->hash, ns);

			t->slots[i] = x->next;
			x->next = s[k];
			s[k] = x;
		}
	}
	free(t->slots);
	t->slots = s;
	t->nslots = ns;
	return 0;
}

int htab_add(struct htab *t, struct htab_node *x, uint64_t hash)
{
	size_t k;

	if (t->n + 1 > t->nslots && htab__grow(t) < 0)
		return -1;
	k = htab__slot(hash, t->nslots);
	x->hash = hash;
	x->next = t->slots[k];
	t->slots[k] = x;
	t->n++;
	return 0;
}

void htab_remove(struct htab *t, struct htab_node *x)
{
	struct htab_node **pp = &t->slots[htab__slot(x->hash, t->nslots)];

	while (*pp != x)
		pp = &(*pp)->next;
	*pp = x->next;
	x->next = NULL;
	t->n--;
}

void htab_release(struct htab *t)
{
	free(t->slots);
	t->slots = NULL;
	t->nslots = t->n = 0;
}
