/* Unit tests for gateway/stats (histograms, code tallies, Mongo command names, the registry,
 * process figures) and gateway/admin (the console's parser, PAUSE, SET). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gateway/ctx.h"
#include "gateway/admin.h"
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

/* ---- The console's parser and commands (gateway/admin.h) through a recording sink ---- */

typedef struct rec {
    unsigned ncols, nrows;
    char tag[32], sqlstate[6], first[64];
    bool notice;
} rec;

static int rec_columns(void *arg, unsigned n, const char *const *names, const gw_admin_type *t)
{
    (void)names, (void)t;
    ((rec *)arg)->ncols = n;
    return 0;
}

static int rec_row(void *arg, unsigned n, const char *const *values)
{
    rec *r = arg;
    if (r->nrows++ == 0 && n > 0 && values[0])
        snprintf(r->first, sizeof r->first, "%s", values[0]);
    return 0;
}

static int rec_done(void *arg, const char *tag)
{
    snprintf(((rec *)arg)->tag, sizeof((rec *)arg)->tag, "%s", tag);
    return 0;
}

static int rec_error(void *arg, const char *sqlstate, const char *msg)
{
    (void)msg;
    snprintf(((rec *)arg)->sqlstate, 6, "%s", sqlstate);
    return 0;
}

static int rec_notice(void *arg, const char *msg, const char *detail)
{
    (void)msg, (void)detail;
    ((rec *)arg)->notice = true;
    return 0;
}

static rec run_cmd(gw_ctx *ctx, const char *sql, bool full, gw_admin_wait *wait)
{
    static rec r;
    memset(&r, 0, sizeof r);
    gw_admin_out out = {&r, rec_columns, rec_row, rec_done, rec_error, rec_notice};
    gw_admin_wait w;
    cr_assert_eq(gw_admin_run(ctx, sql, strlen(sql), full, &out, wait ? wait : &w), 0);
    return r;
}

static uint32_t fake_busy_n;
static uint32_t fake_busy(void *drv, const char *db)
{
    (void)drv, (void)db;
    return fake_busy_n;
}

static bool fake_has_db(void *drv, const char *db)
{
    (void)drv;
    return strcmp(db, "app") == 0;
}

static gw_ctx *admin_ctx(void)
{
    static gw_ctx ctx;
    static const gw_admin_driver drv = {.busy = fake_busy, .has_db = fake_has_db};
    static const gw_stats_source src = {.protocol = "test", .each_pool = pool_cb};
    memset(&ctx, 0, sizeof ctx);
    cfg *c = NULL;
    cr_assert_eq(cfg_load_string("[sluice]\nadmin_users = a\n[databases]\napp = host=x\n",
                                 "test.ini", &c, NULL),
                 0);
    ctx.cfg = c;
    cr_assert_eq(gw_admin_register(&ctx, &drv, NULL), 0);
    cr_assert_eq(gw_stats_register(&ctx, &src, "app"), 0);
    return &ctx;
}

static void admin_ctx_free(gw_ctx *ctx)
{
    gw_admin_free(ctx);
    cfg_free(ctx->cfg);
}

Test(gw_admin, garbage_gets_syntax_errors_and_stats_users_only_show)
{
    gw_ctx *ctx = admin_ctx();
    const char *bad[] = {"",
                         "foo",
                         "'x'",
                         "show",
                         "show nothing",
                         "pause a b",
                         "pause a; x",
                         "select 1",
                         "\"unterminated",
                         "set a",
                         "kill",
                         "kill_client",
                         "kill_client -1",
                         "shutdown now",
                         "\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_str_eq(run_cmd(ctx, bad[i], true, NULL).sqlstate, "42601", "%s", bad[i]);
    cr_assert_str_eq(run_cmd(ctx, "PAUSE", false, NULL).sqlstate, "42501");
    cr_assert_str_eq(run_cmd(ctx, "pause nosuch", true, NULL).sqlstate, "3D000");
    rec r = run_cmd(ctx, "SHOW POOLS;", false, NULL);
    cr_assert_eq(r.ncols, 18);
    cr_assert_eq(r.nrows, 1);
    cr_assert_str_eq(r.first, "app");
    cr_assert_str_eq(r.tag, "SHOW");
    cr_assert(run_cmd(ctx, "show help", false, NULL).notice);
    admin_ctx_free(ctx);
}

Test(gw_admin, pause_waits_for_busy_servers_and_resume_lifts_it)
{
    gw_ctx *ctx = admin_ctx();
    gw_admin_wait w;
    fake_busy_n = 2;
    rec r = run_cmd(ctx, "PAUSE app", true, &w);
    cr_assert_eq(w.kind, GW_ADMIN_WAIT_PAUSE);
    cr_assert_str_eq(r.tag, "");
    cr_assert(gw_admin_paused(ctx, "app"));
    cr_assert(!gw_admin_paused(ctx, "other"));
    gw_admin_out out = {&r, rec_columns, rec_row, rec_done, rec_error, rec_notice};
    cr_assert(!gw_admin_poll(ctx, &w, &out));
    fake_busy_n = 0;
    cr_assert(gw_admin_poll(ctx, &w, &out));
    cr_assert_str_eq(r.tag, "PAUSE");
    cr_assert_str_eq(run_cmd(ctx, "PAUSE app", true, NULL).sqlstate, "55000");
    cr_assert_str_eq(run_cmd(ctx, "RESUME app", true, NULL).tag, "RESUME");
    cr_assert(!gw_admin_paused(ctx, "app"));
    cr_assert_str_eq(run_cmd(ctx, "RESUME", true, NULL).sqlstate, "55000");
    cr_assert_str_eq(run_cmd(ctx, "disable app", true, NULL).tag, "DISABLE");
    cr_assert(gw_admin_disabled(ctx, "app"));
    cr_assert_str_eq(run_cmd(ctx, "ENABLE app", true, NULL).tag, "ENABLE");
    cr_assert(!gw_admin_disabled(ctx, "app"));
    admin_ctx_free(ctx);
}

Test(gw_admin, set_changes_reloadable_keys_only)
{
    gw_ctx *ctx = admin_ctx();
    cr_assert_str_eq(run_cmd(ctx, "SET default_pool_size = 7", true, NULL).tag, "SET");
    cr_assert_eq(ctx->cfg->default_pool_size, 7);
    cr_assert_eq(ctx->cfg_gen, 1);
    cr_assert_str_eq(run_cmd(ctx, "set server_reset_query to 'DISCARD ALL'", true, NULL).tag,
                     "SET");
    cr_assert_str_eq(run_cmd(ctx, "SET listen_port = 1", true, NULL).sqlstate, "55P02");
    cr_assert_str_eq(run_cmd(ctx, "SET auth_type = md5", true, NULL).sqlstate, "55P02");
    cr_assert_str_eq(run_cmd(ctx, "SET nope = 1", true, NULL).sqlstate, "42704");
    cr_assert_str_eq(run_cmd(ctx, "SET default_pool_size = 0", true, NULL).sqlstate, "22023");
    cr_assert_eq(ctx->cfg->default_pool_size, 7);
    cr_assert_str_eq(run_cmd(ctx, "RELOAD", true, NULL).sqlstate, "0A000"); /* no process */
    admin_ctx_free(ctx);
}
