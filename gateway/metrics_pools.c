/*
 * The per-pool families of /metrics, read from the stats interface (gateway/stats.h). Names and
 * meanings are pgbouncer_exporter's with the sluice_ prefix (sluice_pools_* from SHOW POOLS,
 * sluice_stats_* from SHOW STATS), so dashboards carry over; labels are database, user and
 * protocol. The text format wants every sample of a family together, so the pools are copied
 * once (views live only during their callback), sorted, and written family by family.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/metrics.h"
#include "gateway/prom.h"
#include "gateway/stats.h"

typedef struct pool_row {
    char *database, *user, *protocol; /* owned copies */
    gw_pool_view v;                   /* its numbers; its pointers are not used after the copy */
    gw_pool_stats stats;
} pool_row;

typedef struct pool_rows {
    pool_row *rows;
    size_t n, cap;
    bool oom;
} pool_rows;

static void collect(const gw_pool_view *v, void *arg)
{
    pool_rows *pr = arg;
    if (pr->oom)
        return;
    if (pr->n == pr->cap) {
        size_t cap = pr->cap ? pr->cap * 2 : 64;
        pool_row *r = realloc(pr->rows, cap * sizeof *r);
        if (!r) {
            pr->oom = true;
            return;
        }
        pr->rows = r;
        pr->cap = cap;
    }
    pool_row *r = &pr->rows[pr->n];
    r->database = strdup(v->database ? v->database : "");
    r->user = strdup(v->user ? v->user : "");
    r->protocol = strdup(v->protocol ? v->protocol : "");
    if (!r->database || !r->user || !r->protocol) {
        free(r->database);
        free(r->user);
        free(r->protocol);
        pr->oom = true;
        return;
    }
    r->v = *v;
    if (v->stats)
        r->stats = *v->stats;
    else
        memset(&r->stats, 0, sizeof r->stats);
    pr->n++;
}

static int row_cmp(const void *a, const void *b)
{
    const pool_row *x = a, *y = b;
    int c = strcmp(x->protocol, y->protocol);
    if (c == 0)
        c = strcmp(x->database, y->database);
    if (c == 0)
        c = strcmp(x->user, y->user);
    return c;
}

/* Several loops may each have a pool of the same name: one series, their sum. */
static void merge_into(pool_row *into, const pool_row *r)
{
    gw_pool_view *a = &into->v;
    const gw_pool_view *b = &r->v;
    a->cl_active += b->cl_active;
    a->cl_waiting += b->cl_waiting;
    a->cl_active_cancel_req += b->cl_active_cancel_req;
    a->cl_waiting_cancel_req += b->cl_waiting_cancel_req;
    a->sv_active += b->sv_active;
    a->sv_active_cancel += b->sv_active_cancel;
    a->sv_being_canceled += b->sv_being_canceled;
    a->sv_idle += b->sv_idle;
    a->sv_used += b->sv_used;
    a->sv_tested += b->sv_tested;
    a->sv_login += b->sv_login;
    if (b->maxwait_us > a->maxwait_us)
        a->maxwait_us = b->maxwait_us;
    gw_pool_stats_add(&into->stats, &r->stats);
}

static void free_row(pool_row *r)
{
    free(r->database);
    free(r->user);
    free(r->protocol);
}

/* Sorted by (protocol, database, user), one row per name. */
static void sort_and_merge(pool_rows *pr)
{
    if (pr->n > 1) /* rows is NULL without pools, and qsort wants an array */
        qsort(pr->rows, pr->n, sizeof *pr->rows, row_cmp);
    size_t out = 0;
    for (size_t i = 0; i < pr->n; i++) {
        if (out > 0 && row_cmp(&pr->rows[out - 1], &pr->rows[i]) == 0) {
            merge_into(&pr->rows[out - 1], &pr->rows[i]);
            free_row(&pr->rows[i]);
            continue;
        }
        if (out != i)
            pr->rows[out] = pr->rows[i];
        out++;
    }
    pr->n = out;
}

#define POOL_LABELS(r)                                                                             \
    {                                                                                              \
        {"database", (r)->database}, {"user", (r)->user}, {"protocol", (r)->protocol},             \
    }

/* A family with one sample per pool; value() reads it from a row. */
typedef struct pool_family {
    const char *name, *type, *help;
    double (*value)(const pool_row *r);
} pool_family;

#define GAUGE(fn, field)                                                                           \
    static double fn(const pool_row *r)                                                            \
    {                                                                                              \
        return (double)r->v.field;                                                                 \
    }
#define COUNT(fn, field)                                                                           \
    static double fn(const pool_row *r)                                                            \
    {                                                                                              \
        return (double)r->stats.field;                                                             \
    }
#define SECONDS(fn, field)                                                                         \
    static double fn(const pool_row *r)                                                            \
    {                                                                                              \
        return (double)r->stats.field / 1e6;                                                       \
    }

GAUGE(cl_active, cl_active)
GAUGE(cl_waiting, cl_waiting)
GAUGE(cl_active_cancel, cl_active_cancel_req)
GAUGE(cl_waiting_cancel, cl_waiting_cancel_req)
GAUGE(sv_active, sv_active)
GAUGE(sv_active_cancel, sv_active_cancel)
GAUGE(sv_being_canceled, sv_being_canceled)
GAUGE(sv_idle, sv_idle)
GAUGE(sv_used, sv_used)
GAUGE(sv_tested, sv_tested)
GAUGE(sv_login, sv_login)
GAUGE(pool_size, pool_size)
static double maxwait(const pool_row *r)
{
    return (double)r->v.maxwait_us / 1e6;
}
COUNT(queries, queries)
COUNT(xacts, xacts)
COUNT(bytes_recv, bytes_recv)
COUNT(bytes_sent, bytes_sent)
COUNT(client_parses, client_parses)
COUNT(server_parses, server_parses)
COUNT(binds, binds)
COUNT(assignments, server_assignments)
COUNT(logins, client_logins)
COUNT(connects, server_connects)
COUNT(connect_failures, server_connect_failures)
SECONDS(query_time, query_time_us)
SECONDS(xact_time, xact_time_us)
SECONDS(wait_time, wait_time_us)

static const pool_family families[] = {
    {"sluice_pools_client_active_connections", "gauge",
     "Client connections linked to a server connection or idle and able to run queries.",
     cl_active},
    {"sluice_pools_client_waiting_connections", "gauge",
     "Client connections waiting for a server connection.", cl_waiting},
    {"sluice_pools_client_active_cancel_connections", "gauge",
     "Client connections that forwarded a query cancellation and wait for the answer.",
     cl_active_cancel},
    {"sluice_pools_client_waiting_cancel_connections", "gauge",
     "Client connections whose query cancellation is not forwarded yet.", cl_waiting_cancel},
    {"sluice_pools_server_active_connections", "gauge",
     "Server connections linked to a client connection.", sv_active},
    {"sluice_pools_server_active_cancel_connections", "gauge",
     "Server connections forwarding a cancel request.", sv_active_cancel},
    {"sluice_pools_server_being_canceled_connections", "gauge",
     "Server connections waiting for cancel requests in flight before they can become idle.",
     sv_being_canceled},
    {"sluice_pools_server_idle_connections", "gauge",
     "Server connections idle and ready for a client query.", sv_idle},
    {"sluice_pools_server_used_connections", "gauge",
     "Server connections idle long enough to be checked before use.", sv_used},
    {"sluice_pools_server_testing_connections", "gauge",
     "Server connections running their reset or check query.", sv_tested},
    {"sluice_pools_server_login_connections", "gauge",
     "Server connections logging in to the server.", sv_login},
    {"sluice_pools_client_maxwait_seconds", "gauge",
     "How long the oldest waiting client connection has waited, in seconds.", maxwait},
    {"sluice_pools_pool_size", "gauge", "Configured number of server connections of the pool.",
     pool_size},
    {"sluice_stats_queries_pooled_total", "counter",
     "Queries (MongoDB: commands) pooled and answered.", queries},
    {"sluice_stats_queries_duration_seconds_total", "counter",
     "Seconds spent connected to the server running queries.", query_time},
    {"sluice_stats_sql_transactions_pooled_total", "counter", "Transactions pooled.", xacts},
    {"sluice_stats_server_in_transaction_seconds_total", "counter",
     "Seconds spent connected to the server inside a transaction, idle in transaction or "
     "running queries.",
     xact_time},
    {"sluice_stats_received_bytes_total", "counter", "Bytes received from clients.", bytes_recv},
    {"sluice_stats_sent_bytes_total", "counter", "Bytes sent to clients.", bytes_sent},
    {"sluice_stats_client_wait_seconds_total", "counter",
     "Seconds clients spent waiting for a server connection.", wait_time},
    {"sluice_stats_client_parses_total", "counter",
     "Prepared statement Parse messages received from clients.", client_parses},
    {"sluice_stats_server_parses_total", "counter",
     "Prepared statement Parse messages sent to servers.", server_parses},
    {"sluice_stats_binds_total", "counter",
     "Prepared statements readied for execution with a Bind message.", binds},
    {"sluice_stats_server_assignments_total", "counter",
     "Times a server connection was linked to a client.", assignments},
    {"sluice_stats_client_logins_total", "counter", "Clients that logged in to the pool.", logins},
    {"sluice_server_connects_total", "counter", "Server connections established.", connects},
    {"sluice_server_connect_failures_total", "counter", "Server connection attempts that failed.",
     connect_failures},
};

/* The exposition's buckets: every other one of the stats' powers of two, 2 µs to 2^25 µs
 * (about 33.6 s, the stats' top bound, so +Inf is the stats' overflow bucket). 14 series per
 * histogram instead of 27 keeps a 1,000-pool scrape smaller; the ratio of 4 between bounds is
 * as fine as latency dashboards read. */
#define EXPO_BOUNDS ((GW_HIST_BUCKETS - 1) / 2)

static void write_hist(FILE *f, const char *name, const gw_prom_label *labels, const gw_hist *h)
{
    uint64_t cum[GW_HIST_BUCKETS], picked[EXPO_BOUNDS];
    double bounds[EXPO_BOUNDS];
    gw_hist_cumulative(h, cum);
    for (unsigned i = 0; i < EXPO_BOUNDS; i++) {
        unsigned b = 2 * i + 1;
        bounds[i] = (double)gw_hist_bound_us(b) / 1e6;
        picked[i] = cum[b];
    }
    gw_prom_histogram(f, name, labels, 3, bounds, picked, EXPO_BOUNDS, h->count,
                      (double)h->sum_us / 1e6);
}

typedef struct hist_family {
    const char *name, *help;
    size_t offset; /* of the gw_hist in gw_pool_stats */
} hist_family;

static const hist_family hists[] = {
    {"sluice_client_wait_seconds", "Time clients waited for a server connection, in seconds.",
     offsetof(gw_pool_stats, wait_hist)},
    {"sluice_transaction_duration_seconds", "Duration of transactions, in seconds.",
     offsetof(gw_pool_stats, xact_hist)},
    {"sluice_query_duration_seconds",
     "Duration of queries (MongoDB: commands) on the server, in seconds.",
     offsetof(gw_pool_stats, query_hist)},
};

static void write_hists(FILE *f, const pool_rows *pr)
{
    for (size_t k = 0; k < sizeof hists / sizeof hists[0]; k++) {
        gw_prom_family(f, hists[k].name, "histogram", hists[k].help);
        for (size_t i = 0; i < pr->n; i++) {
            const pool_row *r = &pr->rows[i];
            const gw_hist *h = (const gw_hist *)((const char *)&r->stats + hists[k].offset);
            if (h->count == 0) /* a pool's series appear with its first observation */
                continue;
            gw_prom_label l[] = POOL_LABELS(r);
            write_hist(f, hists[k].name, l, h);
        }
    }
}

static void write_errors(FILE *f, const pool_rows *pr)
{
    gw_prom_family(f, "sluice_errors_total", "counter",
                   "Errors sent to clients, by SQLSTATE class (PostgreSQL) or server error code "
                   "(MongoDB); codes past the first 16 of a pool count under \"other\".");
    for (size_t i = 0; i < pr->n; i++) {
        const pool_row *r = &pr->rows[i];
        const gw_codes *t = &r->stats.errors;
        for (unsigned c = 0; c < GW_CODES_MAX; c++) {
            if (!t->code[c][0])
                continue;
            gw_prom_label l[] = {{"database", r->database},
                                 {"user", r->user},
                                 {"protocol", r->protocol},
                                 {"code", t->code[c]}};
            gw_prom_u64(f, "sluice_errors_total", l, 4, t->count[c]);
        }
        if (t->other) {
            gw_prom_label l[] = {{"database", r->database},
                                 {"user", r->user},
                                 {"protocol", r->protocol},
                                 {"code", "other"}};
            gw_prom_u64(f, "sluice_errors_total", l, 4, t->other);
        }
    }
}

/* MongoDB's own counters, for its pools only. */
static void write_mongo(FILE *f, const pool_rows *pr)
{
    gw_prom_family(f, "sluice_mongodb_commands_total", "counter",
                   "MongoDB commands by name; names outside the known set count as \"other\".");
    for (size_t i = 0; i < pr->n; i++) {
        const pool_row *r = &pr->rows[i];
        for (unsigned c = 0; c < GW_MCMD__COUNT; c++) {
            if (!r->stats.mongo_cmds[c])
                continue;
            gw_prom_label l[] = {{"database", r->database},
                                 {"user", r->user},
                                 {"protocol", r->protocol},
                                 {"command", gw_mongo_cmd_name((gw_mongo_cmd)c)}};
            gw_prom_u64(f, "sluice_mongodb_commands_total", l, 4, r->stats.mongo_cmds[c]);
        }
    }
    static const struct {
        const char *name, *help;
        size_t offset;
    } mc[] = {
        {"sluice_mongodb_cursors_pinned_total",
         "Cursors that kept their backend connection for a client.",
         offsetof(gw_pool_stats, cursors_pinned)},
        {"sluice_mongodb_transactions_pinned_total",
         "Transactions that kept their backend connection for a client.",
         offsetof(gw_pool_stats, txns_pinned)},
        {"sluice_mongodb_killed_cursors_total", "Cursors Sluice killed after their client left.",
         offsetof(gw_pool_stats, killed_cursors)},
        {"sluice_mongodb_aborted_transactions_total",
         "Transactions Sluice aborted after their client left.",
         offsetof(gw_pool_stats, aborted_txns)},
    };
    for (size_t k = 0; k < sizeof mc / sizeof mc[0]; k++) {
        gw_prom_family(f, mc[k].name, "counter", mc[k].help);
        for (size_t i = 0; i < pr->n; i++) {
            const pool_row *r = &pr->rows[i];
            if (strcmp(r->protocol, "mongodb") != 0)
                continue;
            gw_prom_label l[] = POOL_LABELS(r);
            gw_prom_u64(f, mc[k].name, l, 3,
                        *(const uint64_t *)((const char *)&r->stats + mc[k].offset));
        }
    }
}

int gw_metrics__pools(FILE *f, gw_ctx *ctx)
{
    pool_rows pr = {0};
    gw_stats_each_pool(ctx, collect, &pr);
    int rc = pr.oom ? -ENOMEM : 0;
    if (rc == 0) {
        sort_and_merge(&pr);
        gw_prom_family(f, "sluice_pools", "gauge", "Pools, by protocol.");
        static const char *const protocols[] = {"postgresql", "mongodb"};
        for (size_t p = 0; p < 2; p++) {
            uint64_t n = 0;
            for (size_t i = 0; i < pr.n; i++)
                n += strcmp(pr.rows[i].protocol, protocols[p]) == 0;
            gw_prom_u64(f, "sluice_pools", &(gw_prom_label){"protocol", protocols[p]}, 1, n);
        }
        for (size_t k = 0; k < sizeof families / sizeof families[0]; k++) {
            gw_prom_family(f, families[k].name, families[k].type, families[k].help);
            for (size_t i = 0; i < pr.n; i++) {
                gw_prom_label l[] = POOL_LABELS(&pr.rows[i]);
                gw_prom_double(f, families[k].name, l, 3, families[k].value(&pr.rows[i]));
            }
        }
        write_hists(f, &pr);
        write_errors(f, &pr);
        write_mongo(f, &pr);
    }
    for (size_t i = 0; i < pr.n; i++)
        free_row(&pr.rows[i]);
    free(pr.rows);
    return rc;
}
