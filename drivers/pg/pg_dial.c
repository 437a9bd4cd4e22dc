/*
 * pg_dial: the shell's side of a server connection Sluice logs in to itself (pg_login.c: md5
 * and SCRAM passthrough, which libpq cannot do). It connects a socket to the line's host and
 * port (a Unix socket when host is a directory), then hands the core a connected stream; the
 * core runs the startup exchange over it.
 *
 * Deliberately narrower than libpq: one host (the first address it resolves to); a line that
 * asks for more (a host list) fails with a clear error instead of being half-honoured. TLS is
 * Sluice's own (gw_tls_client_new on the transport), as libpq would do it: pg_login sends the
 * SSLRequest unless sslmode is disable or allow or the socket is a Unix one; after 'S' the
 * handshake sends SNI, and checks the certificate against sslrootcert for verify-ca and
 * verify-full (and require when a root certificate is given, as libpq does) and the line's host
 * name for verify-full. server_tls_protocols and server_tls_ciphers apply here in full.
 *
 * Lifecycle: the stream handle is initialised before anything else can fail, so its close
 * callback frees the server (pg_connect.c's on_stream_closed); a name lookup in flight holds the
 * server too (io->gai_pending) and its callback frees a server closed meanwhile.
 */
#include <errno.h>
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
    const char *host = kw_value(p, "hostaddr");
    host = host ? host : kw_value(p, "host");
    if (host && strchr(host, ','))
        return "a host list with an md5 or SCRAM passthrough login: Sluice's own login "
               "connects to one host; give the password in the line or the users file";
    return NULL;
}

bool pg_shell_server_tls_capable(pg_server *s)
{
    return pg_io_server_of(s)->t.h.handle.type == UV_TCP;
}

int pg_shell_server_start_tls(pg_server *s)
{
    pg_io_server *io = pg_io_server_of(s);
    const pg_pool *p = s->pool;
    const cfg *c = pg_ctx(&s->conn)->cfg;
    const char *mode = kw_value(p, "sslmode");
    const char *ca = kw_value(p, "sslrootcert");
    bool full = mode && strcmp(mode, "verify-full") == 0;
    bool verify = full || (mode && strcmp(mode, "verify-ca") == 0) ||
                  (mode && strcmp(mode, "require") == 0 && ca && *ca);
    gw_tls_client_settings st = {.ca_file = ca,
                                 .cert_file = kw_value(p, "sslcert"),
                                 .key_file = kw_value(p, "sslkey"),
                                 .protocols = c->server_tls_protocols,
                                 .ciphers = c->server_tls_ciphers,
                                 .verify = verify};
    /* The name is the line's host; hostaddr only says where to connect (libpq's meaning). */
    const char *host = kw_value(p, "host");
    if (full && (!host || !*host)) {
        pg_server_connect_failed(s, "sslmode verify-full needs the line's host: the name the "
                                    "server's certificate must carry");
        return -1;
    }
    char err[300];
    gw_tls_conf *conf;
    if (gw_tls_client_conf_new(&st, &conf, err, sizeof err) != 0) {
        pg_server_connect_failed(s, err);
        return -1;
    }
    int rc = gw_transport_start_tls_client(&io->t, conf, host, full);
    gw_tls_conf_release(conf);
    if (rc != 0) {
        pg_server_connect_failed(s, rc == -ENOMEM || !io->t.tls ? "out of memory"
                                                                : gw_tls_error(io->t.tls));
        return -1;
    }
    return 0;
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
    pg_conn_transport_init(&io->t, gw, PG_CONN_SERVER);
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
