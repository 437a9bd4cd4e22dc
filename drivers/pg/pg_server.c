/*
 * pg_server: one server connection's life as the core sees it: its states and their pool
 * bookkeeping, its close, the events of its connect attempt, and the framing of what it sends.
 * Its socket and libpq belong to the shell (pg_connect.c); it calls down only through
 * pg_shell.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_pqerr.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_wire.h"

static const char *const server_state_names[] = {"new",    "connecting", "idle",
                                                 "active", "resetting",  "closing"};

#define SV(st) (1u << PG_SV_##st)
/* The states each state may be entered from. ACTIVE follows ACTIVE when a server goes straight
 * from one client to the next waiting one; RESETTING follows IDLE for server_check_query. */
static const unsigned server_from[] = {
    [PG_SV_NEW] = 0,
    [PG_SV_CONNECTING] = SV(NEW),
    [PG_SV_IDLE] = SV(ACTIVE) | SV(RESETTING),
    [PG_SV_ACTIVE] = SV(IDLE) | SV(ACTIVE) | SV(RESETTING),
    [PG_SV_RESETTING] = SV(CONNECTING) | SV(IDLE) | SV(ACTIVE) | SV(RESETTING),
    [PG_SV_CLOSING] = SV(CONNECTING) | SV(IDLE) | SV(ACTIVE) | SV(RESETTING),
};
#undef SV

/* Also keeps the pool's lists and counts, which follow from the states: pool->servers and
 * n_servers hold every server from CONNECTING until CLOSING, n_connecting those in
 * CONNECTING, pool->idle (LIFO) those in IDLE. */
void pg_server_set_state(pg_server *s, pg_server_state st)
{
    pg_server_state old = s->state;
    pg_pool *p = s->pool;
    if (!(server_from[st] & (1u << old))) {
        gw_error(pg_ctx(&s->conn), "server %u: impossible state change %s -> %s", s->id,
                 server_state_names[old], server_state_names[st]);
        gw__assert_fail("legal server state change", __FILE__, __LINE__);
    }
    gw_assert(st != PG_SV_CLOSING || s->conn.end != PG_END_NONE);
    if (old == PG_SV_IDLE)
        gw_list_remove(&s->idle_node);
    if (s->checking && st != PG_SV_RESETTING) {
        s->checking = false;
        p->n_checking--;
    }
    if (old == PG_SV_CONNECTING)
        p->n_connecting--;
    if (old == PG_SV_NEW) {
        gw_list_push_tail(&p->servers, &s->pool_node);
        p->n_servers++;
    }
    if (st == PG_SV_IDLE)
        gw_list_push_head(&p->idle, &s->idle_node); /* the most recently used goes first */
    if (st == PG_SV_CONNECTING)
        p->n_connecting++;
    if (st == PG_SV_CLOSING) {
        gw_list_remove(&s->pool_node);
        p->n_servers--;
    }
    s->state = st;
    s->since = gw_now(pg_ctx(&s->conn));
}

void pg_server_close(pg_server *s, pg_end why, const char *detail)
{
    if (s->conn.end != PG_END_NONE)
        return; /* closed already, or its close is under way further up the stack */
    pg_gateway *gw = s->conn.gw;
    pg_pool *p = s->pool;
    s->conn.end = why;
    gw_log_who who = {.protocol = "pg",
                      .client_id = s->client ? s->client->pid : 0,
                      .server_id = s->id,
                      .database = p->dbname,
                      .user = p->user};
    gw_log_conn(gw->ctx, CFG_LOG_INFO, &who, "server closing in state %s (%s): %s",
                server_state_names[s->state], pg_end_name(why), detail);
    pg_client *c = s->client;
    if (c) {
        /* Part of a message from s already went to c: nothing can finish it, so c is closed
         * with no error of Sluice's own (it would land inside that message). */
        bool mid = pg_client_out_mid_message(c);
        s->client = NULL;
        c->server = NULL;
        pg_client_fatal(c, PG_END_SERVER_GONE, mid ? NULL : "08006", "server connection lost: %s",
                        detail);
    }
    pg_server_set_state(s, PG_SV_CLOSING);
    gw_list_remove(&s->conn.ready);
    pg_conn_stop_reading(&s->conn);
    pg_reqq_free(&s->q, gw);
    pg_server_stmts_clear(&s->stmts, &gw->stmts);
    pg_relay_set_unnamed(&s->unnamed, NULL, gw);
    pg_params_free(&s->params);
    pg_login_free(s);
    pg_shell_server_close(s);
    pg_pool_maybe_connect(p);
}

/* Records a failed connection attempt on the pool: the server's SQLSTATE and words when it
 * refused the login (a tool that checks for 3D000 and creates the database still works), else
 * libpq's or Sluice's own text with no SQLSTATE (clients get 08006). */
static void record_failure(pg_pool *p, const char *msg)
{
    char buf[256];
    if (!pg_pqerr_parse(msg, p->last_sqlstate, buf, sizeof buf)) {
        p->last_sqlstate[0] = 0;
        snprintf(buf, sizeof buf, "%s", msg);
    }
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    snprintf(p->last_error, sizeof p->last_error, "%s", buf);
    GW_STAT_ADD(p->stats.server_connect_failures, 1);
    p->last_fail = gw_now(p->gw->ctx);
    if (p->last_fail == 0)
        p->last_fail = 1;
}

void pg_server_connect_failed(pg_server *s, const char *msg)
{
    pg_pool *p = s->pool;
    record_failure(p, msg);
    /* msg may be libpq's PQerrorMessage, which the close may free: the copy is used. */
    pg_server_close(s, PG_END_CONNECT_FAILED, p->last_error);
    pg_pool_connect_failed(p, p->last_error);
}

void pg_server_start_failed(pg_pool *pool, const char *msg)
{
    record_failure(pool, msg);
    gw_warn(pool->gw->ctx, "could not start a connection to %s/%s: %s", pool->dbname, pool->user,
            pool->last_error);
    pg_pool_connect_failed(pool, pool->last_error);
}

void pg_server_init(pg_server *s, pg_pool *pool)
{
    pg_gateway *gw = pool->gw;
    s->pool = pool;
    s->conn_gen = pool->conn_gen;
    pg_conn_init(&s->conn, gw, PG_CONN_SERVER);
    gw_list_init(&s->idle_node);
    pg_server_stmts_init(&s->stmts);
    s->id = ++gw->next_server_id;
    pool->n_alive++;
    pg_server_set_state(s, PG_SV_CONNECTING);
}

void pg_server_connected(pg_server *s, int backend_pid)
{
    pg_pool *p = s->pool;
    s->tx = 'I';
    s->connect_us = gw_stats_now_us();
    GW_STAT_ADD(p->stats.server_connects, 1);
    s->born = gw_now(pg_ctx(&s->conn));
    pg_server_set_state(s, PG_SV_RESETTING); /* transient until the pool places it */
    p->last_fail = 0;
    gw_debug(pg_ctx(&s->conn), "server %u connected to %s/%s (pid %d)", s->id, p->dbname, p->user,
             backend_pid);
    if (!p->have_defaults) {
        if (pg_params_copy(&p->defaults, &s->params) == 0)
            p->have_defaults = true;
        gw_list *it, *tmp;
        gw_list_foreach_safe(it, tmp, &p->login_waiters)
        {
            pg_client_finish_login(gw_container_of(it, pg_client, wait_node));
        }
    }
    pg_pool_server_ready(s);
    pg_conn_mark(&s->conn);
}

void pg_server_closed(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    gw_buf_release(&s->conn.in, gw->bufs);
    gw_buf_release(&s->conn.out, gw->bufs);
    s->pool->n_alive--;
}

void pg_server_process(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    if (s->login) {
        pg_login_process(s);
        return;
    }
    size_t pos = 0, need = 0;
    while (!pg_conn_closing(&s->conn)) {
        const uint8_t *p = s->conn.in.data ? s->conn.in.data + pos : NULL;
        size_t avail = s->conn.in.len - pos;
        if (s->conn.pass_left) {
            pg_conn *to = !s->conn.pass_drop && s->client ? &s->client->conn : NULL;
            long n = pg_conn_pass(&s->conn, to, p, avail);
            if (n < 0) {
                pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
                return;
            }
            if (n == 0)
                break;
            pos += (size_t)n;
            continue;
        }
        if (avail < 5)
            break;
        uint8_t t = p[0];
        uint32_t mlen = pg_get_u32(p + 1);
        if (mlen < 4) {
            pg_server_close(s, PG_END_PROTOCOL, "invalid message length from server");
            return;
        }
        size_t total = (size_t)mlen + 1;
        bool drop, whole;
        const char *bad = pg_relay_server_header(s, t, &drop, &whole);
        if (bad) {
            pg_server_close(s, PG_END_PROTOCOL, bad);
            return;
        }
        if (total > (whole ? PG_SERVER_WHOLE_MAX : PG_SERVER_STREAM_MAX)) {
            pg_server_close(s, PG_END_TOO_BIG, "message from server too large");
            return;
        }
        if (whole) {
            if (avail < total) {
                need = total - avail;
                break;
            }
            pos += total;
            if (pg_relay_server_msg(s, t, p, total) != 0)
                return;
            continue;
        }
        size_t n = avail < total ? avail : total;
        if (!drop && s->client) {
            if (gw_buf_append(&s->client->conn.out, gw->bufs, p, n) != 0) {
                pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
                return;
            }
            pg_conn_mark(&s->client->conn);
        }
        pos += n;
        if (n < total) {
            s->conn.pass_left = (uint32_t)(total - n);
            s->conn.pass_drop = drop;
        }
    }
    if (pg_conn_closing(&s->conn))
        return;
    pg_client *c = s->client;
    if (c && !s->conn.pass_left) {
        /* At a message boundary towards the client: notifications held back may go, and a
         * client that stopped for its queue bound may go on. */
        pg_notify_flush(c);
        if (c->conn.in_blocked)
            pg_conn_mark_process(&c->conn);
    }
    gw_buf_consume(&s->conn.in, gw->bufs, pos);
    if (need && gw_buf_reserve(&s->conn.in, gw->bufs, need) != 0)
        pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
}
