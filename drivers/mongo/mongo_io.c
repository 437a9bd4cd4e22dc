/*
 * mongo_io: the shell's sockets. Implements mongo_shell.h over libuv: a mongo_shell_conn (a
 * uv_tcp_t) per client and backend connection, reads into the buffers the core gives, writes it
 * asks for, closes; and reports each outcome to the core through its entry points, never from
 * inside the call that started it. A connection's memory (the core's object, then the shell's)
 * is released only in its handle's close callback.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "drivers/mongo/mongo_int.h"

static mongo_shell_front *shell_of(const mongo_front *f)
{
    return f->shell;
}

uint64_t mongo_shell_now(const mongo_front *f)
{
    return gw_now(shell_of(f)->gw->ctx);
}

const struct auth_userlist *mongo_shell_users(const mongo_front *f)
{
    return shell_of(f)->gw->ctx->cfg->users;
}

const uint8_t *mongo_shell_auth_seed(const mongo_front *f)
{
    return shell_of(f)->gw->ctx->auth_seed;
}

void mongo_shell_log(const mongo_front *f, cfg_log_level level, const char *fmt, ...)
{
    const gw_ctx *ctx = shell_of(f)->gw->ctx;
    if (level > ctx->cfg->log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw_log(ctx, level, "mongo %s: %s", f->name, msg);
}

const char *mongo_shell_strerror(int err)
{
    return uv_strerror(err);
}

static void on_conn_closed(uv_handle_t *h)
{
    mongo_shell_conn *io = (mongo_shell_conn *)h;
    mongo_shell_front *sf = io->sf;
    mongo_gateway *gw = sf->gw;
    if (io->client)
        mongo_core_client_closed(io->client);
    if (io->backend)
        mongo_core_backend_closed(io->backend);
    free(io);
    gw->live--;
    sf->live--;
    mongo__front_maybe_free(sf);
    mongo__gateway_maybe_free(gw);
}

static void conn_close(mongo_shell_conn *io)
{
    if (!uv_is_closing((uv_handle_t *)&io->tcp))
        uv_close((uv_handle_t *)&io->tcp, on_conn_closed);
}

/* A new connection handle, counted live until its close callback. */
static mongo_shell_conn *conn_new(mongo_shell_front *sf)
{
    mongo_shell_conn *io = calloc(1, sizeof *io);
    if (!io)
        return NULL;
    if (uv_tcp_init(sf->gw->ctx->loop, &io->tcp) != 0) {
        free(io);
        return NULL;
    }
    io->sf = sf;
    sf->gw->live++;
    sf->live++;
    return io;
}

/* ---- writes ---- */

typedef struct shell_write {
    uv_write_t req;
    mongo_shell_conn *io;
    uint8_t *msg;
    size_t len, cap;
} shell_write;

static void on_written(uv_write_t *req, int status)
{
    shell_write *w = (shell_write *)req;
    mongo_shell_conn *io = w->io;
    const char *error = status < 0 ? uv_strerror(status) : NULL;
    if (io->client)
        mongo_core_client_written(io->client, w->msg, w->len, w->cap, error);
    else
        mongo_core_backend_written(io->backend, w->msg, w->cap, error);
    free(w);
}

static int conn_write(mongo_shell_conn *io, uint8_t *msg, size_t len, size_t cap)
{
    shell_write *w = malloc(sizeof *w);
    if (!w)
        return UV_ENOMEM;
    *w = (shell_write){.io = io, .msg = msg, .len = len, .cap = cap};
    uv_buf_t b = uv_buf_init((char *)msg, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&io->tcp, &b, 1, on_written);
    if (rc != 0)
        free(w);
    return rc;
}

int mongo_shell_client_write(mongo_client *c, uint8_t *msg, size_t len, size_t cap)
{
    c->io->client = c;
    return conn_write(c->io, msg, len, cap);
}

int mongo_shell_backend_write(mongo_backend *b, uint8_t *msg, size_t len, size_t cap)
{
    b->io->backend = b;
    return conn_write(b->io, msg, len, cap);
}

/* ---- reads ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    mongo_shell_conn *io = (mongo_shell_conn *)h;
    uint8_t *p;
    size_t n;
    if (io->client)
        mongo_core_client_read_buf(io->client, &p, &n);
    else
        mongo_core_backend_read_buf(io->backend, &p, &n);
    *buf = n ? uv_buf_init((char *)p, (unsigned)n) : uv_buf_init(NULL, 0); /* 0: UV_ENOBUFS */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    mongo_shell_conn *io = (mongo_shell_conn *)s;
    if (nread == 0)
        return;
    if (nread > 0) {
        if (io->client) {
            mongo__refresh_settings(io->sf->gw);
            mongo_core_client_read(io->client, (size_t)nread);
        } else {
            mongo_core_backend_read(io->backend, (size_t)nread);
        }
        return;
    }
    mongo_end why = MONGO_END_IO;
    const char *detail = uv_strerror((int)nread);
    if (nread == UV_EOF) {
        why = io->client ? MONGO_END_CLIENT_LEFT : MONGO_END_SERVER_CLOSED;
        detail = NULL;
    } else if (nread == UV_ENOBUFS) { /* the core could not give a buffer */
        why = MONGO_END_NOMEM;
        detail = "no read buffer";
    }
    if (io->client)
        mongo_core_client_failed(io->client, why, detail);
    else
        mongo_core_backend_failed(io->backend, why, detail);
}

int mongo_shell_client_read(mongo_client *c, bool on)
{
    c->io->client = c;
    if (!on)
        return uv_read_stop((uv_stream_t *)&c->io->tcp);
    return uv_read_start((uv_stream_t *)&c->io->tcp, on_alloc, on_read);
}

int mongo_shell_backend_read_start(mongo_backend *b)
{
    b->io->backend = b;
    return uv_read_start((uv_stream_t *)&b->io->tcp, on_alloc, on_read);
}

/* ---- closes ---- */

void mongo_shell_client_close(mongo_client *c)
{
    c->io->client = c;
    conn_close(c->io);
}

void mongo_shell_backend_close(mongo_backend *b)
{
    b->io->backend = b;
    conn_close(b->io);
}

/* ---- new connections ---- */

int mongo_shell_connect(mongo_front *f, const char *target)
{
    return mongo__worker_request_connect(shell_of(f), target);
}

void mongo__io_accept(mongo_shell_front *sf)
{
    mongo_shell_conn *io = conn_new(sf);
    if (!io)
        return;
    if (uv_accept((uv_stream_t *)&sf->listener, (uv_stream_t *)&io->tcp) != 0) {
        conn_close(io);
        return;
    }
    mongo_client *c = mongo_core_client_accepted(&sf->core, io);
    if (!c) {
        conn_close(io);
        return;
    }
    io->client = c;
    if (!uv_is_closing((uv_handle_t *)&io->tcp))
        uv_tcp_nodelay(&io->tcp, 1);
}

void mongo__io_backend_connected(mongo_shell_front *sf, mongo_job *job)
{
    if (sf->gw->stopping || sf->stopped) {
        close(job->fd);
        return;
    }
    mongo_shell_conn *io = conn_new(sf);
    if (!io) {
        close(job->fd);
        mongo_core_connect_failed(&sf->core, job->target, "out of memory");
        return;
    }
    int rc = uv_tcp_open(&io->tcp, job->fd);
    if (rc != 0) {
        char error[128];
        snprintf(error, sizeof error, "cannot use a backend socket: %s", uv_strerror(rc));
        close(job->fd);
        conn_close(io);
        mongo_core_connect_failed(&sf->core, job->target, error);
        return;
    }
    mongo_backend *b = mongo_core_backend_connected(&sf->core, io, job->host, &job->limits);
    if (!b)
        conn_close(io);
    else
        io->backend = b;
}
