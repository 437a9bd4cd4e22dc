#include <errno.h>
#include <stdlib.h>

#include "gateway/htable.h"

void gw_htable_init(gw_htable *t)
{
    t->buckets = NULL;
    t->mask = 0;
    t->count = 0;
}

void gw_htable_free(gw_htable *t)
{
    free(t->buckets);
    gw_htable_init(t);
}

static int grow(gw_htable *t)
{
    size_t n = t->buckets ? (t->mask + 1) * 2 : 8;
    gw_hnode **b = calloc(n, sizeof *b);
    if (!b)
        return -ENOMEM;
    if (t->buckets) {
        for (size_t i = 0; i <= t->mask; i++) {
            gw_hnode *node = t->buckets[i];
            while (node) {
                gw_hnode *next = node->next;
                size_t j = node->hash & (n - 1);
                node->next = b[j];
                b[j] = node;
                node = next;
            }
        }
        free(t->buckets);
    }
    t->buckets = b;
    t->mask = n - 1;
    return 0;
}

int gw_htable_insert(gw_htable *t, gw_hnode *n, uint64_t hash)
{
    if (!t->buckets || t->count >= t->mask + 1) {
        int rc = grow(t);
        if (rc != 0 && !t->buckets)
            return rc; /* a failed grow of a non-empty table just raises the load factor */
    }
    n->hash = hash;
    gw_hnode **slot = &t->buckets[hash & t->mask];
    n->next = *slot;
    *slot = n;
    t->count++;
    return 0;
}

void gw_htable_remove(gw_htable *t, gw_hnode *n)
{
    if (!t->buckets)
        return;
    for (gw_hnode **p = &t->buckets[n->hash & t->mask]; *p; p = &(*p)->next) {
        if (*p == n) {
            *p = n->next;
            n->next = NULL;
            t->count--;
            return;
        }
    }
}

void gw_htable_each(gw_htable *t, void (*fn)(gw_hnode *n, void *arg), void *arg)
{
    if (!t->buckets)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        gw_hnode *node = t->buckets[i];
        while (node) {
            gw_hnode *next = node->next;
            fn(node, arg);
            node = next;
        }
    }
}

uint64_t gw_hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}
