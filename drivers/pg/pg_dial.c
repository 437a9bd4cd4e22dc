/*
 * pg_dial: the shell's side of a server connection Sluice logs in to itself (pg_login.c: md5
 * and SCRAM passthrough, which libpq cannot do). It connects a socket to the line's host and
 * port (a Unix socket when host is a directory), then hands the core a connected stream; the
 * core runs the startup exchange over it.
 *
 * Deliberately narrower than libpq: one host (the first address it resolves to), no TLS. A line
 * that asks for more (a host list, or an sslmode of require or verify-*, from the line or
 * server_tls_sslmode) fails with a clear error instead of being half-honoured. With prefer (the
 * default) the connection is cleartext even when the server would do TLS, which libpq would
 * have used: that is logged as a warning once per pool, so it is never silent.
 *
 * Lifecycle: the stream handle is initialised before anything else can fail, so its close
 * callback frees the server (pg_connect.c's on_stream_closed); a name lookup in flight holds the
 * server too (io->gai_pending) and its callback frees a server closed meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

/* libpq's built-in default for Debian's server (DEFAULT_PGSOCKET_DIR). */
#define DEFAULT_SOCKET_DIR "/var/run/postgresql"

static const char *kw_value(const pg_pool *p, const char *kw)
{
    for (size_t i = 0; p->kw && p->kw[i]; i++)
        if (strcmp(p->kw[i], kw) == 0)
            return p->val[i];
    return NULL;
}

static void on_connected(uv_connect_t *req, int status)
{
    pg_io_server *io = req->data;
    pg_server *s = &io->s;
    if (s->state != PG_SV_CONNECTING)
        return; /* closed meanwhile: the stream's close callback frees it */
    if (status != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "could not connect to the server: %s", uv_strerror(status));
        pg_server_connect_failed(s, msg);
        return;
    }
    if (io->t.h.handle.type == UV_TCP)
        uv_tcp_nodelay(&io->t.h.tcp, 1);
    pg_conn_start_reading(&s->conn);
    pg_login_begin(s);
}

static void connect_tcp(pg_io_server *io, const struct sockaddr *sa)
{
    io->connect.data = io;
    int rc = uv_tcp_connect(&io->connect, &io->t.h.tcp, sa, on_connected);
    if (rc != 0)
        pg_server_connect_failed(&io->s, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    pg_io_server *io = req->data;
    io->gai_pending = false;
    if (io->s.state == PG_SV_CLOSING) {
        uv_freeaddrinfo(res);
        pg_io_server_maybe_free(io);
        return;
    }
    if (status != 0 || !res) {
        char msg[256];
        snprintf(msg, sizeof msg, "could not resolve the server's host name: %s",
                 uv_strerror(status ? status : UV_EAI_NONAME));
        uv_freeaddrinfo(res);
        pg_server_connect_failed(&io->s, msg);
        return;
    }
    connect_tcp(io, res->ai_addr);
    uv_freeaddrinfo(res);
}

/* Fails the attempt with msg unless the line's settings are ones this path honours. */
static const char *unsupported(const pg_pool *p)
{
    const char *mode = kw_value(p, "sslmode");
    if (mode && (strcmp(mode, "require") == 0 || strncmp(mode, "verify", 6) == 0))
        return "sslmode require/verify-* (the line's or server_tls_sslmode) with an md5 or SCRAM "
               "passthrough login: Sluice's own login does not do TLS; give the password in the "
               "line or the users file (libpq then logs in over TLS), or set sslmode=disable on "
               "the line";
    const char *host = kw_value(p, "hostaddr");
    host = host ? host : kw_value(p, "host");
    if (host && strchr(host, ','))
        return "a host list with an md5 or SCRAM passthrough login: Sluice's own login "
               "connects to one host; give the password in the line or the users file";
    return NULL;
}

pg_server *pg_dial_connect(pg_pool *pool)
{
    pg_gateway *gw = pool->gw;
    gw_ctx *ctx = gw->ctx;
    const char *bad = unsupported(pool);
    if (bad) {
        pg_server_start_failed(pool, bad);
        return NULL;
    }
    const char *host = kw_value(pool, "hostaddr");
    host = host && *host ? host : kw_value(pool, "host");
    if (!host || !*host)
        host = DEFAULT_SOCKET_DIR;
    const char *port = kw_value(pool, "port");
    port = port && *port ? port : "5432";
    bool is_unix = host[0] == '/' || host[0] == '@';
    const char *mode = kw_value(pool, "sslmode");
    if (!is_unix && mode && strcmp(mode, "prefer") == 0 && !pool->cleartext_warned) {
        pool->cleartext_warned = true;
        gw_warn(ctx,
                "pool %s/%s: the md5/SCRAM passthrough login connects without TLS although "
                "sslmode is prefer (Sluice's own login does not do TLS); set sslmode=disable "
                "on the line to say so, or give the password so libpq logs in",
                pool->dbname, pool->user);
    }

    pg_io_server *io = calloc(1, sizeof *io);
    if (!io) {
        pg_server_start_failed(pool, "out of memory");
        return NULL;
    }
    io->s.conn.gw = gw;
    int rc =
        is_unix ? uv_pipe_init(ctx->loop, &io->t.h.pipe, 0) : uv_tcp_init(ctx->loop, &io->t.h.tcp);
    if (rc != 0) {
        free(io);
        pg_server_start_failed(pool, uv_strerror(rc));
        return NULL;
    }
    /* From here on the stream's close callback frees the server. */
    pg_conn_transport_init(&io->t, &io->s.conn, gw);
    io->s.conn.stream_open = true;
    gw->live++;
    pg_server_init(&io->s, pool);
    pg_server *s = &io->s;

    if (is_unix) {
        char path[256];
        int n = snprintf(path, sizeof path, "%s/.s.PGSQL.%s", host, port);
        if (n < 0 || (size_t)n >= sizeof path) {
            pg_server_connect_failed(s, "the server's Unix socket path is too long");
            return s;
        }
        io->connect.data = io;
        uv_pipe_connect(&io->connect, &io->t.h.pipe, path, on_connected);
        return s;
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, atoi(port), (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, atoi(port), (struct sockaddr_in6 *)&ss) == 0) {
        connect_tcp(io, (const struct sockaddr *)&ss);
        return s;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    io->gai.data = io;
    rc = uv_getaddrinfo(ctx->loop, &io->gai, on_resolved, host, port, &hints);
    if (rc != 0) {
        pg_server_connect_failed(s, uv_strerror(rc));
        return s;
    }
    io->gai_pending = true;
    return s;
}
