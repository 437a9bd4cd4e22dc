/*
 * pg_pool: pools of server connections keyed by (database, user), each bounded by its pool_size
 * (and the database's max_db_connections), with a FIFO queue of clients waiting for a server.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_tlskw.h"
#include "drivers/pg/pg_wire.h"

/* A failed connection attempt is not retried for this long, so a down server is not hammered;
 * the janitor retries for clients still waiting. */
#define PG_CONNECT_RETRY_MS 500

static bool has_kw(const cfg_database *db, const char *kw)
{
    for (size_t i = 0; i < db->n_conn; i++)
        if (strcmp(db->conn[i].key, kw) == 0)
            return true;
    return false;
}

/* Frees both arrays; a pair whose copy failed halfway is freed too (either string of its last
 * entry may be set). */
static void free_kw(char **kw, char **val)
{
    for (size_t i = 0; kw && val && (kw[i] || val[i]); i++) {
        free(kw[i]);
        free(val[i]);
    }
    free(kw);
    free(val);
}

/* libpq keywords for new connections: the database line, plus what it leaves out. TLS follows
 * the server_tls_* keys (pg_tlskw.h); GSS encryption defaults to off, as Sluice relays only plain
 * or TLS bytes. 0 with both arrays in *kw_out and *val_out (caller frees them with free_kw even
 * on failure), or -1. */
static int build_kw(const pg_pool *p, const cfg *c, const cfg_database *db, char ***kw_out,
                    char ***val_out)
{
    pg_tlskw tls;
    *kw_out = *val_out = NULL;
    if (pg_tlskw_build(c, db, &tls) != 0)
        return -1;
    size_t n = db->n_conn + 5 + tls.n, i = 0;
    char **kw = *kw_out = calloc(n + 1, sizeof(char *));
    char **val = *val_out = calloc(n + 1, sizeof(char *));
    int rc = -1;
    if (!kw || !val)
        goto out;
#define ADD(k, v)                                                                                  \
    do {                                                                                           \
        kw[i] = strdup(k);                                                                         \
        val[i] = strdup(v);                                                                        \
        if (!kw[i] || !val[i])                                                                     \
            goto out;                                                                              \
        i++;                                                                                       \
    } while (0)
    for (size_t j = 0; j < db->n_conn; j++)
        ADD(db->conn[j].key, db->conn[j].value);
    if (!has_kw(db, "dbname"))
        ADD("dbname", p->dbname);
    if (!has_kw(db, "user"))
        ADD("user", p->user);
    for (size_t j = 0; j < tls.n; j++)
        ADD(tls.kw[j], tls.val[j]);
    if (!has_kw(db, "gssencmode"))
        ADD("gssencmode", "disable");
    /* libpq would look in ~/.pgpass: a password Sluice's OS user keeps there is not one the
     * config gave (a path that cannot exist makes libpq skip the file silently). */
    if (!has_kw(db, "passfile"))
        ADD("passfile", "/dev/null/no-passfile");
    ADD("fallback_application_name", "sluice");
#undef ADD
    rc = 0;
out:
    pg_tlskw_free(&tls);
    return rc;
}

static bool same_kw(char **a, char **av, char **b, char **bv)
{
    size_t i = 0;
    for (; a[i] && b[i]; i++)
        if (strcmp(a[i], b[i]) != 0 || strcmp(av[i], bv[i]) != 0)
            return false;
    return !a[i] && !b[i];
}

/* Idle servers made with settings the pool no longer has end now; busy ones end when their
 * client lets go of them (pg_pool_server_ready). */
static void close_stale_idle(pg_pool *p, const char *why)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &p->idle)
    {
        pg_server *s = gw_container_of(it, pg_server, idle_node);
        if (p->removed || s->conn_gen != p->conn_gen)
            pg_server_close(s, PG_END_RECONFIGURED, why);
    }
}

/* A reload changed the database's line (or the server_tls_* keys): new servers use the new
 * connection settings, and servers made with the old ones are retired as their transactions end,
 * so no client loses one. Keeps the old settings when the new ones cannot be built (out of
 * memory). */
static void apply_line(pg_pool *p, const cfg *c, const cfg_database *db)
{
    char **kw = NULL, **val = NULL;
    if (build_kw(p, c, db, &kw, &val) != 0) {
        free_kw(kw, val);
        gw_error(p->gw->ctx, "pool %s/%s: out of memory applying its new settings", p->dbname,
                 p->user);
        return;
    }
    if (same_kw(kw, val, p->kw, p->val)) {
        free_kw(kw, val);
        return;
    }
    free_kw(p->kw, p->val);
    p->kw = kw;
    p->val = val;
    p->conn_gen++;
    /* What was learnt logs in as the old line's user, possibly to another server. */
    pg_pool_cred_clear(p);
    p->have_defaults = false;
    p->last_fail = 0;
    gw_info(p->gw->ctx,
            "pool %s/%s: connection settings changed; servers are replaced as their "
            "transactions end",
            p->dbname, p->user);
    close_stale_idle(p, "the database's connection settings changed");
}

void pg_pool_refresh(pg_pool *p, const gw_ctx *ctx)
{
    if (p->cfg_gen == ctx->cfg_gen)
        return;
    const cfg_database *db = cfg_find_database(ctx->cfg, p->dbname);
    bool was_removed = p->removed;
    p->removed = !db;
    if (db) {
        p->size = cfg_db_pool_size(ctx->cfg, db);
        p->mode = cfg_db_pool_mode(ctx->cfg, db);
        p->db_max = cfg_db_max_connections(ctx->cfg, db);
        p->autodb = strcmp(db->name, "*") == 0;
        /* New server connections follow the reloaded line and server_tls_* keys. */
        if (p->cfg_gen != 0)
            apply_line(p, ctx->cfg, db);
    } else if (!was_removed) {
        /* New clients are refused at login (3D000); connected ones keep the old settings
         * until they leave. */
        gw_info(ctx, "pool %s/%s: database removed; its clients may finish", p->dbname, p->user);
        close_stale_idle(p, "the database was removed from the configuration");
    }
    pg_pool_cred_from_file(p, ctx); /* the users file may have changed */
    p->cfg_gen = ctx->cfg_gen;
}

pg_pool *pg_pool_get(pg_gateway *gw, const cfg_database *db, const char *dbname, const char *user)
{
    gw_list *it;
    for (it = gw->pools.next; it != &gw->pools; it = it->next) {
        pg_pool *p = gw_container_of(it, pg_pool, node);
        if (strcmp(p->dbname, dbname) == 0 && strcmp(p->user, user) == 0) {
            pg_pool_refresh(p, gw->ctx);
            p->dropping = false; /* a client came back before its servers were gone */
            return p;
        }
    }
    pg_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->gw = gw;
    gw_list_init(&p->servers);
    gw_list_init(&p->idle);
    gw_list_init(&p->waiters);
    gw_list_init(&p->login_waiters);
    p->dbname = strdup(dbname);
    p->user = strdup(user);
    if (!p->dbname || !p->user || build_kw(p, gw->ctx->cfg, db, &p->kw, &p->val) != 0) {
        pg_pool_free(p, gw);
        return NULL;
    }
    pg_pool_refresh(p, gw->ctx);
    gw_list_push_tail(&gw->pools, &p->node);
    gw_info(gw->ctx, "new pool %s/%s (size %d, %s mode)", dbname, user, p->size,
            cfg_pool_mode_name(p->mode));
    return p;
}

void pg_pool_free(pg_pool *p, pg_gateway *gw)
{
    gw_list_remove(&p->node);
    pg_notify_free(p);
    pg_pool_cred_clear(p);
    free_kw(p->kw, p->val);
    pg_params_free(&p->defaults);
    free(p->dbname);
    free(p->user);
    free(p);
    (void)gw;
}

/* Counts list entries, stopping at cap: callers only need to know whether there are "enough". */
static uint32_t count_list(const gw_list *l, uint32_t cap)
{
    uint32_t n = 0;
    for (const gw_list *it = l->next; it != l && n < cap; it = it->next)
        n++;
    return n;
}

void pg_pool_maybe_connect(pg_pool *p)
{
    pg_gateway *gw = p->gw;
    if (gw->stopping || p->dropping)
        return;
    pg_pool_refresh(p, gw->ctx);
    uint64_t now = gw_now(gw->ctx);
    if (p->last_fail) {
        /* Credentials the server refused (class 28) would be refused again: the server is not
         * asked for server_login_retry, and clients get its answer meanwhile instead of
         * waiting. Other refusals are retried soon: a tool that gets 3D000 creates the
         * database and connects again. */
        bool refused = strncmp(p->last_sqlstate, "28", 2) == 0;
        uint64_t wait = PG_CONNECT_RETRY_MS, retry = gw->ctx->cfg->server_login_retry_ms;
        if (refused && retry > wait)
            wait = retry;
        if (now - p->last_fail < wait) {
            if (refused)
                pg_pool_connect_failed(p, p->last_error);
            return;
        }
    }
    /* One new connection per waiting client that no connecting or checked server will
     * serve. */
    uint32_t max = pg_limits_pool_max(p, now);
    uint32_t room = p->n_servers < max ? max - p->n_servers : 0;
    uint32_t waiting = count_list(&p->waiters, p->n_connecting + p->n_checking + room);
    uint32_t want = waiting > p->n_checking ? waiting - p->n_checking : 0;
    if (!p->have_defaults && !gw_list_empty(&p->login_waiters) && want == 0)
        want = 1;
    uint32_t min = p->removed || gw->draining ? 0 : (uint32_t)gw->ctx->cfg->min_pool_size;
    if (p->n_servers < min && min - p->n_servers > want)
        want = min - p->n_servers;
    while (p->n_connecting < want && pg_limits_may_open(p, now)) {
        if (!pg_shell_connect(p))
            break;
        if (p->last_fail)
            break; /* the attempt failed at once; the waiters have been told */
    }
}

void pg_pool_connect_failed(pg_pool *p, const char *msg)
{
    if (p->n_connecting > 0 || p->n_servers > 0)
        return; /* another server may still come up or come back */
    gw_list *it, *tmp;
    for (int pass = 0; pass < 2; pass++) {
        gw_list_foreach_safe(it, tmp, pass == 0 ? &p->login_waiters : &p->waiters)
        {
            pg_client *c = gw_container_of(it, pg_client, wait_node);
            if (p->last_sqlstate[0])
                pg_client_fatal(c, PG_END_CONNECT_FAILED, p->last_sqlstate, "%s", msg);
            else
                pg_client_fatal(c, PG_END_CONNECT_FAILED, "08006",
                                "could not connect to the server: %s", msg);
        }
    }
}

static void link(pg_client *c, pg_server *s)
{
    pg_server_set_state(s, PG_SV_ACTIVE);
    pg_client_set_state(c, PG_CL_ACTIVE);
    s->client = c;
    c->server = s;
    GW_STAT_ADD(s->pool->stats.server_assignments, 1);
    s->used = true;
    c->served = true;
    s->idle_since = gw_now(pg_ctx(&s->conn));
    if (pg_relay_sync_params(s, c) != 0)
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
}

/* Whether s, idle since s->since, must pass server_check_query before a client gets it. */
static bool needs_check(const pg_server *s, const cfg *conf, uint64_t now)
{
    if (!conf->server_check_query || !*conf->server_check_query)
        return false;
    return conf->server_check_delay_ms == 0 || now - s->since > conf->server_check_delay_ms;
}

/* Sends server_check_query on s for the waiting clients: at its ReadyForQuery s is placed as
 * any clean server is (pg_pool_server_ready); if it fails, or the connection turns out dead,
 * s closes and the pool opens another for them. */
static void start_check(pg_server *s, const char *query)
{
    pg_gateway *gw = s->conn.gw;
    pg_server_set_state(s, PG_SV_RESETTING);
    s->checking = true;
    s->pool->n_checking++;
    gw_debug(gw->ctx, "server %u idle for %.1f s: checking it", s->id,
             (gw_now(gw->ctx) - s->since) / 1000.0);
    int rc = pg_build_query(&s->conn.out, gw->bufs, query);
    rc = rc ? rc : pg_reqq_push(s, 'Q', PG_REQ_SKIP, NULL, false);
    if (rc != 0) {
        pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
        return;
    }
    pg_conn_mark(&s->conn);
}

bool pg_pool_acquire(pg_client *c)
{
    pg_pool *p = c->pool;
    const gw_ctx *ctx = pg_ctx(&c->conn);
    pg_pool_refresh(p, ctx);
    /* A paused database holds new transactions until RESUME (pg_pool_resume). */
    if (gw_admin_paused(pg_ctx(&c->conn), p->dbname)) {
        pg_client_set_state(c, PG_CL_WAITING);
        return false;
    }
    uint64_t now = gw_now(ctx);
    gw_list *it = gw_list_first(&p->idle);
    if (it) {
        pg_server *s = gw_container_of(it, pg_server, idle_node);
        if (!needs_check(s, ctx->cfg, now)) {
            link(c, s);
            return !pg_conn_closing(&c->conn);
        }
        pg_client_set_state(c, PG_CL_WAITING);
        start_check(s, ctx->cfg->server_check_query);
        return false;
    }
    pg_client_set_state(c, PG_CL_WAITING);
    pg_pool_maybe_connect(p);
    return false;
}

/* server_lifetime: s is older than that, or (0) has served its one client. */
static bool past_lifetime(const pg_server *s, const cfg *conf, uint64_t now)
{
    if (conf->server_lifetime_ms == 0)
        return s->used;
    return now - s->born >= conf->server_lifetime_ms;
}

void pg_pool_server_ready(pg_server *s)
{
    pg_pool *p = s->pool;
    pg_gateway *gw = p->gw;
    pg_pool_refresh(p, gw->ctx);
    if (gw->stopping) {
        pg_server_close(s, PG_END_SHUTDOWN, "shutting down");
        return;
    }
    uint64_t now = gw_now(gw->ctx);
    if (past_lifetime(s, gw->ctx->cfg, now)) {
        pg_server_close(s, PG_END_LIFETIME, "server_lifetime reached");
        return;
    }
    /* Over pool_size: after a reload that shrank it, or a reserve server nobody waits for. */
    if (p->n_servers > pg_limits_pool_max(p, now)) {
        bool reserve = gw->ctx->cfg->reserve_pool_size > 0 && gw_list_empty(&p->waiters);
        pg_server_close(s, PG_END_POOL_SHRINK,
                        reserve ? "reserve server no longer needed"
                                : "pool is larger than pool_size");
        return;
    }
    pg_pool *other = pg_limits_longer_waiter(p);
    if (other) {
        pg_server_close(s, PG_END_MAKE_ROOM,
                        "a client of a pool under the same max_db_connections or "
                        "max_user_connections has waited longer");
        pg_pool_maybe_connect(other);
        return;
    }
    if (s->close_needed) {
        pg_server_close(s, PG_END_ADMIN, "closed by RECONNECT");
        return;
    }
    if (s->conn_gen != p->conn_gen) {
        pg_server_close(s, PG_END_RECONFIGURED, "the database's connection settings changed");
        return;
    }
    if (s->cancels > 0) {
        /* A cancel sent for the previous client could hit the next one's query. */
        pg_server_set_state(s, PG_SV_RESETTING);
        return;
    }
    gw_list *it = gw_admin_paused(gw->ctx, p->dbname) ? NULL : gw_list_first(&p->waiters);
    if (it) {
        pg_client *c = gw_container_of(it, pg_client, wait_node);
        link(c, s);
        pg_conn_mark_process(&c->conn);
        return;
    }
    if (p->removed) {
        /* Nobody new can come for it. */
        pg_server_close(s, PG_END_RECONFIGURED, "the database was removed from the configuration");
        return;
    }
    pg_server_set_state(s, PG_SV_IDLE);
}

void pg_pool_release_if_done(pg_server *s)
{
    pg_client *c = s->client;
    if (s->state != PG_SV_ACTIVE || !c || s->pool->mode != CFG_POOL_TRANSACTION)
        return;
    if (s->q.count > 0 || s->tx != 'I' || c->pinned || c->conn.pass_left || s->conn.pass_left)
        return;
    pg_pool_release(s, false);
}

void pg_pool_release(pg_server *s, bool client_left)
{
    pg_gateway *gw = s->conn.gw;
    pg_client *c = s->client;
    /* The client is half-way through a message to this server: the server would read the next
     * client's bytes as the rest of it. */
    bool mid_message = c && c->conn.pass_left > 0;
    bool pinned = c && c->pinned;
    /* A transaction the client left open ends here for the statistics (its ROLLBACK is
     * Sluice's, not the next client's). */
    s->query_start_us = s->xact_start_us = 0;
    if (c) {
        c->server = NULL;
        s->client = NULL;
        if (c->state == PG_CL_ACTIVE) {
            pg_client_set_state(c, PG_CL_IDLE);
            if (c->conn.in.len > 0)
                pg_conn_mark_process(&c->conn);
            else
                pg_conn_mark(&c->conn);
        }
        pg_notify_flush(c);
        /* A graceful shutdown closes each client as its transaction ends. */
        if (gw->draining && !gw->drain_clients && c->state == PG_CL_IDLE)
            pg_client_fatal(c, PG_END_SHUTDOWN, pg_end_sqlstate(PG_END_SHUTDOWN),
                            "terminating connection due to administrator command");
    }
    if (s->state == PG_SV_CLOSING)
        return;
    /* A request still in flight: its results have nowhere to go and its end is unknown. */
    if (s->q.count > 0 || s->conn.pass_left || mid_message) {
        pg_server_close(s, PG_END_CLIENT_GONE,
                        mid_message ? "client left in the middle of a message"
                                    : "client left while a request was in progress");
        return;
    }
    const char *reset = gw->ctx->cfg->server_reset_query;
    bool session_reset = (client_left && s->pool->mode == CFG_POOL_SESSION) ||
                         gw->ctx->cfg->server_reset_query_always;
    session_reset = session_reset && reset && *reset;
    /* A pinned client changed session state Sluice does not track: all of it goes. */
    if (pinned)
        reset = "DISCARD ALL";
    bool need_reset = session_reset || pinned;
    if (s->tx == 'I' && !need_reset) {
        pg_pool_server_ready(s);
        return;
    }
    pg_server_set_state(s, PG_SV_RESETTING);
    s->synced = false; /* ROLLBACK and the reset query may change parameters */
    int rc = 0;
    if (s->tx != 'I') {
        rc = pg_build_query(&s->conn.out, gw->bufs, "ROLLBACK");
        rc = rc ? rc : pg_reqq_push(s, 'Q', PG_REQ_SKIP, NULL, false);
    }
    if (need_reset) {
        rc = rc ? rc : pg_build_query(&s->conn.out, gw->bufs, reset);
        rc = rc ? rc : pg_reqq_push(s, 'Q', PG_REQ_SKIP, NULL, false);
        /* Parameters Sluice SET and the server does not report are back at their defaults
         * too (RESET ALL); the reported ones come back as ParameterStatus. */
        if (rc == 0 &&
            (strcasecmp(reset, "DISCARD ALL") == 0 || strcasecmp(reset, "RESET ALL") == 0))
            rc = pg_server_params_reset(s);
    }
    if (rc != 0) {
        pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
        return;
    }
    pg_conn_mark(&s->conn);
}

void pg_server_cancel_done(pg_gateway *gw, uint32_t server_id)
{
    /* A server held back from the pool until its cancel was delivered can go now. */
    for (gw_list *it = gw->pools.next; it != &gw->pools; it = it->next) {
        pg_pool *p = gw_container_of(it, pg_pool, node);
        for (gw_list *si = p->servers.next; si != &p->servers; si = si->next) {
            pg_server *s = gw_container_of(si, pg_server, pool_node);
            if (s->id != server_id)
                continue;
            if (s->cancels > 0 && --s->cancels == 0 && s->state == PG_SV_RESETTING &&
                s->q.count == 0 && s->tx == 'I')
                pg_pool_server_ready(s);
            return;
        }
    }
}

void pg_pool_resume(pg_pool *p)
{
    gw_ctx *ctx = p->gw->ctx;
    if (gw_admin_paused(ctx, p->dbname))
        return;
    gw_list *w, *i;
    while ((w = gw_list_first(&p->waiters)) != NULL && (i = gw_list_first(&p->idle)) != NULL) {
        pg_client *c = gw_container_of(w, pg_client, wait_node);
        link(c, gw_container_of(i, pg_server, idle_node));
        pg_conn_mark_process(&c->conn);
    }
    pg_pool_maybe_connect(p);
}
