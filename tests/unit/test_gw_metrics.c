/* Unit tests for /metrics's pool families, fed by fake stats sources: sums across loops, label
 * escaping, histograms, Mongo families; the whole exposition must pass `promtool check metrics`
 * and parse as 0.0.4 text. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/ctx.h"
#include "gateway/metrics.h"
#include "gateway/stats.h"

static gw_pool_stats pg_stats, mongo_stats;

/* Two pools: one with a hostile database name, and a Mongo entry. */
static void pools(void *drv, gw_pool_fn *fn, void *arg)
{
    gw_pool_view v = {.database = "app\"}\n",
                      .user = "alice",
                      .protocol = "postgresql",
                      .cl_active = 2,
                      .cl_waiting = 1,
                      .sv_idle = 3,
                      .maxwait_us = 1500000,
                      .pool_size = 20,
                      .stats = &pg_stats};
    fn(&v, arg);
    gw_pool_view m = {.database = "orders",
                      .user = "",
                      .protocol = "mongodb",
                      .sv_active = 1,
                      .pool_size = 10,
                      .stats = &mongo_stats};
    fn(&m, arg);
}

static char *expose(gw_ctx *ctx)
{
    char *out;
    size_t len;
    FILE *f = open_memstream(&out, &len);
    cr_assert_eq(gw_metrics__pools(f, ctx), 0);
    fclose(f);
    return out;
}

static void setup(void)
{
    memset(&pg_stats, 0, sizeof pg_stats);
    memset(&mongo_stats, 0, sizeof mongo_stats);
    pg_stats.xacts = 5;
    pg_stats.queries = 7;
    pg_stats.query_time_us = 2500000;
    gw_hist__add(&pg_stats.xact_hist, 3);
    gw_hist__add(&pg_stats.xact_hist, 100);
    gw_hist__add(&pg_stats.xact_hist, 50000000); /* over the top bound */
    gw_codes__add(&pg_stats.errors, "42", 2);
    mongo_stats.mongo_cmds[GW_MCMD_FIND] = 4;
    mongo_stats.cursors_pinned = 1;
}

TestSuite(gw_metrics, .init = setup);

Test(gw_metrics, two_loops_pools_of_one_name_are_summed)
{
    static const gw_stats_source src = {.protocol = "postgresql", .each_pool = pools};
    gw_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    gw_stats_register(&ctx, &src, NULL);
    gw_stats_register(&ctx, &src, NULL);
    char *out = expose(&ctx);
    const char *lbl = "{database=\"app\\\"}\\n\",user=\"alice\",protocol=\"postgresql\"}";
    char want[512];
    snprintf(want, sizeof want, "\nsluice_pools_client_active_connections%s 4\n", lbl);
    cr_assert(strstr(out, want), "%s in\n%s", want, out);
    snprintf(want, sizeof want, "\nsluice_stats_sql_transactions_pooled_total%s 10\n", lbl);
    cr_assert(strstr(out, want), "%s", want);
    snprintf(want, sizeof want, "\nsluice_pools_client_maxwait_seconds%s 1.5\n", lbl);
    cr_assert(strstr(out, want), "%s", want);
    snprintf(want, sizeof want, "\nsluice_stats_queries_duration_seconds_total%s 5\n", lbl);
    cr_assert(strstr(out, want), "%s", want);
    cr_assert(strstr(out, "\nsluice_pools{protocol=\"postgresql\"} 1\n"));
    cr_assert(strstr(out, "\nsluice_mongodb_commands_total{database=\"orders\",user=\"\","
                          "protocol=\"mongodb\",command=\"find\"} 8\n"));
    cr_assert(strstr(out, "\nsluice_errors_total{database=\"app\\\"}\\n\",user=\"alice\","
                          "protocol=\"postgresql\",code=\"42\"} 2\n"));
    /* 3 µs and 100 µs fall under 8 µs and 128 µs; the 50 s one only under +Inf. */
    snprintf(want, sizeof want,
             "\nsluice_transaction_duration_seconds_bucket{database=\"app\\\"}\\n\",user=\"alice\","
             "protocol=\"postgresql\",le=\"8e-06\"} 2\n");
    cr_assert(strstr(out, want), "%s", want);
    cr_assert(strstr(out, "le=\"33.554432\"} 4\n"));
    cr_assert(strstr(out, "le=\"+Inf\"} 6\n"));
    /* A pool without observations has no histogram series. */
    cr_assert_null(strstr(out, "sluice_client_wait_seconds_bucket"));
    free(out);
}

Test(gw_metrics, exposition_passes_promtool)
{
    static const gw_stats_source src = {.protocol = "postgresql", .each_pool = pools};
    gw_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    gw_stats_register(&ctx, &src, NULL);
    char *out = expose(&ctx);
    FILE *p = popen("promtool check metrics >/dev/null 2>&1", "w");
    cr_assert_not_null(p);
    fputs(out, p);
    int rc = pclose(p);
    cr_assert_eq(rc, 0, "promtool check metrics refused:\n%s", out);
    free(out);
}

Test(gw_metrics, no_source_no_pools)
{
    gw_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    char *out = expose(&ctx);
    cr_assert(strstr(out, "sluice_pools{protocol=\"postgresql\"} 0\n"));
    cr_assert_null(strstr(out, "sluice_pools_client_active_connections{"));
    free(out);
}
