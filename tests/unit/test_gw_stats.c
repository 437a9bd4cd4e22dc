/* Unit tests for gateway/stats: histograms, code tallies, Mongo command names, the registry. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "gateway/ctx.h"
#include "gateway/stats.h"

Test(gw_hist, bucket_bounds_are_inclusive_powers_of_two)
{
    gw_hist h = {0};
    gw_hist__add(&h, 0);
    gw_hist__add(&h, 1);
    gw_hist__add(&h, 2);
    gw_hist__add(&h, 3);
    gw_hist__add(&h, 4);
    gw_hist__add(&h, 5);
    cr_assert_eq(h.bucket[0], 2); /* 0, 1 */
    cr_assert_eq(h.bucket[1], 1); /* 2 */
    cr_assert_eq(h.bucket[2], 2); /* 3, 4 */
    cr_assert_eq(h.bucket[3], 1); /* 5 */
    cr_assert_eq(h.count, 6);
    cr_assert_eq(h.sum_us, 15);
    for (unsigned i = 0; i + 1 < GW_HIST_BUCKETS; i++) {
        gw_hist one = {0};
        gw_hist__add(&one, gw_hist_bound_us(i));
        cr_assert_eq(one.bucket[i], 1, "bound of bucket %u lands in it", i);
        gw_hist over = {0};
        gw_hist__add(&over, gw_hist_bound_us(i) + 1);
        cr_assert_eq(over.bucket[i + 1], 1, "bound + 1 of bucket %u lands in the next", i);
    }
}

Test(gw_hist, huge_values_go_to_the_last_bucket)
{
    gw_hist h = {0};
    gw_hist__add(&h, UINT64_MAX);
    gw_hist__add(&h, (uint64_t)1 << 40);
    cr_assert_eq(h.bucket[GW_HIST_BUCKETS - 1], 2);
    cr_assert_eq(gw_hist_bound_us(GW_HIST_BUCKETS - 1), UINT64_MAX);
}

Test(gw_hist, cumulative_and_merge)
{
    gw_hist a = {0}, b = {0};
    for (uint64_t v = 0; v < 1000; v++)
        gw_hist__add(&a, v);
    gw_hist__add(&b, 100000000);
    gw_hist_merge(&a, &b);
    uint64_t cum[GW_HIST_BUCKETS];
    gw_hist_cumulative(&a, cum);
    cr_assert_eq(cum[GW_HIST_BUCKETS - 1], a.count);
    cr_assert_eq(a.count, 1001);
    for (unsigned i = 1; i < GW_HIST_BUCKETS; i++)
        cr_assert_geq(cum[i], cum[i - 1]);
    /* Values <= 512: 0..512 of the thousand, that is 513. */
    cr_assert_eq(cum[9], 513);
}

Test(gw_codes, counts_known_codes_and_bounds_the_rest)
{
    gw_codes t;
    memset(&t, 0, sizeof t);
    gw_codes__add(&t, "08006", 2);
    gw_codes__add(&t, "08", 2);
    gw_codes__add(&t, "28", 2);
    cr_assert_str_eq(t.code[0], "08");
    cr_assert_eq(t.count[0], 2);
    cr_assert_str_eq(t.code[1], "28");
    char c[8];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(c, sizeof c, "%d", 1000 + i);
        gw_codes__add(&t, c, (size_t)n);
    }
    cr_assert_eq(t.other, 100 - (GW_CODES_MAX - 2));
    gw_codes__add(&t, "", 0);
    gw_codes__add(&t, "123456789012345", 15);
    cr_assert_eq(t.other, 100 - (GW_CODES_MAX - 2) + 2);

    gw_codes u;
    memset(&u, 0, sizeof u);
    gw_codes__add(&u, "28", 2);
    gw_codes__add(&u, "57", 2);
    gw_codes_merge(&u, &t);
    cr_assert_str_eq(u.code[0], "28");
    cr_assert_eq(u.count[0], 2);
    cr_assert_str_eq(u.code[2], "08");
    cr_assert_eq(u.count[2], 2);
}

Test(gw_mongo_cmd, names_round_trip_and_unknown_is_other)
{
    for (unsigned i = 0; i < GW_MCMD_OTHER; i++) {
        const char *n = gw_mongo_cmd_name((gw_mongo_cmd)i);
        cr_assert_eq(gw_mongo_cmd_of(n, strlen(n)), (gw_mongo_cmd)i, "%s", n);
    }
    cr_assert_eq(gw_mongo_cmd_of("isMaster", 8), GW_MCMD_HELLO);
    cr_assert_eq(gw_mongo_cmd_of("saslStart", 9), GW_MCMD_AUTH);
    cr_assert_eq(gw_mongo_cmd_of("findx", 5), GW_MCMD_OTHER);
    cr_assert_eq(gw_mongo_cmd_of("fin", 3), GW_MCMD_OTHER);
    cr_assert_eq(gw_mongo_cmd_of("", 0), GW_MCMD_OTHER);
    cr_assert_str_eq(gw_mongo_cmd_name(GW_MCMD__COUNT), "other");
}

Test(gw_pool_stats, add_sums_every_counter)
{
    gw_pool_stats a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    b.xacts = 3;
    b.queries = 5;
    b.wait_time_us = 7;
    b.mongo_cmds[GW_MCMD_FIND] = 2;
    gw_hist__add(&b.xact_hist, 10);
    gw_codes__add(&b.errors, "42", 2);
    gw_pool_stats_add(&a, &b);
    gw_pool_stats_add(&a, &b);
    cr_assert_eq(a.xacts, 6);
    cr_assert_eq(a.queries, 10);
    cr_assert_eq(a.wait_time_us, 14);
    cr_assert_eq(a.mongo_cmds[GW_MCMD_FIND], 4);
    cr_assert_eq(a.xact_hist.count, 2);
    cr_assert_eq(a.errors.count[0], 2);
}

static void pool_cb(void *drv, gw_pool_fn *fn, void *arg)
{
    gw_pool_view v = {.database = drv, .protocol = "test"};
    fn(&v, arg);
}

static void count_pool(const gw_pool_view *v, void *arg)
{
    (void)v;
    (*(int *)arg)++;
}

Test(gw_stats, registry_calls_every_source_and_forgets_removed_ones)
{
    static const gw_stats_source a = {.protocol = "a", .each_pool = pool_cb};
    static const gw_stats_source b = {.protocol = "b"}; /* no pools: skipped */
    gw_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    cr_assert_eq(gw_stats_register(&ctx, &a, "x"), 0);
    cr_assert_eq(gw_stats_register(&ctx, &b, NULL), 0);
    cr_assert_eq(gw_stats_register(&ctx, &a, "y"), 0);
    int n = 0;
    gw_stats_each_pool(&ctx, count_pool, &n);
    cr_assert_eq(n, 2);
    gw_stats_each_client(&ctx, NULL, NULL); /* no source has clients */
    gw_stats_unregister(&ctx, &a, "x");
    n = 0;
    gw_stats_each_pool(&ctx, count_pool, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(gw_stats_register(&ctx, &b, NULL), 0);
    cr_assert_eq(gw_stats_register(&ctx, &b, NULL), 0);
    cr_assert_eq(gw_stats_register(&ctx, &b, NULL), -ENOSPC);
}

Test(gw_process, reads_its_own_figures)
{
    gw_process_view v;
    cr_assert_eq(gw_process_read(&v), 0);
    cr_assert_gt(v.rss_bytes, 0);
    cr_assert_gt(v.open_fds, 0);
    cr_assert_gt(v.max_fds, 0);
    uint64_t now = gw_stats_wall_us();
    cr_assert_leq(v.start_at, now + 1000000);
    cr_assert_gt(v.start_at + 3600ull * 1000000, now);
}
