/* test_containers: list.h, heap.h and htab.h against naive models, under
 * random operations from fixed seeds. */
#include <stdio.h>
#include <stdlib.h>

#include "heap.h"
#include "htab.h"
#include "list.h"
#include "test.h"

static uint64_t ct_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- list ------------------------------------------------------------ */

struct ct_item {
	int v;
	struct list link;
	struct heap_node hn;
	struct htab_node tn;
	char key[16];
	bool in;
};

TEST(containers_list_order)
{
	struct list head = LIST_HEAD_INIT(head), *it, *nx;
	struct ct_item a[5];
	int i, seen[5], n = 0;

	ASSERT(list_empty(&head));
	ASSERT(list_first(&head) == NULL && list_last(&head) == NULL);
	for (i = 0; i < 5; i++) {
		a[i].v = i;
		list_init(&a[i].link);
		ASSERT(!list_linked(&a[i].link));
	}
	list_append(&head, &a[2].link);
	list_append(&head, &a[3].link);
	list_prepend(&head, &a[1].link);
	list_prepend(&head, &a[0].link);
	list_append(&head, &a[4].link);
	list_for_each(it, &head)
		seen[n++] = list_entry(it, struct ct_item, link)->v;
	ASSERT_EQ(n, 5);
	for (i = 0; i < 5; i++)
		ASSERT_EQ(seen[i], i);
	ASSERT(list_entry(list_first(&head), struct ct_item, link) == &a[0]);
	ASSERT(list_entry(list_last(&head), struct ct_item, link) == &a[4]);

	/* removing while walking; removing twice is harmless */
	list_for_each_safe(it, nx, &head)
		if (list_entry(it, struct ct_item, link)->v % 2)
			list_remove(it);
	list_remove(&a[1].link);
	ASSERT(!list_linked(&a[1].link) && list_linked(&a[2].link));
	n = 0;
	list_for_each(it, &head)
		seen[n++] = list_entry(it, struct ct_item, link)->v;
	ASSERT_EQ(n, 3);
	ASSERT(seen[0] == 0 && seen[1] == 2 && seen[2] == 4);
	list_remove(&a[0].link);
	list_remove(&a[2].link);
	list_remove(&a[4].link);
	ASSERT(list_empty(&head));
}

/* A splice moves a whole queue in order and leaves the source empty;
 * splicing an empty list changes nothing. */
TEST(containers_list_splice)
{
	struct list a = LIST_HEAD_INIT(a), b = LIST_HEAD_INIT(b), *it;
	struct ct_item x[5];
	int i, seen[5], n = 0;

	for (i = 0; i < 5; i++) {
		x[i].v = i;
		list_init(&x[i].link);
		list_append(i < 2 ? &a : &b, &x[i].link);
	}
	list_splice_tail(&a, &b);
	ASSERT(list_empty(&b));
	list_splice_tail(&a, &b);
	list_for_each(it, &a)
		seen[n++] = list_entry(it, struct ct_item, link)->v;
	ASSERT_EQ(n, 5);
	for (i = 0; i < 5; i++)
		ASSERT_EQ(seen[i], i);
	list_splice_tail(&b, &a);
	ASSERT(list_empty(&a));
	ASSERT(list_entry(list_first(&b), struct ct_item, link) == &x[0]);
	ASSERT(list_entry(list_last(&b), struct ct_item, link) == &x[4]);
	list_remove(&x[0].link);
	list_append(&b, &x[0].link);
	ASSERT(list_entry(list_last(&b), struct ct_item, link) == &x[0]);
}

/* Random appends, prepends and removes against an array model. */
TEST(containers_list_random)
{
	enum { N = 64 };
	struct list head;
	struct ct_item a[N];
	int model[N], nm = 0, round, i;
	uint64_t s = 42;

	list_init(&head);
	for (i = 0; i < N; i++) {
		a[i].v = i;
		list_init(&a[i].link);
	}
	for (round = 0; round < 20000; round++) {
		int k = (int)(ct_rand(&s) % N), j;
		struct list *it;

		if (list_linked(&a[k].link)) {
			list_remove(&a[k].link);
			for (j = 0; model[j] != k; j++)
				;
			memmove(model + j, model + j + 1, (size_t)(nm - j - 1) * sizeof(int));
			nm--;
		} else if (ct_rand(&s) & 1) {
			list_append(&head, &a[k].link);
			model[nm++] = k;
		} else {
			list_prepend(&head, &a[k].link);
			memmove(model + 1, model, (size_t)nm * sizeof(int));
			model[0] = k;
			nm++;
		}
		if (round % 97 == 0) {
			j = 0;
			list_for_each(it, &head) {
				ASSERT(j < nm);
				ASSERT_EQ(list_entry(it, struct ct_item, link)->v, model[j]);
				j++;
			}
			ASSERT_EQ(j, nm);
		}
	}
}

/* ---- heap ------------------------------------------------------------ */

static void ct_heap_release(void *h)
{
	heap_release(h);
}

/* Random sets (add or move), removes and pops from a fixed seed; the
 * minimum always equals the naive model's, and every node's index is its
 * place in the array. */
TEST(containers_heap_random)
{
	enum { N = 300 };
	struct heap h = HEAP_INIT;
	static struct ct_item a[N];
	uint64_t s = 7, keys[N];
	int i, round;

	test_defer(ct_heap_release, &h);
	ASSERT(heap_min(&h) == NULL && heap_pop(&h) == NULL);
	ASSERT_EQ(heap_reserve(&h, N), 0);
	for (i = 0; i < N; i++) {
		heap_node_init(&a[i].hn);
		a[i].v = i;
		a[i].in = false;
	}
	for (round = 0; round < 50000; round++) {
		int k = (int)(ct_rand(&s) % N), best = -1;
		unsigned op = (unsigned)(ct_rand(&s) % 8);
		struct heap_node *m;
		size_t j, n = 0;

		if (op < 5) {
			/* small key range: many ties */
			keys[k] = ct_rand(&s) % 1000;
			heap_set(&h, &a[k].hn, keys[k]);
			a[k].in = true;
		} else if (op < 7) {
			heap_remove(&h, &a[k].hn);
			a[k].in = false;
		} else {
			m = heap_pop(&h);
			for (i = 0; i < N; i++)
				if (a[i].in && (best < 0 || keys[i] < keys[best]))
					best = i;
			if (best < 0) {
				ASSERT(m == NULL);
			} else {
				ASSERT(m != NULL);
				ASSERT_EQ(m->key, keys[best]);
				container_of(m, struct ct_item, hn)->in = false;
				ASSERT(!heap_linked(m));
			}
		}
		for (i = 0; i < N; i++) {
			ASSERT_EQ(heap_linked(&a[i].hn), a[i].in);
			n += a[i].in;
		}
		ASSERT_EQ(h.n, n);
		for (j = 0; j < h.n; j++) {
			ASSERT_EQ(h.v[j]->idx, j);
			if (j)
				ASSERT(h.v[(j - 1) / 2]->key <= h.v[j]->key);
		}
	}
	/* draining gives the keys in order */
	{
		uint64_t last = 0;
		struct heap_node *m;

		while ((m = heap_pop(&h)) != NULL) {
			ASSERT(m->key >= last);
			last = m->key;
		}
	}
	ASSERT_EQ(h.n, 0);
}

/* ---- htab ------------------------------------------------------------ */

static bool ct_eq(const struct htab_node *x, const void *key)
{
	return strcmp(container_of(x, struct ct_item, tn)->key, key) == 0;
}

static void ct_htab_release(void *t)
{
	htab_release(t);
}

TEST(containers_fnv1a)
{
	/* the published FNV-1a 64 test vectors */
	ASSERT(htab_hash("", 0) == UINT64_C(0xcbf29ce484222325));
	ASSERT(htab_hash("a", 1) == UINT64_C(0xaf63dc4c8601ec8c));
	ASSERT(htab_hash("foobar", 6) == UINT64_C(0x85944171f73967e8));
	/* continuing is hashing the concatenation */
	ASSERT(htab_fnv1a(htab_hash("foo", 3), "bar", 3) == htab_hash("foobar", 6));
}

/* Random adds and removes of string keys against a presence model, through
 * several grows; then every node is found once by walking. */
TEST(containers_htab_random)
{
	enum { N = 2000 };
	struct htab t = HTAB_INIT;
	static struct ct_item a[N];
	struct htab_node *x, *nx;
	uint64_t s = 99;
	size_t i, n = 0, seen = 0;
	int round;

	test_defer(ct_htab_release, &t);
	ASSERT(htab_find(&t, htab_hash("x", 1), ct_eq, "x") == NULL);
	for (i = 0; i < N; i++) {
		snprintf(a[i].key, sizeof(a[i].key), "k%zu", i);
		a[i].in = false;
	}
	for (round = 0; round < 60000; round++) {
		size_t k = (size_t)(ct_rand(&s) % N);
		uint64_t hv = htab_hash(a[k].key, strlen(a[k].key));

		x = htab_find(&t, hv, ct_eq, a[k].key);
		ASSERT_EQ(x != NULL, a[k].in);
		if (x) {
			ASSERT(x == &a[k].tn);
			if (ct_rand(&s) % 3 == 0) {
				htab_remove(&t, x);
				a[k].in = false;
				n--;
			}
		} else if (ct_rand(&s) % 4 != 0) {
			ASSERT_EQ(htab_add(&t, &a[k].tn, hv), 0);
			a[k].in = true;
			n++;
		}
		ASSERT_EQ(t.n, n);
		ASSERT(t.n <= t.nslots);
	}
	ASSERT(t.nslots >= 512);
	htab_for_each(&t, i, x) {
		ASSERT(container_of(x, struct ct_item, tn)->in);
		seen++;
	}
	ASSERT_EQ(seen, n);
	/* tearing down while walking */
	htab_for_each_safe(&t, i, x, nx)
		htab_remove(&t, x);
	ASSERT_EQ(t.n, 0);
	for (i = 0; i < N; i++)
		ASSERT(htab_find(&t, htab_hash(a[i].key, strlen(a[i].key)), ct_eq, a[i].key) == NULL);
}

/* Equal hashes with different keys are told apart by eq. */
TEST(containers_htab_collisions)
{
	struct htab t = HTAB_INIT;
	struct ct_item a[40];
	int i;

	test_defer(ct_htab_release, &t);
	for (i = 0; i < 40; i++) {
		snprintf(a[i].key, sizeof(a[i].key), "c%d", i);
		ASSERT_EQ(htab_add(&t, &a[i].tn, 5), 0);
	}
	for (i = 0; i < 40; i++)
		ASSERT(htab_find(&t, 5, ct_eq, a[i].key) == &a[i].tn);
	ASSERT(htab_find(&t, 5, ct_eq, "c40") == NULL);
	htab_remove(&t, &a[17].tn);
	ASSERT(htab_find(&t, 5, ct_eq, "c17") == NULL);
	ASSERT(htab_find(&t, 5, ct_eq, "c18") == &a[18].tn);
}
