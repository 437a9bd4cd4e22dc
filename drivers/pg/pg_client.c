/*
 * pg_client: a client session. Reads the startup packet, has the client authenticated (pg_auth.c),
 * then frames its messages and relays them to a server taken from the pool when it has something
 * to send.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_wire.h"

static const char *const client_state_names[] = {"new",  "startup", "auth",   "login_wait",
                                                 "idle", "waiting", "active", "closing"};

#define CL(st) (1u << PG_CL_##st)
/* The states each state may be entered from. */
static const unsigned client_from[] = {
    [PG_CL_NEW] = 0,
    [PG_CL_STARTUP] = CL(NEW),
    [PG_CL_AUTH] = CL(STARTUP),
    [PG_CL_LOGIN_WAIT] = CL(STARTUP) | CL(AUTH),
    [PG_CL_IDLE] = CL(STARTUP) | CL(AUTH) | CL(LOGIN_WAIT) | CL(WAITING) | CL(ACTIVE),
    [PG_CL_WAITING] = CL(IDLE),
    [PG_CL_ACTIVE] = CL(IDLE) | CL(WAITING),
    [PG_CL_CLOSING] = CL(STARTUP) | CL(AUTH) | CL(LOGIN_WAIT) | CL(IDLE) | CL(WAITING) | CL(ACTIVE),
};
#undef CL

/* The pool list a client in state st sits on, or NULL. */
static gw_list *client_list(pg_client *c, pg_client_state st)
{
    if (st == PG_CL_LOGIN_WAIT)
        return &c->pool->login_waiters;
    if (st == PG_CL_WAITING)
        return &c->pool->waiters;
    return NULL;
}

void pg_client_set_state(pg_client *c, pg_client_state st)
{
    pg_client_state old = c->state;
    if (!(client_from[st] & (1u << old))) {
        gw_error(pg_ctx(&c->conn), "client %u: impossible state change %s -> %s", c->pid,
                 client_state_names[old], client_state_names[st]);
        gw__assert_fail("legal client state change", __FILE__, __LINE__);
    }
    gw_assert(st != PG_CL_CLOSING || c->conn.end != PG_END_NONE);
    if (old == PG_CL_WAITING || st == PG_CL_WAITING)
        pg_count_wait(c, old, st);
    if (c->pool) {
        /* LOGIN_WAIT to ACTIVE: the states a client of the pool is counted in. */
        if (old >= PG_CL_LOGIN_WAIT && old <= PG_CL_ACTIVE)
            c->pool->n_cl[old]--;
        if (st >= PG_CL_LOGIN_WAIT && st <= PG_CL_ACTIVE)
            c->pool->n_cl[st]++;
    }
    if (client_list(c, old))
        gw_list_remove(&c->wait_node);
    gw_list *l = client_list(c, st);
    if (l)
        gw_list_push_tail(l, &c->wait_node); /* FIFO: the longest waiter is served first */
    if (old == PG_CL_NEW)
        gw_list_push_tail(&c->conn.gw->clients, &c->node);
    if (st == PG_CL_CLOSING)
        gw_list_remove(&c->node);
    c->state = st;
    c->since = gw_now(pg_ctx(&c->conn));
}

int pg_client_start(pg_client *c, pg_gateway *gw)
{
    pg_conn_init(&c->conn, gw, PG_CONN_CLIENT);
    gw_list_init(&c->wait_node);
    pg_client_stmts_init(&c->stmts);
    pg_client_set_state(c, PG_CL_STARTUP);
    c->connect_us = gw_stats_now_us();
    c->login = calloc(1, sizeof *c->login);
    if (!c->login)
        return -ENOMEM;
    c->login->accepted = c->since;
    /* Over the limit the client is still read, so it gets a proper error after its startup
     * packet instead of a silent close. */
    if (gw->n_clients >= (uint32_t)gw->ctx->cfg->max_client_conn) {
        c->rejected = true;
    } else {
        c->counted = true;
        gw->n_clients++;
    }
    return 0;
}

/* The login state goes once the client is logged in, or with the client. */
static void login_free(pg_client *c)
{
    if (!c->login)
        return;
    pg_auth_cred_wipe(c);
    free(c->login);
    c->login = NULL;
}

void pg_client_closed(pg_client *c)
{
    pg_gateway *gw = c->conn.gw;
    if (c->pool && --c->pool->n_clients == 0)
        c->pool->unused_since = gw_now(gw->ctx);
    pg_params_free(&c->params);
    pg_params_free(&c->startup);
    pg_relay_set_unnamed(&c->unnamed, NULL, gw);
    pg_client_stmts_clear(&c->stmts, &gw->stmts);
    gw_buf_release(&c->conn.in, gw->bufs);
    gw_buf_release(&c->conn.out, gw->bufs);
    pg_notify_client_free(c);
    login_free(c);
    pg_admin_client_free(c);
}

/* Detaches c from pools, servers and indexes, then closes it; with flush, pending output (a last
 * error) is written first. */
static void client_close(pg_client *c, pg_end why, const char *detail, bool flush)
{
    if (c->conn.end != PG_END_NONE)
        return; /* closed already, or its close is under way further up the stack */
    pg_gateway *gw = c->conn.gw;
    c->conn.end = why;
    pg_client_log_end(c, why, detail);
    if (gw->ctx->cfg->log_level >= CFG_LOG_DEBUG)
        pg_client_log(c, CFG_LOG_DEBUG, "closed in state %s", client_state_names[c->state]);
    pg_notify_client_gone(c);
    pg_auth_client_gone(c);
    pg_admin_client_gone(c);
    if (c->server)
        pg_pool_release(c->server, true);
    pg_unpin(c);
    if (c->keyed) {
        gw_htable_remove(&gw->keys, &c->key_node);
        c->keyed = false;
    }
    if (c->counted) {
        gw->n_clients--;
        c->counted = false;
    }
    gw_list_remove(&c->conn.ready);
    pg_conn_stop_reading(&c->conn);
    pg_client_set_state(c, PG_CL_CLOSING);
    pg_shell_client_close(c, flush);
}

void pg_client_close(pg_client *c, pg_end why, const char *detail)
{
    client_close(c, why, detail, false);
}

void pg_client_fatal(pg_client *c, pg_end why, const char *sqlstate, const char *fmt, ...)
{
    if (c->conn.end != PG_END_NONE)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sqlstate && !pg_client_out_mid_message(c))
        pg_build_error(&c->conn.out, c->conn.gw->bufs, "FATAL", sqlstate, msg);
    if (sqlstate)
        pg_client_log_error(c, sqlstate, msg);
    client_close(c, why, msg, true);
}

void pg_client_finish_login(pg_client *c)
{
    pg_gateway *gw = c->conn.gw;
    pg_pool *p = c->pool;
    gw_buf *out = &c->conn.out;
    int rc = pg_build_auth_ok(out, gw->bufs);
    if (!p)
        rc = rc ? rc : pg_admin_params(out, gw->bufs);
    /* The server's values, except where the client asked for its own. */
    for (const char *k = p ? pg_params_first(&p->defaults) : NULL; k && rc == 0;
         k = pg_params_next(&p->defaults, k)) {
        const char *v = pg_params_get(&c->params, k);
        rc = pg_build_param_status(out, gw->bufs, k, v ? v : pg_params_value(k));
    }
    do {
        c->pid = ++gw->next_pid;
    } while (c->pid == 0);
    c->key = pg_gateway_random(gw);
    rc = rc ? rc : pg_build_key_data(out, gw->bufs, c->pid, c->key);
    rc = rc ? rc : pg_build_ready(out, gw->bufs, 'I');
    if (rc == 0 && gw_htable_insert(&gw->keys, &c->key_node, c->pid) == 0)
        c->keyed = true;
    if (rc != 0) {
        pg_client_close(c, PG_END_NO_MEMORY, "out of memory during login");
        return;
    }
    if (pg_params_copy(&c->startup, &c->params) != 0) {
        pg_client_close(c, PG_END_NO_MEMORY, "out of memory during login");
        return;
    }
    pg_client_set_state(c, PG_CL_IDLE);
    pg_client_log_login(c);
    login_free(c);
    pg_conn_mark_process(&c->conn);
}

void pg_client_cancel_wait(pg_client *c)
{
    pg_gateway *gw = c->conn.gw;
    pg_client_set_state(c, PG_CL_IDLE);
    if (pg_build_error(&c->conn.out, gw->bufs, "ERROR", "57014",
                       "canceling statement due to user request") != 0) {
        pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
        return;
    }
    /* Like the server after an error: what follows, up to the Sync that ends the request
     * (or the Query itself), is dropped. */
    c->discard = true;
    gw_debug(gw->ctx, "client %u: cancel ended the wait for a server", c->pid);
    pg_conn_mark_process(&c->conn);
}

/* Splits the startup "options" value into -c name=value / --name=value settings. Backslash
 * escapes a space, as libpq documents. Unknown switches are refused like the server would. */
static int parse_options(pg_client *c, const char *opts)
{
    char tok[512], *prev = NULL;
    const char *p = opts;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        size_t n = 0;
        while (*p && !isspace((unsigned char)*p)) {
            if (*p == '\\' && p[1])
                p++;
            if (n + 1 < sizeof tok)
                tok[n++] = *p;
            p++;
        }
        tok[n] = 0;
        char *setting = NULL;
        if (prev) {
            setting = tok;
            prev = NULL;
        } else if (strcmp(tok, "-c") == 0) {
            prev = tok;
            continue;
        } else if (strncmp(tok, "-c", 2) == 0) {
            setting = tok + 2;
        } else if (strncmp(tok, "--", 2) == 0) {
            setting = tok + 2;
        } else {
            return -1;
        }
        char *eq = strchr(setting, '=');
        if (!eq)
            return -1;
        *eq = 0;
        for (char *d = setting; *d; d++)
            if (*d == '-')
                *d = '_';
        if (!pg_param_name_ok(setting) || pg_params_set(&c->params, setting, eq + 1) != 0)
            return -1;
    }
    return prev ? -1 : 0;
}

/* Handles one startup-phase packet (body without the length word); after: bytes the client sent
 * behind it. */
static void handle_startup(pg_client *c, const uint8_t *body, size_t len, size_t after)
{
    pg_gateway *gw = c->conn.gw;
    gw_ctx *ctx = gw->ctx;
    pg_startup su;
    const char *why;
    if (pg_parse_startup(body, len, &su, &why) != 0) {
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "%s", why);
        return;
    }
    if (su.code == PG_CODE_SSL && after > 0) {
        /* Bytes sent behind an SSLRequest, before any answer, would be taken as if they had
         * come through the TLS session once it is up (CVE-2021-23214): refused, in clear. */
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "received unencrypted data after SSL request");
        return;
    }
    if (su.code == PG_CODE_SSL && !pg_shell_client_tls(c)) {
        int rc = pg_shell_client_tls_start(c);
        if (rc == 0)
            return; /* 'S' written; the handshake follows */
        if (rc < 0) {
            pg_client_close(c, PG_END_NO_MEMORY, "could not start TLS");
            return;
        }
    }
    if (su.code == PG_CODE_SSL || su.code == PG_CODE_GSSENC) {
        /* No encryption (or already encrypted: a second SSLRequest): plain text follows. */
        if (gw_buf_append(&c->conn.out, gw->bufs, "N", 1) != 0)
            pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
        pg_conn_mark(&c->conn);
        return;
    }
    if (su.code == PG_CODE_CANCEL) {
        pg_cancel_request(gw, su.cancel_pid, su.cancel_key);
        pg_client_close(c, PG_END_CANCEL_REQUEST, "cancel request handled");
        return;
    }
    if (((su.code & 0xffff) > 0 || su.n_pq_opts > 0) &&
        pg_build_negotiate(&c->conn.out, gw->bufs, 0, su.pq_opts, su.n_pq_opts) != 0) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return;
    }
    pg_client_login_state *l = c->login;
    snprintf(l->user, sizeof l->user, "%s", su.user ? su.user : "");
    snprintf(l->db, sizeof l->db, "%s", su.database && *su.database ? su.database : l->user);
    if (ctx->cfg->client_tls_sslmode >= CFG_TLS_REQUIRE && !pg_shell_client_tls(c)) {
        /* Refused before any credential is asked. A Unix-socket client does not cross the
         * network (and libpq never asks for TLS there), as with PgBouncer. */
        struct sockaddr_storage ss;
        if (pg_shell_client_peer(c, &ss) != 0) {
            pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                            "SSL required: client_tls_sslmode is %s",
                            cfg_tls_mode_name(ctx->cfg->client_tls_sslmode));
            return;
        }
    }
    if (c->rejected) {
        pg_client_fatal(c, PG_END_LIMIT, "53300",
                        "no more connections allowed (max_client_conn is %d)",
                        ctx->cfg->max_client_conn);
        return;
    }
    if (su.replication) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "0A000",
                        "replication connections are not supported by Sluice");
        return;
    }
    if (!su.user || !*su.user) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                        "no PostgreSQL user name specified in startup packet");
        return;
    }
    const char *dbname = su.database && *su.database ? su.database : su.user;
    /* As PostgreSQL: a client that must prove who it is learns whether the database exists
     * only once it has (pg_client_login checks then). */
    if (ctx->cfg->auth_type == CFG_AUTH_TRUST && !cfg_find_database(ctx->cfg, dbname) &&
        !pg_admin_dbname(dbname)) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "3D000", "database \"%s\" does not exist", dbname);
        return;
    }
    pg_reader r = pg_reader_make(su.params, su.params_len);
    while (r.pos < r.len) {
        const char *k = pg_read_str(&r, NULL);
        const char *v = pg_read_str(&r, NULL);
        if (r.err)
            break;
        if (strcmp(k, "user") == 0 || strcmp(k, "database") == 0 || strcmp(k, "options") == 0 ||
            strcmp(k, "replication") == 0 || strncmp(k, "_pq_.", 5) == 0)
            continue;
        if (!pg_param_name_ok(k)) {
            pg_client_fatal(c, PG_END_LOGIN_REFUSED, "42704",
                            "unrecognized configuration parameter \"%s\"", k);
            return;
        }
        if (pg_params_set(&c->params, k, v) != 0) {
            pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
            return;
        }
    }
    if (su.options && parse_options(c, su.options) != 0) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "42601",
                        "invalid command-line option in startup packet: \"%s\"", su.options);
        return;
    }
    /* The pool is made only once the client is who it says: names an unauthenticated
     * client makes up must not cost memory beyond its own connection. */
    pg_auth_begin(c, dbname, su.user);
}

void pg_client_login(pg_client *c, const char *dbname, const char *user)
{
    pg_gateway *gw = c->conn.gw;
    /* The console's name wins over a [databases] entry of the same name, as in PgBouncer. */
    if (pg_admin_dbname(dbname)) {
        pg_admin_login(c, user);
        return;
    }
    if (gw_admin_disabled(gw->ctx, dbname)) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "57P03",
                        "database \"%s\" does not allow connections now (DISABLE)", dbname);
        return;
    }
    /* Looked up again: a reload during a long exchange may have changed [databases]. */
    const cfg_database *db = cfg_find_database(gw->ctx->cfg, dbname);
    if (!db) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "3D000", "database \"%s\" does not exist", dbname);
        return;
    }
    pg_pool *p = pg_pool_get(gw, db, dbname, user);
    if (!p) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return;
    }
    c->pool = p;
    GW_STAT_ADD(p->stats.client_logins, 1);
    p->n_clients++;
    /* What the client proved itself with may be what the pool logs in to its servers with. */
    if (c->login->cred)
        pg_pool_cred_learn(p, c->login->cred);
    if (p->have_defaults) {
        pg_client_finish_login(c);
        return;
    }
    /* The first client of a pool waits for a server so it can be told the real parameters. */
    pg_client_set_state(c, PG_CL_LOGIN_WAIT);
    pg_pool_maybe_connect(p);
}

/* Whether c must stop taking input for now: its own unsent output, or the requests it has
 * queued on its server, passed their bound. Processing resumes when they drain (pg_io.c and
 * pg_server_process mark it again). */
static bool client_saturated(pg_client *c)
{
    if (c->conn.out.len + c->conn.pending >= PG_HIGH_WATER)
        return true;
    return c->server && c->server->q.count >= PG_MAX_QUEUED;
}

/* Drops a message of total bytes of which avail have arrived: the rest is dropped as it comes
 * (c has no server, so the pass goes nowhere). Returns the bytes taken now. */
static size_t drop_message(pg_client *c, size_t total, size_t avail)
{
    size_t take = total <= avail ? total : avail;
    c->conn.pass_left = (uint32_t)(total - take);
    return take;
}

void pg_client_process(pg_client *c)
{
    pg_gateway *gw = c->conn.gw;
    gw_ctx *ctx = gw->ctx;
    size_t pos = 0, need = 0;
    c->conn.in_blocked = false;
    c->conn.want_in = 0;
    while (!pg_conn_closing(&c->conn)) {
        const uint8_t *p = c->conn.in.data ? c->conn.in.data + pos : NULL;
        size_t avail = c->conn.in.len - pos;
        if (c->state == PG_CL_STARTUP) {
            if (avail < 4)
                break;
            uint32_t len = pg_get_u32(p);
            if (len < 8 || len > PG_STARTUP_MAX_LEN) {
                pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "invalid length of startup packet");
                return;
            }
            if (avail < len) {
                need = len - avail;
                break;
            }
            pos += len;
            handle_startup(c, p + 4, len - 4, avail - len);
            continue;
        }
        if (c->state == PG_CL_AUTH) {
            /* Login messages are small and always read whole. */
            if (avail < 5)
                break;
            uint32_t mlen = pg_get_u32(p + 1);
            if (mlen < 4 || mlen - 4 > PG_AUTH_MSG_MAX) {
                pg_client_fatal(c, PG_END_PROTOCOL, "08P01",
                                "invalid length %u of an authentication message", mlen);
                return;
            }
            if (avail < (size_t)mlen + 1) {
                need = (size_t)mlen + 1 - avail;
                break;
            }
            pos += (size_t)mlen + 1;
            pg_auth_input(c, p[0], p + 5, mlen - 4);
            continue;
        }
        if (c->state != PG_CL_IDLE && c->state != PG_CL_ACTIVE)
            break;
        if (c->conn.pass_left) {
            long n = pg_conn_pass(&c->conn, c->server ? &c->server->conn : NULL, p, avail);
            if (n < 0) {
                pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
                return;
            }
            if (n == 0)
                break;
            pos += (size_t)n;
            /* The message is through: a server held only for its end may go back now. */
            if (c->conn.pass_left == 0 && c->server)
                pg_pool_release_if_done(c->server);
            continue;
        }
        if (avail < 5 || c->listen_wait || pg_admin_busy(c))
            break;
        if (client_saturated(c)) {
            c->conn.in_blocked = true;
            break;
        }
        uint8_t t = p[0];
        uint32_t mlen = pg_get_u32(p + 1);
        if (!pg_frontend_type_valid(t)) {
            pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "invalid frontend message type %d", t);
            return;
        }
        if (mlen < 4) {
            pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "invalid message length %u", mlen);
            return;
        }
        if (mlen - 4 > ctx->cfg->max_packet_size) {
            pg_client_fatal(c, PG_END_PROTOCOL, "08P01",
                            "message of %u bytes exceeds max_packet_size (%u)", mlen - 4,
                            ctx->cfg->max_packet_size);
            return;
        }
        size_t total = (size_t)mlen + 1;
        if (c->discard && c->state == PG_CL_IDLE) {
            /* Dropped after a cancel: a Query, FunctionCall or Sync ends the request. */
            if (t == 'X') {
                pg_client_close(c, PG_END_CLIENT_LEFT, "client terminated the session");
                return;
            }
            if (t == 'Q' || t == 'F' || t == 'S') {
                c->discard = false;
                if (pg_build_ready(&c->conn.out, gw->bufs, 'I') != 0) {
                    pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
                    return;
                }
                pg_conn_mark(&c->conn);
            }
            pos += drop_message(c, total, avail);
            continue;
        }
        if (c->state == PG_CL_IDLE && (t == 'd' || t == 'c' || t == 'f')) {
            /* COPY messages with no COPY running (the tail of a COPY the server already
             * failed): the server would ignore them, so they need no server at all. */
            pos += drop_message(c, total, avail);
            continue;
        }
        /* Messages Sluice must read are held whole, up to max_buffered_message; others
         * (COPY data, large Bind values in session mode) stream through above
         * PG_STREAM_OVER, so memory stays bounded whatever the client sends. A server is
         * taken only once a whole message, or the start of a streamed one, is here. */
        bool must_read = pg_relay_needs_whole(c, t);
        if (must_read && total > PG_STREAM_OVER && total > ctx->cfg->max_buffered_message) {
            pg_client_fatal(c, PG_END_TOO_BIG, "54000",
                            "message of %zu bytes exceeds max_buffered_message (%u bytes)",
                            total - 5, ctx->cfg->max_buffered_message);
            return;
        }
        bool whole = must_read || total <= PG_STREAM_OVER || total <= avail;
        if (whole && avail < total) {
            need = total - avail;
            c->conn.want_in = (uint32_t)total; /* bounded: see must_read above */
            break;
        }
        if (t == 'X') {
            pg_client_close(c, PG_END_CLIENT_LEFT, "client terminated the session");
            return;
        }
        if (c->admin) {
            /* A console session: Sluice answers (a message too long for a console command is
             * refused before its body is looked at, whole or not). */
            if (pg_admin_msg(c, t, p, total) != 0)
                return;
            pos += total;
            continue;
        }
        int plain = -1; /* a Query's text is plain: known once pg_relay_idle_local looked */
        if (c->state == PG_CL_IDLE) {
            /* Sync and Flush with no transaction open need no server. */
            if ((t == 'S' || t == 'H') && mlen == 4) {
                if (t == 'S' && pg_build_ready(&c->conn.out, gw->bufs, 'I') != 0) {
                    pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
                    return;
                }
                pg_conn_mark(&c->conn);
                pos += total;
                continue;
            }
            if (t == 'Q' && p[total - 1] != 0) {
                pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "invalid string in Query message");
                return;
            }
            int local = pg_relay_idle_local(c, t, p, total, &plain);
            if (local < 0)
                return;
            if (local > 0) {
                pos += total;
                continue;
            }
            if (!pg_pool_acquire(c))
                break;
        }
        if (whole) {
            int rc = pg_relay_client_msg(c, t, p, total, plain);
            if (rc < 0)
                return;
            if (rc > 0)
                break; /* stalled: processed again after the server's next ReadyForQuery */
            pos += total;
        } else {
            /* Large message: forward what has arrived and stream the rest as it comes. */
            pg_server *s = c->server;
            pg_copy_queue queue;
            const char *copy_why = pg_copy_client_msg(s, t, &queue);
            if (copy_why) {
                pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "%s", copy_why);
                return;
            }
            bool queued =
                queue == PG_COPY_MARKER || (queue == PG_COPY_USUAL && strchr("FPBDECS", t));
            pg_req_action action = queue == PG_COPY_MARKER ? PG_REQ_SILENT : PG_REQ_FORWARD;
            if (queued && pg_reqq_push(s, t, action, NULL, false) != 0) {
                pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
                return;
            }
            if (gw_buf_append(&s->conn.out, gw->bufs, p, avail) != 0) {
                pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
                return;
            }
            pg_conn_mark(&s->conn);
            c->conn.pass_left = (uint32_t)(total - avail);
            pos += avail;
        }
    }
    if (pg_conn_closing(&c->conn))
        return;
    if (c->pool)
        GW_STAT_ADD(c->pool->stats.bytes_recv, pos);
    gw_buf_consume(&c->conn.in, gw->bufs, pos);
    if (need && gw_buf_reserve(&c->conn.in, gw->bufs, need) != 0)
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
}

/* A cancel names Sluice's key; it becomes a cancel of the server linked to that client at this
 * moment, and of no other. */
void pg_cancel_request(pg_gateway *gw, uint32_t pid, uint32_t key)
{
    for (gw_hnode *n = gw_htable_chain(&gw->keys, pid); n; n = n->next) {
        pg_client *c = gw_container_of(n, pg_client, key_node);
        if (n->hash != pid || c->pid != pid)
            continue;
        /* A wrong key is ignored silently, as the server does. */
        if (c->key != key)
            return;
        if (c->server && c->state == PG_CL_ACTIVE)
            pg_shell_cancel(c->server);
        else if (c->state == PG_CL_WAITING)
            pg_client_cancel_wait(c); /* its query has not started: it ends here */
        return;
    }
}
