/*
 * pg_connect: the shell's side of a server connection. libpq establishes it
 * (PQconnectStartParams, then PQconnectPoll driven by uv_poll readiness on PQsocket, which may
 * change between host attempts); afterwards the loop reads and writes the socket itself through
 * a duplicate descriptor, and libpq only closes it (PQfinish) at the end.
 *
 * Calls up into the core only through pg_server_init, pg_server_connected,
 * pg_server_connect_failed, pg_server_start_failed and pg_server_closed (pg_int.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

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

static void server_free(pg_io_server *io)
{
    pg_gateway *gw = io->s.conn.gw;
    /* The transport goes first: an adopted TLS session is then shut for libpq as well, so
     * PQfinish only drops its reference (its Terminate went through the session already). */
    gw_transport_release(&io->t);
    if (io->pq)
        PQfinish(io->pq); /* plain: sends Terminate; the socket is non-blocking by now */
    pg_server_closed(&io->s);
    free(io);
    gw->live--;
    pg_gateway_maybe_free(gw);
}

/* Each open handle holds the server: poll (connect phase) and stream (afterwards); so does a
 * host name lookup in flight (pg_dial.c). */
static unsigned server_handles(const pg_io_server *io)
{
    return (io->poll ? 1u : 0u) + (io->s.conn.stream_open ? 1u : 0u) + (io->gai_pending ? 1u : 0u);
}

void pg_io_server_maybe_free(pg_io_server *io)
{
    if (io->s.state == PG_SV_CLOSING && server_handles(io) == 0)
        server_free(io);
}

static void on_stream_closed(uv_handle_t *h)
{
    pg_io_server *io = gw_container_of(h, pg_io_server, t.h.handle);
    io->s.conn.stream_open = false;
    pg_io_server_maybe_free(io);
}

static void on_poll_closed(uv_handle_t *h)
{
    pg_io_server *io = h->data;
    free(h);
    /* The poll handle also closes when the server moves on to its stream: only the last handle
     * of a closing server frees it. */
    if (io) {
        io->poll = NULL;
        if (io->s.state == PG_SV_CLOSING && server_handles(io) == 0)
            server_free(io);
    }
}

static void close_poll(pg_io_server *io, bool keep_server)
{
    if (!io->poll)
        return;
    uv_poll_t *p = io->poll;
    if (keep_server) {
        p->data = NULL;
        io->poll = NULL;
    }
    uv_close((uv_handle_t *)p, on_poll_closed);
}

void pg_shell_server_close(pg_server *s)
{
    pg_io_server *io = pg_io_server_of(s);
    /* A server exists only with an open handle (pg_shell_connect), so a close callback always
     * comes to free it. */
    gw_assert(server_handles(io) > 0);
    close_poll(io, false);
    if (s->conn.stream_open && gw_transport_is_tls(&io->t)) {
        /* What PQfinish sends on a plain connection, best effort: the server then ends its
         * session quietly instead of logging an unexpected end of its TLS stream. */
        static const uint8_t terminate[] = {'X', 0, 0, 0, 4};
        gw_buf b = {0};
        if (gw_buf_append(&b, s->conn.gw->bufs, terminate, sizeof terminate) == 0)
            (void)gw_transport_send(&io->t, &b);
        gw_buf_release(&b, s->conn.gw->bufs);
        gw_transport_close_notify(&io->t);
    }
    if (s->conn.stream_open)
        uv_close(&io->t.h.handle, on_stream_closed);
}

static void on_poll(uv_poll_t *h, int status, int events);

static int watch(pg_io_server *io, PostgresPollingStatusType want)
{
    int fd = PQsocket(io->pq);
    if (fd < 0)
        return -EBADF;
    if (!io->poll || io->poll_fd != fd) {
        /* libpq moved to another socket (next host or address). The new handle is opened
         * before the old one closes, so the server never lacks a handle to free it. */
        uv_poll_t *p = malloc(sizeof *p);
        if (!p)
            return -ENOMEM;
        int rc = uv_poll_init(pg_ctx(&io->s.conn)->loop, p, fd);
        if (rc != 0) {
            free(p); /* a failed init leaves nothing registered with the loop */
            return rc;
        }
        p->data = io;
        close_poll(io, true);
        io->poll = p;
        io->poll_fd = fd;
    }
    return uv_poll_start(io->poll, want == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE,
                         on_poll);
}

/* libpq negotiated TLS: the relay carries on in the same session (gw_tls_adopt); libpq never
 * touches it again. 0, or the attempt failed (reported). */
static int adopt_tls(pg_io_server *io)
{
    pg_server *s = &io->s;
    const gw_ctx *ctx = pg_ctx(&s->conn);
    void *ssl = PQsslStruct(io->pq, "OpenSSL");
    int rc = ssl ? gw_transport_adopt_tls(&io->t, ssl) : -EPROTO;
    if (rc != 0) {
        pg_server_connect_failed(s, rc == -ENOMEM ? "out of memory"
                                                  : "the server connection's TLS session cannot "
                                                    "be taken over from libpq");
        return -1;
    }
    const char *list = ctx->cfg->server_tls_ciphers;
    if (gw_tls_cipher_allowed(io->t.tls, list) != 1) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "the server chose TLS cipher %s, which server_tls_ciphers (%s) "
                 "does not allow",
                 gw_tls_cipher(io->t.tls), list);
        pg_server_connect_failed(s, msg);
        return -1;
    }
    gw_debug(ctx, "server connection to %s/%s over %s (%s)", s->pool->dbname, s->pool->user,
             gw_tls_version(io->t.tls), gw_tls_cipher(io->t.tls));
    return 0;
}

/* The handshake is done: move the socket to a libuv stream and offer the server to the pool. */
static void connected(pg_io_server *io)
{
    pg_server *s = &io->s;
    gw_ctx *ctx = pg_ctx(&s->conn);
    PQsetnonblocking(io->pq, 1);
    for (int i = 0; reported_params[i]; i++) {
        const char *v = PQparameterStatus(io->pq, reported_params[i]);
        if (v && pg_params_set(&s->params, reported_params[i], v) != 0) {
            pg_server_connect_failed(s, "out of memory");
            return;
        }
    }
    /* The poll handle stays open until the stream is: on any failure below, one of the two is
     * open, and its close callback frees the server. */
    int fd = dup(PQsocket(io->pq));
    if (fd < 0) {
        pg_server_connect_failed(s, strerror(errno));
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    bool is_unix = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX;
    int rc =
        is_unix ? uv_pipe_init(ctx->loop, &io->t.h.pipe, 0) : uv_tcp_init(ctx->loop, &io->t.h.tcp);
    if (rc != 0) {
        close(fd);
        pg_server_connect_failed(s, uv_strerror(rc));
        return;
    }
    pg_conn_transport_init(&io->t, s->conn.gw, PG_CONN_SERVER);
    s->conn.stream_open = true; /* initialised: closed through on_stream_closed from now on */
    rc = is_unix ? uv_pipe_open(&io->t.h.pipe, fd) : uv_tcp_open(&io->t.h.tcp, fd);
    if (rc != 0) {
        close(fd);
        pg_server_connect_failed(s, uv_strerror(rc));
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&io->t.h.tcp, 1);
    if (PQsslInUse(io->pq) && adopt_tls(io) != 0)
        return;
    close_poll(io, true);
    pg_server_connected(s, PQbackendPID(io->pq));
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    pg_io_server *io = h->data;
    if (!io || io->s.state != PG_SV_CONNECTING)
        return;
    PostgresPollingStatusType st = PQconnectPoll(io->pq);
    switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING: {
        int rc = watch(io, st);
        if (rc != 0)
            pg_server_connect_failed(&io->s, uv_strerror(rc));
        break;
    }
    case PGRES_POLLING_OK:
        connected(io);
        break;
    default:
        pg_server_connect_failed(&io->s, PQerrorMessage(io->pq));
        break;
    }
}

/* An attempt that failed before the server had a handle: no server object is left behind. */
static void start_failed(pg_pool *pool, PGconn *pq, pg_io_server *io, const char *msg)
{
    pg_server_start_failed(pool, msg);
    free(io);
    if (pq)
        PQfinish(pq); /* after the core copied msg: it may be its PQerrorMessage */
}

/* The pool's keywords, plus the password the pool learned when the line gives none. */
static PGconn *start_libpq(pg_pool *pool)
{
    const char *pw = pg_pool_cred_password(pool);
    if (!pw)
        return PQconnectStartParams((const char *const *)pool->kw, (const char *const *)pool->val,
                                    0);
    size_t n = 0;
    while (pool->kw[n])
        n++;
    const char **kw = calloc(n + 2, sizeof *kw), **val = calloc(n + 2, sizeof *val);
    PGconn *pq = NULL;
    if (kw && val) {
        memcpy(kw, pool->kw, n * sizeof *kw);
        memcpy(val, pool->val, n * sizeof *val);
        kw[n] = "password";
        val[n] = pw;
        pq = PQconnectStartParams(kw, val, 0);
    }
    free(kw);
    free(val);
    return pq;
}

pg_server *pg_shell_connect(pg_pool *pool)
{
    pg_gateway *gw = pool->gw;
    if (pg_login_wanted(pool))
        return pg_dial_connect(pool);
    PGconn *pq = start_libpq(pool);
    if (!pq || PQstatus(pq) == CONNECTION_BAD) {
        start_failed(pool, pq, NULL, pq ? PQerrorMessage(pq) : "out of memory");
        return NULL;
    }
    /* Verbose error texts carry the SQLSTATE of a refused login (pg_pqerr.h). */
    PQsetErrorVerbosity(pq, PQERRORS_VERBOSE);
    pg_io_server *io = calloc(1, sizeof *io);
    if (!io) {
        start_failed(pool, pq, NULL, "out of memory");
        return NULL;
    }
    io->pq = pq;
    io->s.conn.gw = gw; /* watch needs the loop; pg_server_init sets the rest */
    int rc = watch(io, PGRES_POLLING_WRITING);
    if (rc != 0) {
        /* A poll handle that opened but would not start closes on its own: not linked to the
         * server, it frees only itself. */
        close_poll(io, true);
        start_failed(pool, pq, io, uv_strerror(rc));
        return NULL;
    }
    /* From here on the poll handle's close callback frees the server. */
    gw->live++;
    pg_server_init(&io->s, pool);
    return &io->s;
}
