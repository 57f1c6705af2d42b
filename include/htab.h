/* htab: an intrusive chained hash table, and the one FNV-1a of the code.
 *
 * Embed a `struct htab_node` in the object; container_of (list.h) goes back
 * from the node to it. The caller hashes its key (htab_hash, FNV-1a over
 * bytes, unless it has a better hash) and gives htab_find an equality test,
 * so keys may be strings, byte arrays or anything the object holds. The
 * table owns only its slot array (htab_release frees it); nodes belong to
 * their objects, which are removed before they are freed. Nodes never move,
 * so a pointer to an object stays good while the table grows (at load 1,
 * doubling). Equal keys may be added twice: look up first when they must
 * not be.
 *
 * Where a specialised table stays instead (read-only dictionaries built
 * once, indexes of arrays that realloc, fixed tables on a hot path that
 * must not allocate), the file says why beside it. */
#ifndef LEADSYNC_HTAB_H
#define LEADSYNC_HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTAB_FNV_BASIS UINT64_C(0xcbf29ce484222325)
#define HTAB_FNV_PRIME UINT64_C(0x100000001b3)

/* 64-bit FNV-1a of n bytes at p, continuing from h (HTAB_FNV_BASIS to
 * start; a seeded basis makes the hash unguessable from outside). */
static inline uint64_t htab_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ s[i]) * HTAB_FNV_PRIME;
	return h;
}

static inline uint64_t htab_hash(const void *p, size_t n)
{
	return htab_fnv1a(HTAB_FNV_BASIS, p, n);
}

struct htab_node {
	struct htab_node *next;
	uint64_t hash;
};

struct htab {
	struct htab_node **slots;
	size_t nslots; /* a power of two, or 0 */
	size_t n;
};

#define HTAB_INIT { NULL, 0, 0 }

/* true when node's object holds key */
typedef bool (*htab_eq_fn)(const struct htab_node *node, const void *key);

/* The first node with this hash whose object eq() says holds key, or NULL. */
struct htab_node *htab_find(const struct htab *t, uint64_t hash, htab_eq_fn eq, const void *key);

/* Adds x under hash; 0, or -1 when growing failed (the table is as it was). */
__attribute__((warn_unused_result)) int htab_add(struct htab *t, struct htab_node *x, uint64_t hash);

/* Takes x out; x must be in t. */
void htab_remove(struct htab *t, struct htab_node *x);

/* Frees the slot array; the nodes are left to their objects. */
void htab_release(struct htab *t);

/* Walks every node (size_t i, struct htab_node *x); the body must not add
 * or remove. */
#define htab_for_each(t, i, x)                        \
	for ((i) = 0; (i) < (t)->nslots; (i)++)       \
		for ((x) = (t)->slots[(i)]; (x); (x) = (x)->next)

/* The same, with struct htab_node *nx: the body may remove or free x (to
 * tear a table down: free every object, then htab_release). */
#define htab_for_each_safe(t, i, x, nx)               \
	for ((i) = 0; (i) < (t)->nslots; (i)++)       \
		for ((x) = (t)->slots[(i)]; (x) && ((nx) = (x)->next, 1); (x) = (nx))

#endif
