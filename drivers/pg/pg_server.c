/*
 * pg_server: one server connection. libpq establishes it (PQconnectStartParams, then
 * PQconnectPoll driven by uv_poll readiness on PQsocket, which may change between host
 * attempts); afterwards the loop reads and writes the socket itself through a duplicate
 * descriptor, and libpq only closes it (PQfinish) at the end.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_pqerr.h"
#include "drivers/pg/pg_wire.h"

/* Parameters PostgreSQL reports (GUC_REPORT); libpq keeps them, but offers no way to list them. */
static const char *const reported_params[] = {
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "scram_iterations",
    "search_path",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
    NULL,
};

static const char *const server_state_names[] = {"new",    "connecting", "idle",
                                                 "active", "resetting",  "closing"};

#define SV(st) (1u << PG_SV_##st)
/* The states each state may be entered from. ACTIVE follows ACTIVE when a server goes straight
 * from one client to the next waiting one. */
static const unsigned server_from[] = {
    [PG_SV_NEW] = 0,
    [PG_SV_CONNECTING] = SV(NEW),
    [PG_SV_IDLE] = SV(ACTIVE) | SV(RESETTING),
    [PG_SV_ACTIVE] = SV(IDLE) | SV(ACTIVE) | SV(RESETTING),
    [PG_SV_RESETTING] = SV(CONNECTING) | SV(ACTIVE) | SV(RESETTING),
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

static void server_free(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    if (s->pq)
        PQfinish(s->pq); /* sends Terminate; the socket is non-blocking by now */
    gw_buf_release(&s->conn.in, &gw->bufs);
    gw_buf_release(&s->conn.out, &gw->bufs);
    free(s);
    gw->live--;
    pg_gateway_maybe_free(gw);
}

/* Each open handle holds the server: poll (connect phase) and stream (afterwards). */
static unsigned server_handles(const pg_server *s)
{
    return (s->poll ? 1u : 0u) + (s->conn.stream_open ? 1u : 0u);
}

static void on_stream_closed(uv_handle_t *h)
{
    pg_server *s = gw_container_of(h, pg_server, conn.h.handle);
    s->conn.stream_open = false;
    if (server_handles(s) == 0)
        server_free(s);
}

static void on_poll_closed(uv_handle_t *h)
{
    pg_server *s = h->data;
    free(h);
    /* The poll handle also closes when the server moves on to its stream: only the last handle
     * of a closing server frees it. */
    if (s) {
        s->poll = NULL;
        if (s->state == PG_SV_CLOSING && server_handles(s) == 0)
            server_free(s);
    }
}

static void close_poll(pg_server *s, bool keep_server)
{
    if (!s->poll)
        return;
    uv_poll_t *p = s->poll;
    if (keep_server) {
        p->data = NULL;
        s->poll = NULL;
    }
    uv_close((uv_handle_t *)p, on_poll_closed);
}

void pg_server_close(pg_server *s, pg_end why, const char *detail)
{
    if (s->conn.end != PG_END_NONE)
        return; /* closed already, or its close is under way further up the stack */
    pg_gateway *gw = s->conn.gw;
    pg_pool *p = s->pool;
    s->conn.end = why;
    gw_info(gw->ctx, "server %u (%s/%s) closing in state %s (%s): %s", s->id, p->dbname, p->user,
            server_state_names[s->state], pg_end_name(why), detail);
    pg_client *c = s->client;
    if (c) {
        s->client = NULL;
        c->server = NULL;
        pg_client_fatal(c, PG_END_SERVER_GONE, "08006", "server connection lost: %s", detail);
    }
    pg_server_set_state(s, PG_SV_CLOSING);
    gw_list_remove(&s->conn.ready);
    pg_conn_stop_reading(&s->conn);
    pg_reqq_free(&s->q, gw);
    pg_server_stmts_clear(&s->stmts, &gw->stmts);
    pg_relay_set_unnamed(&s->unnamed, NULL, gw);
    pg_params_free(&s->params);
    /* A server exists only with an open handle (pg_server_connect), so a close callback always
     * comes to free it. */
    gw_assert(server_handles(s) > 0);
    close_poll(s, false);
    if (s->conn.stream_open)
        uv_close(&s->conn.h.handle, on_stream_closed);
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
    p->last_fail = gw_now(p->gw->ctx);
    if (p->last_fail == 0)
        p->last_fail = 1;
}

static void connect_failed(pg_server *s, const char *msg)
{
    pg_pool *p = s->pool;
    record_failure(p, msg);
    /* msg may be libpq's PQerrorMessage, which the close may free: the copy is used. */
    pg_server_close(s, PG_END_CONNECT_FAILED, p->last_error);
    pg_pool_connect_failed(p, p->last_error);
}

static void on_poll(uv_poll_t *h, int status, int events);

static int watch(pg_server *s, PostgresPollingStatusType want)
{
    int fd = PQsocket(s->pq);
    if (fd < 0)
        return -EBADF;
    if (!s->poll || s->poll_fd != fd) {
        /* libpq moved to another socket (next host or address). The new handle is opened
         * before the old one closes, so the server never lacks a handle to free it. */
        uv_poll_t *p = malloc(sizeof *p);
        if (!p)
            return -ENOMEM;
        int rc = uv_poll_init(pg_ctx(&s->conn)->loop, p, fd);
        if (rc != 0) {
            free(p); /* a failed init leaves nothing registered with the loop */
            return rc;
        }
        p->data = s;
        close_poll(s, true);
        s->poll = p;
        s->poll_fd = fd;
    }
    return uv_poll_start(s->poll, want == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE,
                         on_poll);
}

/* The handshake is done: move the socket to a libuv stream and offer the server to the pool. */
static void connected(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    gw_ctx *ctx = gw->ctx;
    pg_pool *p = s->pool;
    if (PQsslInUse(s->pq)) {
        connect_failed(s, "the server connection uses TLS, which Sluice does not relay yet; "
                          "add sslmode=disable to the database line");
        return;
    }
    PQsetnonblocking(s->pq, 1);
    for (int i = 0; reported_params[i]; i++) {
        const char *v = PQparameterStatus(s->pq, reported_params[i]);
        if (v && pg_params_set(&s->params, reported_params[i], v) != 0) {
            connect_failed(s, "out of memory");
            return;
        }
    }
    /* The poll handle stays open until the stream is: on any failure below, one of the two is
     * open, and its close callback frees the server. */
    int fd = dup(PQsocket(s->pq));
    if (fd < 0) {
        connect_failed(s, strerror(errno));
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    bool is_unix = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX;
    int rc = is_unix ? uv_pipe_init(ctx->loop, &s->conn.h.pipe, 0)
                     : uv_tcp_init(ctx->loop, &s->conn.h.tcp);
    if (rc != 0) {
        close(fd);
        connect_failed(s, uv_strerror(rc));
        return;
    }
    s->conn.stream_open = true; /* initialised: closed through on_stream_closed from now on */
    rc = is_unix ? uv_pipe_open(&s->conn.h.pipe, fd) : uv_tcp_open(&s->conn.h.tcp, fd);
    if (rc != 0) {
        close(fd);
        connect_failed(s, uv_strerror(rc));
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&s->conn.h.tcp, 1);
    close_poll(s, true);
    s->tx = 'I';
    pg_server_set_state(s, PG_SV_RESETTING); /* transient until the pool places it */
    p->last_fail = 0;
    gw_debug(ctx, "server %u connected to %s/%s (pid %d)", s->id, p->dbname, p->user,
             PQbackendPID(s->pq));
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

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    pg_server *s = h->data;
    if (!s || s->state != PG_SV_CONNECTING)
        return;
    PostgresPollingStatusType st = PQconnectPoll(s->pq);
    switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING: {
        int rc = watch(s, st);
        if (rc != 0)
            connect_failed(s, uv_strerror(rc));
        break;
    }
    case PGRES_POLLING_OK:
        connected(s);
        break;
    default:
        connect_failed(s, PQerrorMessage(s->pq));
        break;
    }
}

/* An attempt that failed before the server had a handle: no server object is left behind. */
static void start_failed(pg_pool *pool, PGconn *pq, pg_server *s, const char *msg)
{
    record_failure(pool, msg);
    free(s);
    if (pq)
        PQfinish(pq); /* after record_failure: msg may be its PQerrorMessage */
    gw_warn(pool->gw->ctx, "could not start a connection to %s/%s: %s", pool->dbname, pool->user,
            pool->last_error);
    pg_pool_connect_failed(pool, pool->last_error);
}

pg_server *pg_server_connect(pg_pool *pool)
{
    pg_gateway *gw = pool->gw;
    PGconn *pq =
        PQconnectStartParams((const char *const *)pool->kw, (const char *const *)pool->val, 0);
    if (!pq || PQstatus(pq) == CONNECTION_BAD) {
        start_failed(pool, pq, NULL, pq ? PQerrorMessage(pq) : "out of memory");
        return NULL;
    }
    /* Verbose error texts carry the SQLSTATE of a refused login (pg_pqerr.h). */
    PQsetErrorVerbosity(pq, PQERRORS_VERBOSE);
    pg_server *s = calloc(1, sizeof *s);
    if (!s) {
        start_failed(pool, pq, NULL, "out of memory");
        return NULL;
    }
    s->pq = pq;
    s->pool = pool;
    pg_conn_init(&s->conn, gw, PG_CONN_SERVER);
    int rc = watch(s, PGRES_POLLING_WRITING);
    if (rc != 0) {
        /* A poll handle that opened but would not start closes on its own: not linked to the
         * server, it frees only itself. */
        close_poll(s, true);
        start_failed(pool, pq, s, uv_strerror(rc));
        return NULL;
    }
    /* From here on the poll handle's close callback frees the server. */
    gw_list_init(&s->idle_node);
    pg_server_stmts_init(&s->stmts);
    s->id = ++gw->next_server_id;
    gw->live++;
    pg_server_set_state(s, PG_SV_CONNECTING);
    return s;
}

void pg_server_process(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
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
        if (pg_relay_server_header(s, t, &drop, &whole) != 0) {
            pg_server_close(s, PG_END_PROTOCOL, "unexpected message from server");
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
            if (gw_buf_append(&s->client->conn.out, &gw->bufs, p, n) != 0) {
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
        pg_listen_flush(c);
        if (c->conn.in_blocked)
            pg_conn_mark_process(&c->conn);
    }
    gw_buf_consume(&s->conn.in, &gw->bufs, pos);
    if (need && gw_buf_reserve(&s->conn.in, &gw->bufs, need) != 0)
        pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
}
