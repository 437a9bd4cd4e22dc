/*
 * gw_htable: intrusive chained hash table. Nodes live inside the caller's objects, so inserting
 * allocates nothing but the bucket array (grown at load factor 1). The caller computes hashes and
 * compares keys while walking a bucket chain.
 */
#ifndef SLUICE_GW_HTABLE_H
#define SLUICE_GW_HTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_hnode {
    struct gw_hnode *next;
    uint64_t hash;
} gw_hnode;

typedef struct gw_htable {
    gw_hnode **buckets; /* NULL until the first insert */
    size_t mask;        /* bucket count - 1 */
    size_t count;
} gw_htable;

void gw_htable_init(gw_htable *t);
/* Frees the bucket array only; nodes belong to the caller. */
void gw_htable_free(gw_htable *t);
/* Returns 0, or -ENOMEM (the node is then not inserted). */
int gw_htable_insert(gw_htable *t, gw_hnode *n, uint64_t hash);
void gw_htable_remove(gw_htable *t, gw_hnode *n);

/* First node of the chain that may hold hash (walk ->next and compare hash and key). */
static inline gw_hnode *gw_htable_chain(const gw_htable *t, uint64_t hash)
{
    return t->buckets ? t->buckets[hash & t->mask] : NULL;
}

/* Calls fn for every node; fn may remove the node it is given. */
void gw_htable_each(gw_htable *t, void (*fn)(gw_hnode *n, void *arg), void *arg);

/* Keyed SipHash-1-3. Table keys are often client-chosen (statement texts, names, lsids, cursor
 * ids): with a secret key nobody can choose keys that collide and turn a table into a list. */
uint64_t gw_hash_bytes(const void *data, size_t len);
/* Sets the secret key; called once at start-up, before any table is used. */
void gw_hash_seed(const uint8_t key[16]);

#endif
