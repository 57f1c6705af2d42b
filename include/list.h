/* list: an intrusive circular doubly linked list with a head, inline.
 *
 * Embed a `struct list` in the object and link it into a head (also a
 * `struct list`); list_entry() goes back from the link to the object. The
 * list owns nothing: whoever links an object unlinks it before freeing it.
 * An unlinked link points at itself, so list_linked() tells membership and
 * list_remove() of an unlinked link is harmless. Heads and links both start
 * with list_init() (or LIST_HEAD_INIT for a static head). */
#ifndef LEADSYNC_LIST_H
#define LEADSYNC_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
	struct list *prev, *next;
};

#define LIST_HEAD_INIT(name) { &(name), &(name) }

#ifndef container_of
#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))
#endif
#define list_entry(p, type, member) container_of(p, type, member)

static inline void list_init(struct list *l)
{
	l->prev = l->next = l;
}

/* A head: holds nothing. A link: is in no list. */
static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

static inline bool list_linked(const struct list *l)
{
	return l->next != l;
}

/* Links l at the tail of head (l must be unlinked). */
static inline void list_append(struct list *head, struct list *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

/* Links l at the front of head (l must be unlinked). */
static inline void list_prepend(struct list *head, struct list *l)
{
	l->next = head->next;
	l->prev = head;
	head->next->prev = l;
	head->next = l;
}

/* Unlinks l (a no-op when it is unlinked); l is left unlinked. */
static inline void list_remove(struct list *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	list_init(l);
}

/* Moves every link of from, in order, to the tail of head; from is left
 * empty. O(1): how a queue filled under a lock is taken whole, to be walked
 * after the lock is let go. */
static inline void list_splice_tail(struct list *head, struct list *from)
{
	if (from->next == from)
		return;
	from->next->prev = head->prev;
	head->prev->next = from->next;
	from->prev->next = head;
	head->prev = from->prev;
	list_init(from);
}

/* The first and last links of head, or NULL when it is empty. */
static inline struct list *list_first(const struct list *head)
{
	return head->next == head ? NULL : head->next;
}

static inline struct list *list_last(const struct list *head)
{
	return head->prev == head ? NULL : head->prev;
}

/* Walks the links of head; the body must not unlink `it` (see _safe). */
#define list_for_each(it, head) for ((it) = (head)->next; (it) != (head); (it) = (it)->next)

/* Walks the links of head; the body may unlink (and free) `it`. */
#define list_for_each_safe(it, nx, head) \
	for ((it) = (head)->next, (nx) = (it)->next; (it) != (head); (it) = (nx), (nx) = (it)->next)

#endif
