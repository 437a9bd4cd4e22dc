/* gw_list: intrusive circular doubly linked list. An unlinked node points at itself. */
#ifndef SLUICE_GW_LIST_H
#define SLUICE_GW_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct gw_list {
    struct gw_list *prev, *next;
} gw_list;

#define gw_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void gw_list_init(gw_list *l)
{
    l->prev = l->next = l;
}

static inline bool gw_list_empty(const gw_list *l)
{
    return l->next == l;
}

static inline void gw_list_insert_after(gw_list *pos, gw_list *n)
{
    n->prev = pos;
    n->next = pos->next;
    pos->next->prev = n;
    pos->next = n;
}

/* Appends at the tail (FIFO order when popped from the head). */
static inline void gw_list_push_tail(gw_list *head, gw_list *n)
{
    gw_list_insert_after(head->prev, n);
}

static inline void gw_list_push_head(gw_list *head, gw_list *n)
{
    gw_list_insert_after(head, n);
}

/* Safe on an unlinked (self-pointing) node. */
static inline void gw_list_remove(gw_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static inline gw_list *gw_list_first(const gw_list *head)
{
    return head->next == head ? NULL : head->next;
}

static inline bool gw_list_linked(const gw_list *n)
{
    return n->next != n;
}

#define gw_list_foreach_safe(it, tmp, head)                                                        \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

#endif
