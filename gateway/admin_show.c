/*
 * admin_show: the console's SHOW views, built from the drivers' stats sources. Column names,
 * order, types and units are PgBouncer's; Sluice's own columns come after them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/admin_int.h"
#include "gateway/ctx.h"

typedef struct col {
    const char *name;
    gw_admin_type type;
} col;

#define T  GW_ADMIN_TEXT
#define I  GW_ADMIN_INT4
#define Q  GW_ADMIN_INT8
#define N  GW_ADMIN_NUMERIC
#define TS GW_ADMIN_TIMESTAMP

static const col pools_cols[] = {{"database", T},
                                 {"user", T},
                                 {"cl_active", I},
                                 {"cl_waiting", I},
                                 {"cl_active_cancel_req", I},
                                 {"cl_waiting_cancel_req", I},
                                 {"sv_active", I},
                                 {"sv_active_cancel", I},
                                 {"sv_being_canceled", I},
                                 {"sv_idle", I},
                                 {"sv_used", I},
                                 {"sv_tested", I},
                                 {"sv_login", I},
                                 {"maxwait", I},
                                 {"maxwait_us", I},
                                 {"pool_mode", T},
                                 {"load_balance_hosts", T},
                                 {"protocol", T},
                                 {NULL, T}};

static const char *const stat_names[GW_AS__COUNT] = {"server_assignment_count",
                                                     "xact_count",
                                                     "query_count",
                                                     "received",
                                                     "sent",
                                                     "xact_time",
                                                     "query_time",
                                                     "wait_time",
                                                     "client_parse_count",
                                                     "server_parse_count",
                                                     "bind_count",
                                                     "client_login_count"};

/* SHOW STATS: database, total_*, avg_* (PgBouncer), then Sluice's totals. */
static const col stats_cols[] = {{"database", T},
                                 {"total_server_assignment_count", N},
                                 {"total_xact_count", N},
                                 {"total_query_count", N},
                                 {"total_received", N},
                                 {"total_sent", N},
                                 {"total_xact_time", N},
                                 {"total_query_time", N},
                                 {"total_wait_time", N},
                                 {"total_client_parse_count", N},
                                 {"total_server_parse_count", N},
                                 {"total_bind_count", N},
                                 {"total_client_login_count", N},
                                 {"avg_server_assignment_count", N},
                                 {"avg_xact_count", N},
                                 {"avg_query_count", N},
                                 {"avg_recv", N},
                                 {"avg_sent", N},
                                 {"avg_xact_time", N},
                                 {"avg_query_time", N},
                                 {"avg_wait_time", N},
                                 {"avg_client_parse_count", N},
                                 {"avg_server_parse_count", N},
                                 {"avg_bind_count", N},
                                 {"avg_client_login_count", N},
                                 {"protocol", T},
                                 {"total_server_connect_count", N},
                                 {"total_server_connect_failures", N},
                                 {"total_error_count", N},
                                 {"total_mongo_command_count", N},
                                 {"total_cursors_pinned", N},
                                 {"total_txns_pinned", N},
                                 {"total_killed_cursors", N},
                                 {"total_aborted_txns", N},
                                 {NULL, T}};

/* The columns STATS_TOTALS and STATS_AVERAGES share (PgBouncer names them alike). */
#define PER_DB_COMMON                                                                              \
    {"database", T}, {"server_assignment_count", N}, {"xact_count", N}, {"query_count", N},        \
        {"bytes_received", N}, {"bytes_sent", N}, {"xact_time", N}, {"query_time", N},             \
    {                                                                                              \
        "wait_time", N                                                                             \
    }

static const col stats_totals_cols[] = {
    PER_DB_COMMON,     {"client_parse_count", N}, {"server_parse_count", N},
    {"bind_count", N}, {"client_login_count", N}, {"protocol", T},
    {NULL, T}};

static const col stats_averages_cols[] = {PER_DB_COMMON,
                                          {"avg_client_parse_count", N},
                                          {"avg_server_parse_count", N},
                                          {"avg_bind_count", N},
                                          {"avg_client_login_count", N},
                                          {"protocol", T},
                                          {NULL, T}};

static const col name_value_cols[] = {{"name", T}, {"value", N}, {NULL, T}};

static const col socket_cols[] = {{"type", T},
                                  {"user", T},
                                  {"database", T},
                                  {"replication", T},
                                  {"state", T},
                                  {"addr", T},
                                  {"port", I},
                                  {"local_addr", T},
                                  {"local_port", I},
                                  {"connect_time", TS},
                                  {"request_time", TS},
                                  {"wait", I},
                                  {"wait_us", I},
                                  {"close_needed", I},
                                  {"ptr", T},
                                  {"link", T},
                                  {"remote_pid", I},
                                  {"tls", T},
                                  {"application_name", T},
                                  {"prepared_statements", I},
                                  {"id", Q},
                                  {"protocol", T},
                                  {NULL, T}};

static const col databases_cols[] = {{"name", T},
                                     {"host", T},
                                     {"port", I},
                                     {"database", T},
                                     {"force_user", T},
                                     {"pool_size", I},
                                     {"min_pool_size", I},
                                     {"reserve_pool_size", I},
                                     {"server_lifetime", I},
                                     {"pool_mode", T},
                                     {"load_balance_hosts", T},
                                     {"max_connections", I},
                                     {"current_connections", I},
                                     {"max_client_connections", I},
                                     {"current_client_connections", I},
                                     {"paused", I},
                                     {"disabled", I},
                                     {"protocol", T},
                                     {NULL, T}};

static const col users_cols[] = {{"name", T},
                                 {"pool_size", T},
                                 {"reserve_pool_size", T},
                                 {"pool_mode", T},
                                 {"max_user_connections", I},
                                 {"current_connections", I},
                                 {"max_user_client_connections", I},
                                 {"current_client_connections", I},
                                 {NULL, T}};

static const col config_cols[] = {
    {"key", T}, {"value", T}, {"default", T}, {"changeable", T}, {NULL, T}};
static const col lists_cols[] = {{"list", T}, {"items", I}, {NULL, T}};
static const col mem_cols[] = {{"name", T},     {"size", I},   {"used", I}, {"free", I},
                               {"memtotal", I}, {"allocs", I}, {NULL, T}};
static const col state_cols[] = {{"key", T}, {"value", T}, {NULL, T}};
static const col version_cols[] = {{"version", T}, {NULL, T}};
static const col mongo_cmd_cols[] = {{"database", T}, {"command", T}, {"count", N}, {NULL, T}};

#undef T
#undef I
#undef Q
#undef N
#undef TS

/* ---- Writing rows ---- */

#define MAX_COLS 40
#define CELL     64

typedef struct tbl {
    gw_admin_out *out;
    unsigned n;
    char cell[MAX_COLS][CELL];
    const char *v[MAX_COLS];
    int rc;
} tbl;

static int columns(gw_admin_out *out, const col *cols)
{
    const char *names[MAX_COLS];
    gw_admin_type types[MAX_COLS];
    unsigned n = 0;
    for (; cols[n].name; n++) {
        names[n] = cols[n].name;
        types[n] = cols[n].type;
    }
    return out->columns(out->arg, n, names, types);
}

static void put_s(tbl *t, const char *s)
{
    if (t->n < MAX_COLS)
        t->v[t->n++] = s;
}

static void put_u(tbl *t, uint64_t v)
{
    if (t->n >= MAX_COLS)
        return;
    snprintf(t->cell[t->n], CELL, "%" PRIu64, v);
    t->v[t->n] = t->cell[t->n];
    t->n++;
}

static void put_i(tbl *t, long long v)
{
    if (t->n >= MAX_COLS)
        return;
    snprintf(t->cell[t->n], CELL, "%lld", v);
    t->v[t->n] = t->cell[t->n];
    t->n++;
}

/* A wall-clock time in µs as PgBouncer prints timestamps; NULL for 0. */
static void put_time(tbl *t, uint64_t wall_us)
{
    if (t->n >= MAX_COLS)
        return;
    if (wall_us == 0) {
        t->v[t->n++] = NULL;
        return;
    }
    time_t s = (time_t)(wall_us / 1000000u);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(t->cell[t->n], CELL, "%Y-%m-%d %H:%M:%S UTC", &tm);
    t->v[t->n] = t->cell[t->n];
    t->n++;
}

static void row_end(tbl *t)
{
    if (t->rc == 0)
        t->rc = t->out->row(t->out->arg, t->n, t->v);
    t->n = 0;
}

/* Room for one more element in *arr (n used of *cap): false when out of memory. */
static bool grow(void **arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 8;
    void *a = realloc(*arr, c * elem);
    if (!a)
        return false;
    *arr = a;
    *cap = c;
    return true;
}

/* ---- Per-database sums of the pools' counters ---- */

typedef struct agg {
    char db[128];
    const char *protocol;
    gw_pool_stats st;
} agg;

typedef struct aggs {
    agg *a;
    size_t n, cap;
    bool oom;
} aggs;

static void agg_pool(const gw_pool_view *v, void *arg)
{
    aggs *s = arg;
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->a[i].db, v->database) == 0 && strcmp(s->a[i].protocol, v->protocol) == 0) {
            gw_pool_stats_add(&s->a[i].st, v->stats);
            return;
        }
    }
    if (!grow((void **)&s->a, s->n, &s->cap, sizeof *s->a)) {
        s->oom = true;
        return;
    }
    agg *g = &s->a[s->n++];
    memset(g, 0, sizeof *g);
    snprintf(g->db, sizeof g->db, "%s", v->database);
    g->protocol = v->protocol;
    gw_pool_stats_add(&g->st, v->stats);
}

static int collect(gw_ctx *ctx, aggs *s)
{
    memset(s, 0, sizeof *s);
    gw_stats_each_pool(ctx, agg_pool, s);
    if (s->oom) {
        free(s->a);
        s->a = NULL;
        return -1;
    }
    return 0;
}

static void totals_of(const gw_pool_stats *st, uint64_t tot[GW_AS__COUNT])
{
    tot[GW_AS_ASSIGN] = st->server_assignments;
    tot[GW_AS_XACT] = st->xacts;
    tot[GW_AS_QUERY] = st->queries;
    tot[GW_AS_RECV] = st->bytes_recv;
    tot[GW_AS_SENT] = st->bytes_sent;
    tot[GW_AS_XACT_TIME] = st->xact_time_us;
    tot[GW_AS_QUERY_TIME] = st->query_time_us;
    tot[GW_AS_WAIT_TIME] = st->wait_time_us;
    tot[GW_AS_CLIENT_PARSE] = st->client_parses;
    tot[GW_AS_SERVER_PARSE] = st->server_parses;
    tot[GW_AS_BIND] = st->binds;
    tot[GW_AS_LOGIN] = st->client_logins;
}

static const struct gw_admin_snap *find_snap(const gw_admin *a, const char *db,
                                             const char *protocol)
{
    for (size_t i = 0; i < a->n_snaps; i++)
        if (strcmp(a->snaps[i].db, db) == 0 && strcmp(a->snaps[i].protocol, protocol) == 0)
            return &a->snaps[i];
    return NULL;
}

/* PgBouncer's averages: counts per second over the period; times per transaction, query or
 * server assignment. A counter that went backwards (the pool was rebuilt) gives 0. */
static void averages(const uint64_t cur[GW_AS__COUNT], const uint64_t old[GW_AS__COUNT],
                     uint64_t dur_us, uint64_t avg[GW_AS__COUNT])
{
    uint64_t d[GW_AS__COUNT];
    for (unsigned i = 0; i < GW_AS__COUNT; i++) {
        d[i] = cur[i] >= old[i] ? cur[i] - old[i] : 0;
        avg[i] = dur_us ? (uint64_t)((double)d[i] * 1e6 / (double)dur_us) : 0;
    }
    avg[GW_AS_XACT_TIME] = d[GW_AS_XACT] ? d[GW_AS_XACT_TIME] / d[GW_AS_XACT] : 0;
    avg[GW_AS_QUERY_TIME] = d[GW_AS_QUERY] ? d[GW_AS_QUERY_TIME] / d[GW_AS_QUERY] : 0;
    avg[GW_AS_WAIT_TIME] = d[GW_AS_ASSIGN] ? d[GW_AS_WAIT_TIME] / d[GW_AS_ASSIGN] : 0;
}

void gw_admin__snaps_free(gw_admin *a)
{
    for (size_t i = 0; i < a->n_snaps; i++)
        free(a->snaps[i].db);
    free(a->snaps);
    a->snaps = NULL;
    a->n_snaps = 0;
}

void gw_admin_tick(gw_ctx *ctx)
{
    gw_admin *a = &ctx->admin;
    uint64_t now = gw_stats_now_us();
    uint64_t period = ctx->cfg->stats_period_ms * 1000u;
    if (period == 0 || (a->snap_us && now - a->snap_us < period))
        return;
    aggs s;
    if (collect(ctx, &s) != 0)
        return;
    struct gw_admin_snap *next = calloc(s.n ? s.n : 1, sizeof *next);
    if (!next) {
        free(s.a);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++) {
        struct gw_admin_snap *sn = &next[n];
        sn->db = strdup(s.a[i].db);
        if (!sn->db)
            continue;
        sn->protocol = s.a[i].protocol;
        totals_of(&s.a[i].st, sn->tot);
        const struct gw_admin_snap *old = a->snap_us ? find_snap(a, sn->db, sn->protocol) : NULL;
        if (old)
            averages(sn->tot, old->tot, now - a->snap_us, sn->avg);
        n++;
        /* PgBouncer's stats line, per database. */
        if (old)
            gw_info(ctx,
                    "stats: %s (%s): %" PRIu64 " xacts/s, %" PRIu64 " queries/s, in %" PRIu64
                    " B/s, out %" PRIu64 " B/s, xact %" PRIu64 " us, query %" PRIu64
                    " us, wait %" PRIu64 " us",
                    sn->db, sn->protocol, sn->avg[GW_AS_XACT], sn->avg[GW_AS_QUERY],
                    sn->avg[GW_AS_RECV], sn->avg[GW_AS_SENT], sn->avg[GW_AS_XACT_TIME],
                    sn->avg[GW_AS_QUERY_TIME], sn->avg[GW_AS_WAIT_TIME]);
    }
    free(s.a);
    gw_admin__snaps_free(a);
    a->snaps = next;
    a->n_snaps = n;
    a->snap_us = now;
}

/* ---- Views ---- */

static void pool_row(const gw_pool_view *v, void *arg)
{
    tbl *t = arg;
    put_s(t, v->database);
    put_s(t, v->user);
    put_u(t, v->cl_active);
    put_u(t, v->cl_waiting);
    put_u(t, v->cl_active_cancel_req);
    put_u(t, v->cl_waiting_cancel_req);
    put_u(t, v->sv_active);
    put_u(t, v->sv_active_cancel);
    put_u(t, v->sv_being_canceled);
    put_u(t, v->sv_idle);
    put_u(t, v->sv_used);
    put_u(t, v->sv_tested);
    put_u(t, v->sv_login);
    put_u(t, v->maxwait_us / 1000000u);
    put_u(t, v->maxwait_us % 1000000u);
    put_s(t, v->pool_mode);
    put_s(t, NULL);
    put_s(t, v->protocol);
    row_end(t);
}

static int show_pools(gw_ctx *ctx, gw_admin_out *out)
{
    tbl t = {.out = out};
    gw_stats_each_pool(ctx, pool_row, &t);
    return t.rc;
}

static uint64_t mongo_cmds(const gw_pool_stats *st)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < GW_MCMD__COUNT; i++)
        n += st->mongo_cmds[i];
    return n;
}

static uint64_t errors(const gw_pool_stats *st)
{
    uint64_t n = st->errors.other;
    for (unsigned i = 0; i < GW_CODES_MAX; i++)
        n += st->errors.count[i];
    return n;
}

/* SHOW STATS (totals and averages), STATS_TOTALS (totals), STATS_AVERAGES (averages). */
static int show_stats(gw_ctx *ctx, gw_admin_out *out, bool tot, bool avg, bool extra)
{
    aggs s;
    if (collect(ctx, &s) != 0)
        return out->error(out->arg, "53200", "out of memory");
    tbl t = {.out = out};
    static const uint64_t zero[GW_AS__COUNT];
    for (size_t i = 0; i < s.n && t.rc == 0; i++) {
        const agg *g = &s.a[i];
        uint64_t cur[GW_AS__COUNT];
        totals_of(&g->st, cur);
        const struct gw_admin_snap *sn = find_snap(&ctx->admin, g->db, g->protocol);
        const uint64_t *av = sn ? sn->avg : zero;
        put_s(&t, g->db);
        for (unsigned k = 0; tot && k < GW_AS__COUNT; k++)
            put_u(&t, cur[k]);
        for (unsigned k = 0; avg && k < GW_AS__COUNT; k++)
            put_u(&t, av[k]);
        put_s(&t, g->protocol);
        if (extra) {
            put_u(&t, g->st.server_connects);
            put_u(&t, g->st.server_connect_failures);
            put_u(&t, errors(&g->st));
            put_u(&t, mongo_cmds(&g->st));
            put_u(&t, g->st.cursors_pinned);
            put_u(&t, g->st.txns_pinned);
            put_u(&t, g->st.killed_cursors);
            put_u(&t, g->st.aborted_txns);
        }
        row_end(&t);
    }
    free(s.a);
    return t.rc;
}

/* SHOW TOTALS: one name/value row per total and average, over every database. */
static int show_totals(gw_ctx *ctx, gw_admin_out *out)
{
    aggs s;
    if (collect(ctx, &s) != 0)
        return out->error(out->arg, "53200", "out of memory");
    uint64_t tot[GW_AS__COUNT] = {0}, avg[GW_AS__COUNT] = {0};
    for (size_t i = 0; i < s.n; i++) {
        uint64_t cur[GW_AS__COUNT];
        totals_of(&s.a[i].st, cur);
        const struct gw_admin_snap *sn = find_snap(&ctx->admin, s.a[i].db, s.a[i].protocol);
        for (unsigned k = 0; k < GW_AS__COUNT; k++) {
            tot[k] += cur[k];
            avg[k] += sn ? sn->avg[k] : 0;
        }
    }
    free(s.a);
    tbl t = {.out = out};
    char name[64];
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned k = 0; k < GW_AS__COUNT && t.rc == 0; k++) {
            snprintf(name, sizeof name, "%s_%s", pass ? "avg" : "total", stat_names[k]);
            put_s(&t, name);
            put_u(&t, pass ? avg[k] : tot[k]);
            row_end(&t);
        }
    }
    return t.rc;
}

typedef struct sock_ctx {
    tbl t;
    const char *type;
} sock_ctx;

static void conn_row(const gw_conn_view *v, void *arg)
{
    sock_ctx *sc = arg;
    tbl *t = &sc->t;
    char ptr[24], link[24];
    snprintf(ptr, sizeof ptr, "0x%" PRIx64, v->id);
    if (v->link)
        snprintf(link, sizeof link, "0x%" PRIx64, v->link);
    else
        link[0] = 0;
    put_s(t, sc->type);
    put_s(t, v->user);
    put_s(t, v->database);
    put_s(t, "none");
    put_s(t, v->state);
    put_s(t, v->addr);
    put_i(t, v->port);
    put_s(t, v->local_addr);
    put_i(t, v->local_port);
    put_time(t, v->connect_at);
    put_time(t, v->request_at);
    put_u(t, v->wait_us / 1000000u);
    put_u(t, v->wait_us % 1000000u);
    put_i(t, 0);
    put_s(t, ptr);
    put_s(t, link);
    put_i(t, v->remote_pid);
    put_s(t, v->tls);
    put_s(t, v->application_name);
    put_u(t, v->prepared_statements);
    put_u(t, v->id);
    put_s(t, v->protocol);
    row_end(t);
}

static void db_row(const gw_db_view *v, void *arg)
{
    tbl *t = arg;
    put_s(t, v->name);
    put_s(t, v->host);
    put_i(t, v->port);
    put_s(t, v->dbname);
    put_s(t, v->force_user);
    put_i(t, v->pool_size);
    put_i(t, v->min_pool_size);
    put_i(t, v->reserve_pool_size);
    put_i(t, v->server_lifetime_s);
    put_s(t, v->pool_mode);
    put_s(t, NULL);
    put_i(t, v->max_connections);
    put_i(t, v->current_connections);
    put_i(t, v->max_client_connections);
    put_i(t, v->current_client_connections);
    put_i(t, v->paused);
    put_i(t, v->disabled);
    put_s(t, v->protocol);
    row_end(t);
}

/* Users as the pools know them: servers and clients summed over a user's pools. */
typedef struct user_sum {
    char name[128];
    uint64_t servers, clients;
} user_sum;

typedef struct users {
    user_sum *u;
    size_t n, cap;
    bool oom;
} users;

static void user_pool(const gw_pool_view *v, void *arg)
{
    users *us = arg;
    if (!v->user || !*v->user)
        return;
    user_sum *u = NULL;
    for (size_t i = 0; i < us->n && !u; i++)
        if (strcmp(us->u[i].name, v->user) == 0)
            u = &us->u[i];
    if (!u) {
        if (!grow((void **)&us->u, us->n, &us->cap, sizeof *us->u)) {
            us->oom = true;
            return;
        }
        u = &us->u[us->n++];
        memset(u, 0, sizeof *u);
        snprintf(u->name, sizeof u->name, "%s", v->user);
    }
    u->servers += (uint64_t)v->sv_active + v->sv_idle + v->sv_used + v->sv_tested + v->sv_login;
    u->clients += (uint64_t)v->cl_active + v->cl_waiting;
}

static int show_users(gw_ctx *ctx, gw_admin_out *out)
{
    users us = {0};
    gw_stats_each_pool(ctx, user_pool, &us);
    tbl t = {.out = out};
    for (size_t i = 0; i < us.n && t.rc == 0; i++) {
        put_s(&t, us.u[i].name);
        put_s(&t, "");
        put_s(&t, "");
        put_s(&t, NULL);
        put_i(&t, 0);
        put_u(&t, us.u[i].servers);
        put_i(&t, 0);
        put_u(&t, us.u[i].clients);
        row_end(&t);
    }
    free(us.u);
    return us.oom ? out->error(out->arg, "53200", "out of memory") : t.rc;
}

static int show_config(gw_ctx *ctx, gw_admin_out *out)
{
    tbl t = {.out = out};
    char value[1024];
    const char *name, *def;
    bool changeable;
    for (size_t i = 0;
         t.rc == 0 && cfg_key_show(ctx->cfg, i, &name, value, sizeof value, &def, &changeable) == 0;
         i++) {
        put_s(&t, name);
        put_s(&t, value);
        put_s(&t, def);
        put_s(&t, changeable ? "yes" : "no");
        row_end(&t);
    }
    return t.rc;
}

typedef struct counts {
    uint64_t pools, clients, servers, dbs, login;
    users us;
} counts;

static void count_pool(const gw_pool_view *v, void *arg)
{
    counts *c = arg;
    c->pools++;
    user_pool(v, &c->us);
}

static void count_client(const gw_conn_view *v, void *arg)
{
    counts *c = arg;
    c->clients++;
    if (strcmp(v->state, "login") == 0)
        c->login++;
}

static void count_server(const gw_conn_view *v, void *arg)
{
    (void)v;
    ((counts *)arg)->servers++;
}

static void count_db(const gw_db_view *v, void *arg)
{
    (void)v;
    ((counts *)arg)->dbs++;
}

static int show_lists(gw_ctx *ctx, gw_admin_out *out)
{
    counts c;
    memset(&c, 0, sizeof c);
    gw_stats_each_pool(ctx, count_pool, &c);
    gw_stats_each_client(ctx, count_client, &c);
    gw_stats_each_server(ctx, count_server, &c);
    gw_stats_each_db(ctx, count_db, &c);
    free(c.us.u);
    const struct {
        const char *name;
        uint64_t n;
    } rows[] = {
        {"databases", c.dbs},        {"users", c.us.n},          {"peers", 0},
        {"pools", c.pools},          {"peer_pools", 0},          {"free_clients", 0},
        {"used_clients", c.clients}, {"login_clients", c.login}, {"free_servers", 0},
        {"used_servers", c.servers}, {"dns_names", 0},           {"dns_zones", 0},
        {"dns_queries", 0},          {"dns_pending", 0},
    };
    tbl t = {.out = out};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && t.rc == 0; i++) {
        put_s(&t, rows[i].name);
        put_u(&t, rows[i].n);
        row_end(&t);
    }
    return t.rc;
}

static void mem_row(tbl *t, const char *name, const gw_bufclass *c)
{
    put_s(t, name);
    put_u(t, c->size);
    put_u(t, c->used);
    put_u(t, c->n_free);
    put_u(t, (uint64_t)(c->used + c->n_free) * c->size);
    put_u(t, c->allocs);
    row_end(t);
}

/* SHOW MEM: the loop's pool as PgBouncer shows its slabs (objects of a size: in use, free,
 * bytes), plus allocs, how many the pool ever took from malloc (flat while the forwarding path
 * reuses what it has); then the process's resident size for everything else. */
static int show_mem(gw_ctx *ctx, gw_admin_out *out)
{
    gw_process_view p;
    tbl t = {.out = out};
    mem_row(&t, "buffers_16k", &ctx->bufs.small);
    mem_row(&t, "buffers_64k", &ctx->bufs.large);
    mem_row(&t, "write_requests", &ctx->bufs.wreqs);
    if (t.rc == 0 && gw_process_read(&p) == 0) {
        put_s(&t, "process");
        put_u(&t, 1);
        put_u(&t, 1);
        put_u(&t, 0);
        put_u(&t, p.rss_bytes);
        put_u(&t, 0);
        row_end(&t);
    }
    return t.rc;
}

static int show_state(gw_ctx *ctx, gw_admin_out *out)
{
    tbl t = {.out = out};
    bool paused = ctx->admin.paused_all;
    put_s(&t, "active");
    put_s(&t, paused || ctx->stopping ? "no" : "yes");
    row_end(&t);
    put_s(&t, "paused");
    put_s(&t, paused ? "yes" : "no");
    row_end(&t);
    put_s(&t, "suspended");
    put_s(&t, "no");
    row_end(&t);
    return t.rc;
}

static void mongo_cmd_row(const gw_pool_view *v, void *arg)
{
    tbl *t = arg;
    for (unsigned i = 0; i < GW_MCMD__COUNT; i++) {
        if (!v->stats->mongo_cmds[i])
            continue;
        put_s(t, v->database);
        put_s(t, gw_mongo_cmd_name((gw_mongo_cmd)i));
        put_u(t, v->stats->mongo_cmds[i]);
        row_end(t);
    }
}

static const char help_text[] =
    "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
    "\tSHOW LISTS|MEM|STATE|MONGO_COMMANDS\n"
    "\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
    "\tSET key = arg\n"
    "\tRELOAD\n"
    "\tPAUSE [<db>]\n"
    "\tRESUME [<db>]\n"
    "\tDISABLE <db>\n"
    "\tENABLE <db>\n"
    "\tRECONNECT [<db>]\n"
    "\tKILL <db>\n"
    "\tKILL_CLIENT <client_id>\n"
    "\tSHUTDOWN\n"
    "\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n"
    "\tWAIT_CLOSE [<db>]";

typedef struct view {
    const char *name;
    const col *cols; /* NULL: no rows (HELP) */
} view;

static const view views[] = {
    {"help", NULL},
    {"pools", pools_cols},
    {"stats", stats_cols},
    {"stats_totals", stats_totals_cols},
    {"stats_averages", stats_averages_cols},
    {"totals", name_value_cols},
    {"clients", socket_cols},
    {"servers", socket_cols},
    {"databases", databases_cols},
    {"users", users_cols},
    {"config", config_cols},
    {"lists", lists_cols},
    {"mem", mem_cols},
    {"state", state_cols},
    {"version", version_cols},
    {"mongo_commands", mongo_cmd_cols},
};

static const view *find_view(const char *what)
{
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        if (strcmp(views[i].name, what) == 0)
            return &views[i];
    return NULL;
}

int gw_admin__show_columns(gw_ctx *ctx, const char *what, gw_admin_out *out)
{
    (void)ctx;
    const view *v = find_view(what);
    if (!v || !v->cols)
        return 0;
    return columns(out, v->cols) == 0 ? 1 : -1;
}

static int rows_of(gw_ctx *ctx, const char *what, gw_admin_out *out)
{
    if (strcmp(what, "pools") == 0)
        return show_pools(ctx, out);
    if (strcmp(what, "stats") == 0)
        return show_stats(ctx, out, true, true, true);
    if (strcmp(what, "stats_totals") == 0)
        return show_stats(ctx, out, true, false, false);
    if (strcmp(what, "stats_averages") == 0)
        return show_stats(ctx, out, false, true, false);
    if (strcmp(what, "totals") == 0)
        return show_totals(ctx, out);
    if (strcmp(what, "clients") == 0 || strcmp(what, "servers") == 0) {
        sock_ctx sc = {.t = {.out = out}, .type = what[0] == 'c' ? "C" : "S"};
        if (what[0] == 'c')
            gw_stats_each_client(ctx, conn_row, &sc);
        else
            gw_stats_each_server(ctx, conn_row, &sc);
        return sc.t.rc;
    }
    if (strcmp(what, "databases") == 0) {
        tbl t = {.out = out};
        gw_stats_each_db(ctx, db_row, &t);
        return t.rc;
    }
    if (strcmp(what, "users") == 0)
        return show_users(ctx, out);
    if (strcmp(what, "config") == 0)
        return show_config(ctx, out);
    if (strcmp(what, "lists") == 0)
        return show_lists(ctx, out);
    if (strcmp(what, "mem") == 0)
        return show_mem(ctx, out);
    if (strcmp(what, "state") == 0)
        return show_state(ctx, out);
    if (strcmp(what, "mongo_commands") == 0) {
        tbl t = {.out = out};
        gw_stats_each_pool(ctx, mongo_cmd_row, &t);
        return t.rc;
    }
    /* version */
    tbl t = {.out = out};
    put_s(&t, "Sluice " SLUICE_VERSION);
    row_end(&t);
    return t.rc;
}

int gw_admin__show(gw_ctx *ctx, const char *what, unsigned nwords, gw_admin_out *out)
{
    const view *v = find_view(what);
    if (!v || nwords != 2)
        return out->error(out->arg, "42601",
                          *what ? "invalid SHOW command, use SHOW HELP;"
                                : "SHOW what? use SHOW HELP;");
    if (!v->cols) {
        int rc = out->notice(out->arg, "Console usage", help_text);
        return rc ? rc : out->done(out->arg, "SHOW");
    }
    int rc = columns(out, v->cols);
    rc = rc ? rc : rows_of(ctx, what, out);
    return rc ? rc : out->done(out->arg, "SHOW");
}
