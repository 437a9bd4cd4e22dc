#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* The SipHash key: random per process (gw_hash_seed), so nobody outside can predict which keys
 * share a bucket. Written once at start-up before any table exists, read-only afterwards; zero
 * (still a valid key) in unit tests that do not seed. */
static uint64_t hash_k0, hash_k1;

void gw_hash_seed(const uint8_t key[16])
{
    memcpy(&hash_k0, key, 8);
    memcpy(&hash_k1, key + 8, 8);
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

/* SipHash-1-3 (the variant hash tables in Rust and CPython use): one compression round per
 * word and three finalisation rounds are enough against hash flooding. */
uint64_t gw_hash_bytes(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t v0 = hash_k0 ^ 0x736f6d6570736575ULL, v1 = hash_k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = hash_k0 ^ 0x6c7967656e657261ULL, v3 = hash_k1 ^ 0x7465646279746573ULL;
    size_t words = len / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t m;
        memcpy(&m, p + i * 8, 8);
        m = le64toh(m);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    const uint8_t *tail = p + words * 8;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)tail[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
