/* heap: an intrusive binary min-heap of nodes keyed by a uint64_t (a
 * moment, a deadline, a priority).
 *
 * Embed a `struct heap_node` in the object; container_of (list.h) goes back
 * from the node to it. The heap owns only its array of pointers
 * (heap_release frees it); nodes belong to their objects, which remove
 * themselves before they are freed. Each node knows its index, so moving
 * and removing a node are O(log n) without a search. Room is reserved
 * apart from placing, so that a caller which reserves a slot when it
 * creates an object never fails to schedule it later. Nodes with equal
 * keys come out in no stated order. */
#ifndef LEADSYNC_HEAP_H
#define LEADSYNC_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEAP_NONE ((size_t)-1)

struct heap_node {
	uint64_t key;
	size_t idx; /* in the heap's array, or HEAP_NONE */
};

struct heap {
	struct heap_node **v;
	size_t n, cap;
};

#define HEAP_INIT { NULL, 0, 0 }

static inline void heap_node_init(struct heap_node *x)
{
	x->key = 0;
	x->idx = HEAP_NONE;
}

static inline bool heap_linked(const struct heap_node *x)
{
	return x->idx != HEAP_NONE;
}

/* The node with the smallest key, or NULL when the heap is empty. */
static inline struct heap_node *heap_min(const struct heap *h)
{
	return h->n ? h->v[0] : NULL;
}

/* Makes room for `need` nodes in all; 0 or -1 (out of memory, heap kept). */
__attribute__((warn_unused_result)) int heap_reserve(struct heap *h, size_t need);

/* Places x at `key`, adding it or moving it when it is in already. Adding
 * needs room reserved (heap_reserve): heap_set itself never allocates. */
void heap_set(struct heap *h, struct heap_node *x, uint64_t key);

/* Takes x out (a no-op when it is not in). */
void heap_remove(struct heap *h, struct heap_node *x);

/* Takes out and returns the node with the smallest key, or NULL. */
struct heap_node *heap_pop(struct heap *h);

/* Frees the array; the nodes are left as they are (their objects own them). */
void heap_release(struct heap *h);

#endif
