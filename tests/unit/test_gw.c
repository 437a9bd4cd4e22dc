/* Unit tests for the gateway's containers: list, hash table, buffers. */
#include <criterion/criterion.h>
#include <string.h>

#include "gateway/buf.h"
#include "gateway/htable.h"
#include "gateway/list.h"

typedef struct item {
    gw_list node;
    gw_hnode hnode;
    int v;
} item;

Test(gw_list, fifo_order_and_removal)
{
    gw_list head;
    gw_list_init(&head);
    item it[4];
    for (int i = 0; i < 4; i++) {
        it[i].v = i;
        gw_list_push_tail(&head, &it[i].node);
    }
    gw_list_remove(&it[1].node);
    gw_list_remove(&it[1].node); /* removing twice is harmless */
    int seen[4], n = 0;
    gw_list *l;
    while ((l = gw_list_first(&head)) != NULL) {
        seen[n++] = gw_container_of(l, item, node)->v;
        gw_list_remove(l);
    }
    cr_assert_eq(n, 3);
    cr_assert_eq(seen[0], 0);
    cr_assert_eq(seen[1], 2);
    cr_assert_eq(seen[2], 3);
    cr_assert(gw_list_empty(&head));
}

Test(gw_htable, insert_find_remove_across_growth)
{
    gw_htable t;
    gw_htable_init(&t);
    enum { N = 1000 };
    static item items[N];
    for (int i = 0; i < N; i++) {
        items[i].v = i;
        cr_assert_eq(gw_htable_insert(&t, &items[i].hnode, (uint64_t)i * 7919u), 0);
    }
    cr_assert_eq(t.count, N);
    for (int i = 0; i < N; i += 2)
        gw_htable_remove(&t, &items[i].hnode);
    cr_assert_eq(t.count, N / 2);
    for (int i = 0; i < N; i++) {
        uint64_t h = (uint64_t)i * 7919u;
        int found = 0;
        for (gw_hnode *n = gw_htable_chain(&t, h); n; n = n->next)
            if (n->hash == h && gw_container_of(n, item, hnode)->v == i)
                found = 1;
        cr_assert_eq(found, i % 2, "item %d", i);
    }
    gw_htable_free(&t);
}

Test(gw_buf, pooled_blocks_are_reused_and_grow)
{
    gw_bufpool p;
    gw_bufpool_init(&p, 4);
    gw_buf b = {0};
    cr_assert_eq(gw_buf_append(&b, &p, "hello", 5), 0);
    cr_assert_eq(b.cap, GW_BUF_BLOCK);
    uint8_t *first = b.data;
    gw_buf_consume(&b, &p, 2);
    cr_assert_eq(b.len, 3);
    cr_assert_eq(memcmp(b.data, "llo", 3), 0);
    gw_buf_consume(&b, &p, 3);
    cr_assert_null(b.data, "an empty buffer holds no memory");
    cr_assert_eq(p.small.n_free, 1);
    cr_assert_eq(gw_buf_reserve(&b, &p, 10), 0);
    cr_assert_eq(b.data, first, "the pooled block is reused");
    cr_assert_eq(p.small.allocs, 1);
    static char big[100000];
    memset(big, 'x', sizeof big);
    cr_assert_eq(gw_buf_append(&b, &p, big, 20000), 0);
    cr_assert_eq(b.cap, GW_BUF_LARGE, "past 16 kB a buffer takes a large block");
    cr_assert_eq(p.small.n_free, 1, "and gives its small block back");
    cr_assert_eq(gw_buf_append(&b, &p, big + 20000, sizeof big - 20000), 0);
    cr_assert_geq(b.cap, sizeof big);
    cr_assert_eq(b.data[sizeof big - 1], 'x');
    cr_assert_eq(p.large.n_free, 1, "past 64 kB it gives the large block back");
    gw_buf_release(&b, &p);
    cr_assert_eq(p.small.used + p.large.used, 0);
    gw_bufpool_destroy(&p);
}

/* The pool's classes: a zeroed class keeps nothing; a full free list frees; counts stay exact. */
Test(gw_buf, classes_keep_bounded_free_lists)
{
    gw_bufclass zero = {0};
    void *o = gw_bufclass_get(&zero, 64);
    cr_assert_not_null(o);
    gw_bufclass_put(&zero, o);
    cr_assert_eq(zero.n_free, 0, "a zeroed class keeps nothing");
    cr_assert_eq(zero.used, 0);
    gw_bufpool p;
    gw_bufpool_init(&p, 8);
    cr_assert_eq(p.large.keep, 2);
    uint8_t *blocks[3];
    for (int i = 0; i < 3; i++)
        blocks[i] = gw_bufpool_get(&p, GW_BUF_LARGE);
    cr_assert_eq(p.large.used, 3);
    cr_assert_null(gw_bufpool_get(&p, 1000), "only the classes' sizes are pooled");
    for (int i = 0; i < 3; i++)
        gw_bufpool_put(&p, blocks[i], GW_BUF_LARGE);
    cr_assert_eq(p.large.n_free, 2);
    cr_assert_eq(p.large.used, 0);
    for (int i = 0; i < 2; i++)
        blocks[i] = gw_bufpool_get(&p, GW_BUF_LARGE);
    cr_assert_eq(p.large.allocs, 3, "taken again from the free list, not from malloc");
    for (int i = 0; i < 2; i++)
        gw_bufpool_put(&p, blocks[i], GW_BUF_LARGE);
    gw_bufpool_put(&p, malloc(100), 100); /* not a class's size: freed */
    gw_bufpool_destroy(&p);
}

/* Hash tables hold client-chosen keys: the hash must depend on a secret key, so nobody who does
 * not know it can pick keys that share a bucket. */
Test(gw_hash, keyed_deterministic_and_length_sensitive)
{
    uint8_t k1[16] = {0}, k2[16] = {0};
    k2[0] = 1;
    const char *names[] = {"", "a", "sluice_1", "a longer statement name of 31b", "x\0"};
    uint64_t h1[5], h2[5];
    gw_hash_seed(k1);
    for (int i = 0; i < 5; i++)
        h1[i] = gw_hash_bytes(names[i], strlen(names[i]));
    cr_assert_eq(gw_hash_bytes("sluice_1", 8), h1[2], "the same key gives the same hash");
    cr_assert_neq(gw_hash_bytes("a", 2), h1[1], "the length counts (a trailing NUL differs)");
    gw_hash_seed(k2);
    int differ = 0;
    for (int i = 0; i < 5; i++) {
        h2[i] = gw_hash_bytes(names[i], strlen(names[i]));
        differ += h1[i] != h2[i];
    }
    cr_assert_eq(differ, 5, "another key changes every hash");
    /* One flipped input bit changes about half the output bits. */
    uint64_t a = gw_hash_bytes("statement-0001", 14), b = gw_hash_bytes("statement-0003", 14);
    int bits = __builtin_popcountll(a ^ b);
    cr_assert(bits > 12 && bits < 52, "%d output bits changed", bits);
    gw_hash_seed(k1);
}
