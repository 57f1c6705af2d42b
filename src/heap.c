/* heap: the binary min-heap of heap.h (sift up and down over an array of
 * node pointers, each node keeping its own index). */
#include "heap.h"

#include <stdlib.h>

static void heap__put(struct heap *h, size_t i, struct heap_node *x)
{
	h->v[i] = x;
	x->idx = i;
}

static void heap__up(struct heap *h, size_t i)
{
	struct heap_node *x = h->v[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (h->v[p]->key <= x->key)
			break;
		heap__put(h, i, h->v[p]);
		i = p;
	}
	heap__put(h, i, x);
}

static void heap__down(struct heap *h, size_t i)
{
	struct heap_node *x = h->v[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = l;

		if (l >= h->n)
			break;
		if (r < h->n && h->v[r]->key < h->v[l]->key)
			m = r;
		if (x->key <= h->v[m]->key)
			break;
		heap__put(h, i, h->v[m]);
		i = m;
	}
	heap__put(h, i, x);
}

int heap_reserve(struct heap *h, size_t need)
{
	struct heap_node **v;
	size_t cap;

	if (need <= h->cap)
		return 0;
	cap = h->cap ? h->cap * 2 : 64;
	while (cap < need)
		cap *= 2;
	v = realloc(h->v, cap * sizeof(*v));
	if (!v)
		return -1;
	h->v = v;
	h->cap = cap;
	return 0;
}

void heap_set(struct heap *h, struct heap_node *x, uint64_t key)
{
	x->key = key;
	if (x->idx == HEAP_NONE) {
		heap__put(h, h->n++, x);
		heap__up(h, x->idx);
		return;
	}
	heap__up(h, x->idx);
	heap__down(h, x->idx);
}

void heap_remove(struct heap *h, struct heap_node *x)
{
	struct heap_node *y;
	size_t i = x->idx;

	if (i == HEAP_NONE)
		return;
	x->idx = HEAP_NONE;
	if (i == --h->n)
		return;
	y = h->v[h->n];
	heap__put(h, i, y);
	heap__up(h, i);
	heap__down(h, y->idx);
}

struct heap_node *heap_pop(struct heap *h)
{
	struct heap_node *x = heap_min(h);

	if (x)
		heap_remove(h, x);
	return x;
}

void heap_release(struct heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
