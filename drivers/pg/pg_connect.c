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
    if (io->pq)
        PQfinish(io->pq); /* sends Terminate; the socket is non-blocking by now */
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
    pg_io_server *io = gw_container_of(h, pg_io_server, h.handle);
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
    if (s->conn.stream_open)
        uv_close(&io->h.handle, on_stream_closed);
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

/* The handshake is done: move the socket to a libuv stream and offer the server to the pool. */
static void connected(pg_io_server *io)
{
    pg_server *s = &io->s;
    gw_ctx *ctx = pg_ctx(&s->conn);
    if (PQsslInUse(io->pq)) {
        pg_server_connect_failed(s,
                                 "the server connection uses TLS, which Sluice does not relay yet; "
                                 "add sslmode=disable to the database line");
        return;
    }
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
    int rc = is_unix ? uv_pipe_init(ctx->loop, &io->h.pipe, 0) : uv_tcp_init(ctx->loop, &io->h.tcp);
    if (rc != 0) {
        close(fd);
        pg_server_connect_failed(s, uv_strerror(rc));
        return;
    }
    io->h.handle.data = &s->conn;
    s->conn.stream_open = true; /* initialised: closed through on_stream_closed from now on */
    rc = is_unix ? uv_pipe_open(&io->h.pipe, fd) : uv_tcp_open(&io->h.tcp, fd);
    if (rc != 0) {
        close(fd);
        pg_server_connect_failed(s, uv_strerror(rc));
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&io->h.tcp, 1);
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
