/*
 * pg_tick: the core's periodic sweep (the shell's janitor timer calls pg_core_tick) and its
 * shutdown. Timeouts are checked by one sweep instead of a timer per connection: an idle client
 * then costs no timer at all.
 */
#include <stdio.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"

/* Returns true when it changed something that may have closed other objects. */
static bool check_client(pg_client *c, const cfg *conf, uint64_t now)
{
    uint64_t age = now - c->since;
    switch (c->state) {
    case PG_CL_STARTUP:
    case PG_CL_AUTH:
    case PG_CL_LOGIN_WAIT:
        /* Every client in these states has its login state (pg_client_start). */
        if (conf->client_login_timeout_ms &&
            now - c->login->accepted > conf->client_login_timeout_ms) {
            pg_client_fatal(c, PG_END_LOGIN_TIMEOUT, "08P01",
                            "client_login_timeout: login not completed within %.1f s",
                            conf->client_login_timeout_ms / 1000.0);
            return true;
        }
        break;
    case PG_CL_IDLE:
        /* PgBouncer's rule: a client holding no server that sends nothing. A client with a
         * server (session mode, a pinned client) is left alone, as there. */
        if (conf->client_idle_timeout_ms && age > conf->client_idle_timeout_ms &&
            c->conn.in.len == 0 && !c->conn.pass_left) {
            pg_client_fatal(c, PG_END_CLIENT_IDLE, "08P01",
                            "client_idle_timeout: no request for more than %.1f s",
                            conf->client_idle_timeout_ms / 1000.0);
            return true;
        }
        break;
    case PG_CL_WAITING:
        if (conf->query_wait_timeout_ms && age > conf->query_wait_timeout_ms) {
            pg_client_fatal(c, PG_END_WAIT_TIMEOUT, "08P01",
                            "query_wait_timeout: no server connection became free within %.1f s",
                            conf->query_wait_timeout_ms / 1000.0);
            return true;
        }
        break;
    case PG_CL_ACTIVE: {
        pg_server *s = c->server;
        if (!s)
            break;
        if (s->q.count == 0 && s->tx != 'I' && conf->idle_transaction_timeout_ms &&
            now - s->idle_since > conf->idle_transaction_timeout_ms && c->conn.in.len == 0 &&
            !c->conn.pass_left) {
            pg_client_fatal(c, PG_END_IDLE_TX_TIMEOUT, "25P03",
                            "idle_transaction_timeout: the transaction was idle for more than "
                            "%.1f s and has been rolled back",
                            conf->idle_transaction_timeout_ms / 1000.0);
            return true;
        }
        if (s->q.count > 0 && s->busy_since && conf->query_timeout_ms &&
            now - s->busy_since > conf->query_timeout_ms) {
            if (!s->cancel_at) {
                pg_client_log(c, CFG_LOG_INFO, "query_timeout, cancelling on server %u", s->id);
                pg_shell_cancel(s);
                s->cancel_at = now;
            } else if (now - s->cancel_at > conf->query_timeout_ms + 5000) {
                pg_server_close(s, PG_END_QUERY_TIMEOUT,
                                "query_timeout: the server did not answer the cancel");
                return true;
            }
        }
        break;
    }
    default:
        break;
    }
    return false;
}

/* Returns true when it closed s (which may have closed or opened others of its pool). */
static bool check_server(pg_server *s, const cfg *conf, uint64_t now)
{
    pg_pool *p = s->pool;
    if (s->state == PG_SV_CONNECTING && conf->server_connect_timeout_ms &&
        now - s->since > conf->server_connect_timeout_ms) {
        char msg[128];
        snprintf(msg, sizeof msg, "server_connect_timeout: no connection within %.1f s",
                 conf->server_connect_timeout_ms / 1000.0);
        snprintf(p->last_error, sizeof p->last_error, "%s", msg);
        p->last_sqlstate[0] = 0;
        p->last_fail = now ? now : 1;
        pg_server_close(s, PG_END_CONNECT_FAILED, msg);
        pg_pool_connect_failed(p, msg);
        return true;
    }
    if (s->state != PG_SV_IDLE)
        return false; /* a server in use is judged when it comes back (pg_pool_server_ready) */
    if (conf->server_lifetime_ms && now - s->born >= conf->server_lifetime_ms) {
        pg_server_close(s, PG_END_LIFETIME, "server_lifetime reached while idle");
        return true;
    }
    if (conf->server_idle_timeout_ms && now - s->since > conf->server_idle_timeout_ms &&
        (p->n_servers > (uint32_t)conf->min_pool_size || p->dropping)) {
        pg_server_close(s, PG_END_SERVER_IDLE, "server_idle_timeout reached");
        return true;
    }
    if (p->dropping) {
        pg_server_close(s, PG_END_AUTODB_IDLE, "its pool is freed (autodb_idle_timeout)");
        return true;
    }
    return false;
}

/* A client that logged in and has not had a server yet gets this long, during a drain, to send
 * its first request: it connected (perhaps to run just one transaction, as `pgbench -C` does)
 * before it could know the listener was closing. One that sends nothing is closed after it. */
#define PG_DRAIN_FIRST_REQUEST_MS 1000

/* Whether a drain may close c now without losing a transaction. */
static bool between_transactions(const pg_client *c, uint64_t now)
{
    switch (c->state) {
    case PG_CL_IDLE:
        return c->served || now - c->since >= PG_DRAIN_FIRST_REQUEST_MS;
    case PG_CL_WAITING: /* its next request has not reached a server */
        return c->served;
    case PG_CL_ACTIVE: {
        const pg_server *s = c->server;
        /* Session mode, or pinned: the server stays linked between transactions. */
        return s && s->q.count == 0 && s->tx == 'I' && !s->conn.pass_left && !c->conn.pass_left;
    }
    case PG_CL_NEW:
    case PG_CL_STARTUP: /* logins finish (client_login_timeout bounds them) */
    case PG_CL_AUTH:
    case PG_CL_LOGIN_WAIT:
    case PG_CL_CLOSING:
        break;
    }
    return false;
}

/* autodb_idle_timeout: a pool of the "*" entry without clients for that long stops opening
 * servers and closes its idle ones; once nothing points at it any more it is freed. Returns
 * true when p was freed. */
static bool check_autodb(pg_pool *p, const cfg *conf, uint64_t now)
{
    if (!p->autodb || p->n_clients > 0 || !conf->autodb_idle_timeout_ms ||
        now - p->unused_since <= conf->autodb_idle_timeout_ms)
        return false;
    if (!p->dropping) {
        p->dropping = true;
        pg_notify_stop(p);
        gw_debug(p->gw->ctx, "pool %s/%s: no client for %.1f s (autodb_idle_timeout), freeing it",
                 p->dbname, p->user, (now - p->unused_since) / 1000.0);
        return false; /* its idle servers close in this sweep */
    }
    if (p->n_alive > 0 || p->listen_conn)
        return false;
    p->gw->autodb_freed++;
    gw_info(p->gw->ctx, "pool %s/%s freed (autodb_idle_timeout)", p->dbname, p->user);
    pg_pool_free(p, p->gw);
    return true;
}

void pg_core_drain(pg_gateway *gw)
{
    if (!gw->draining || gw->drain_clients)
        return;
    uint64_t now = gw_now(gw->ctx);
    gw_list *it, *tmp;
restart:
    gw_list_foreach_safe(it, tmp, &gw->clients)
    {
        pg_client *c = gw_container_of(it, pg_client, node);
        if (!between_transactions(c, now))
            continue;
        pg_client_fatal(c, PG_END_SHUTDOWN, pg_end_sqlstate(PG_END_SHUTDOWN),
                        "terminating connection due to administrator command");
        goto restart; /* its server's release may have closed others */
    }
}

void pg_core_tick(pg_gateway *gw, uint64_t now)
{
    const cfg *conf = gw->ctx->cfg;
    gw_list *it, *tmp, *pi, *ptmp;
    pg_core_drain(gw);
restart_clients:
    gw_list_foreach_safe(it, tmp, &gw->clients)
    {
        if (check_client(gw_container_of(it, pg_client, node), conf, now))
            goto restart_clients;
    }
    gw_list_foreach_safe(pi, ptmp, &gw->pools)
    {
        pg_pool *p = gw_container_of(pi, pg_pool, node);
        if (check_autodb(p, conf, now))
            continue;
    restart_servers:
        gw_list_foreach_safe(it, tmp, &p->servers)
        {
            if (check_server(gw_container_of(it, pg_server, pool_node), conf, now))
                goto restart_servers;
        }
        pg_pool_maybe_connect(p);
        pg_notify_tick(p, now);
    }
}

void pg_core_shutdown(pg_gateway *gw)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &gw->clients)
    {
        pg_client *c = gw_container_of(it, pg_client, node);
        /* A client with a server may be in the middle of a message from it: it gets no
         * message of Sluice's own, only the close. */
        if (c->state == PG_CL_ACTIVE)
            pg_client_close(c, PG_END_SHUTDOWN, "shutting down");
        else
            pg_client_fatal(c, PG_END_SHUTDOWN, pg_end_sqlstate(PG_END_SHUTDOWN),
                            "terminating connection due to administrator command");
    }
    for (gw_list *pi = gw->pools.next; pi != &gw->pools; pi = pi->next) {
        pg_pool *p = gw_container_of(pi, pg_pool, node);
        gw_list_foreach_safe(it, tmp, &p->servers)
        {
            pg_server_close(gw_container_of(it, pg_server, pool_node), PG_END_SHUTDOWN,
                            "shutting down");
        }
        pg_notify_stop(p);
    }
}
