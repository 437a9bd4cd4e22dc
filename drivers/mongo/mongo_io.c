/*
 * mongo_io: the shell's sockets. Implements mongo_shell.h over gw_transport (the layer the
 * PostgreSQL driver uses too): a mongo_shell_conn per client and backend connection, plain or
 * TLS; reads land in the buffers the core gives (in place when plain, copied out of the TLS
 * session otherwise), writes it asks for, closes; and reports each outcome to the core through
 * its entry points, never from inside the call that started it. A connection's memory (the
 * core's object, then the shell's) is released only in its handle's close callback.
 *
 * A client's TLS is direct, as MongoDB's: no in-protocol upgrade, the client begins with a TLS
 * ClientHello (first byte 0x16). A message's first byte is its length's lowest, so where the
 * line has TLS, a cleartext client whose first message is of a length ending in 0x16 is taken
 * for TLS and fails its handshake (mongod sniffs the same way).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/mongo/mongo_int.h"
#include "gateway/admin.h"

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

bool mongo_shell_paused(const mongo_front *f)
{
    return gw_admin_paused(shell_of(f)->gw->ctx, f->name);
}

bool mongo_shell_disabled(const mongo_front *f)
{
    return gw_admin_disabled(shell_of(f)->gw->ctx, f->name);
}

void mongo_shell_log(const mongo_front *f, cfg_log_level level, const char *fmt, ...)
{
    gw_log_who who = {.protocol = "mongo", .database = f->name};
    va_list ap;
    va_start(ap, fmt);
    gw_vlog_conn(shell_of(f)->gw->ctx, level, &who, fmt, ap);
    va_end(ap);
}

/* The client's address, asked once and kept: the closing line may come after the peer left. */
static const char *client_addr(mongo_shell_conn *io)
{
    if (!io->addr[0]) {
        struct sockaddr_storage ss;
        int len = (int)sizeof ss;
        if (uv_tcp_getpeername(&io->t.h.tcp, (struct sockaddr *)&ss, &len) == 0)
            gw_sockaddr_text((struct sockaddr *)&ss, io->addr, sizeof io->addr);
    }
    return io->addr[0] ? io->addr : NULL;
}

void mongo_shell_client_note(mongo_client *c, mongo_conn_note what, const char *reason,
                             const char *text)
{
    const gw_ctx *ctx = shell_of(c->front)->gw->ctx;
    const cfg *conf = ctx->cfg;
    bool on = what == MONGO_NOTE_LOGIN ? conf->log_connections
              : what == MONGO_NOTE_END ? conf->log_disconnections
                                       : conf->log_pooler_errors;
    cfg_log_level level = what == MONGO_NOTE_ERROR ? CFG_LOG_WARNING : CFG_LOG_INFO;
    if (!on || level > conf->log_level)
        return;
    gw_log_who who = {.protocol = "mongo",
                      .client_id = (uint32_t)c->conn_id,
                      .database = c->front->name,
                      .user = c->auth_user,
                      .address = c->io ? client_addr(c->io) : NULL,
                      .reason = reason};
    gw_log_msg(ctx, level, &who, text);
}

const char *mongo_shell_strerror(int err)
{
    return uv_strerror(err);
}

static mongo_shell_conn *conn_of(gw_transport *t)
{
    return gw_transport_owner(t);
}

static gw_bufpool *pool_of(mongo_shell_conn *io)
{
    return &io->sf->gw->ctx->bufs;
}

static void on_conn_closed(uv_handle_t *h)
{
    mongo_shell_conn *io = conn_of(h->data);
    mongo_shell_front *sf = io->sf;
    mongo_gateway *gw = sf->gw;
    gw_transport_release(&io->t);
    gw_buf_release(&io->in, pool_of(io));
    gw_list_remove(&io->written_node);
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
    if (uv_is_closing(&io->t.h.handle))
        return;
    /* The close cancels queued writes: the alert goes out at once if the socket takes it. */
    gw_transport_close_notify(&io->t);
    uv_close(&io->t.h.handle, on_conn_closed);
}

/* ---- the transport's callbacks ---- */

static void core_room(mongo_shell_conn *io, uint8_t **p, size_t *n)
{
    if (io->client)
        mongo_core_client_read_buf(io->client, p, n);
    else
        mongo_core_backend_read_buf(io->backend, p, n);
}

static void core_read(mongo_shell_conn *io, size_t n)
{
    if (io->client)
        mongo_core_client_read(io->client, n);
    else
        mongo_core_backend_read(io->backend, n);
}

static void core_failed(mongo_shell_conn *io, mongo_end why, const char *detail)
{
    if (io->client)
        mongo_core_client_failed(io->client, why, detail);
    else
        mongo_core_backend_failed(io->backend, why, detail);
}

/* Plain reads go straight into the core's buffer. */
static void on_read_room(gw_transport *t, uint8_t **p, size_t *n)
{
    core_room(conn_of(t), p, n);
}

/* TLS plaintext (one read's worth at most: the transport reads only while the core wants
 * input) is copied into the core's buffers, all of it: the core keeps what it cannot handle yet
 * as it keeps the tail of a plain read. */
static void deliver_plaintext(mongo_shell_conn *io)
{
    size_t off = 0;
    while (off < io->in.len && !uv_is_closing(&io->t.h.handle)) {
        uint8_t *p;
        size_t n;
        core_room(io, &p, &n);
        if (n == 0) {
            core_failed(io, MONGO_END_NOMEM, "no read buffer");
            break;
        }
        if (n > io->in.len - off)
            n = io->in.len - off;
        memcpy(p, io->in.data + off, n);
        off += n;
        core_read(io, n);
    }
    gw_buf_release(&io->in, pool_of(io));
}

static const char *tls_required(cfg_tls_mode mode)
{
    switch (mode) {
    case CFG_TLS_VERIFY_CA:
    case CFG_TLS_VERIFY_FULL:
        return "TLS with a client certificate is required on this port";
    default:
        return "TLS is required on this port";
    }
}

/* A client's first bytes, still in the core's buffer (not yet given to it). A ClientHello
 * starts TLS, and the bytes move into the session; cleartext where the line requires TLS gets
 * its first message answered with an error. Returns true when the bytes were taken. */
static bool client_first_input(mongo_shell_conn *io)
{
    mongo_shell_front *sf = io->sf;
    mongo_client *c = io->client;
    io->saw_input = true;
    if (!sf->client_tls || io->in.data[0] != 0x16) {
        if (sf->client_tls_mode >= CFG_TLS_REQUIRE)
            mongo_core_client_refuse(c, tls_required(sf->client_tls_mode));
        return false;
    }
    gw_buf hello = {0};
    int rc = gw_buf_append(&hello, pool_of(io), io->in.data, io->in.len);
    io->in = (gw_buf){0};
    mongo_core_client_read(c, 0); /* lets go of the room it gave */
    if (rc != 0) {
        mongo_core_client_failed(c, MONGO_END_NOMEM, "TLS handshake");
        return true;
    }
    io->in = hello;
    rc = gw_transport_start_tls(&io->t, sf->client_tls, true);
    gw_buf_release(&io->in, pool_of(io)); /* left only when the session could not be made */
    if (rc != 0) {
        const char *why = rc == -ENOMEM ? "out of memory" : gw_tls_error(io->t.tls);
        mongo_shell_log(&sf->core, CFG_LOG_INFO, "client %d: TLS handshake failed: %s", c->conn_id,
                        why);
        mongo_core_client_failed(c, rc == -ENOMEM ? MONGO_END_NOMEM : MONGO_END_TLS, why);
    }
    return true;
}

static void on_input(gw_transport *t)
{
    mongo_shell_conn *io = conn_of(t);
    if (io->client)
        mongo__refresh_settings(io->sf->gw);
    if (gw_transport_is_tls(t)) {
        deliver_plaintext(io);
        return;
    }
    if (io->client && !io->saw_input && client_first_input(io))
        return;
    size_t n = io->in.len; /* read in place, into the core's buffer */
    io->in = (gw_buf){0};
    core_read(io, n);
}

static void on_ended(gw_transport *t, bool eof, bool tls_failed, const char *detail)
{
    mongo_shell_conn *io = conn_of(t);
    mongo_end why = MONGO_END_IO;
    if (tls_failed) {
        why = MONGO_END_TLS;
        if (io->client)
            mongo_shell_log(&io->sf->core, CFG_LOG_INFO, "client %d: TLS failed: %s",
                            io->client->conn_id, detail);
    } else if (eof) {
        why = io->client ? MONGO_END_CLIENT_LEFT : MONGO_END_SERVER_CLOSED;
        detail = NULL;
    } else if (strcmp(detail, uv_strerror(UV_ENOBUFS)) == 0) { /* the core gave no buffer */
        why = MONGO_END_NOMEM;
        detail = "no read buffer";
    }
    core_failed(io, why, detail);
}

/* Tells the core of the end of what it wrote (error NULL: all of it is on the wire). */
static void report_written(mongo_shell_conn *io, const char *error)
{
    size_t n = io->unreported;
    io->unreported = 0;
    if (n == 0 && !error)
        return; /* the TLS session's own records */
    if (io->client)
        mongo_core_client_written(io->client, NULL, n, 0, error);
    else if (io->backend)
        mongo_core_backend_written(io->backend, NULL, 0, error);
}

/* The core hears of its writes' end once everything queued is on the wire (or failed): the
 * transport's writes do not map one to one onto the core's (TLS adds records of its own). */
static void on_written(gw_transport *t, size_t len, int status)
{
    (void)len;
    mongo_shell_conn *io = conn_of(t);
    if (status == 0 && t->queued > 0)
        return;
    gw_list_remove(&io->written_node); /* reported here, with the rest */
    report_written(io, status < 0 ? uv_strerror(status) : NULL);
}

void mongo__io_report_written(uv_check_t *h)
{
    mongo_gateway *gw = h->data;
    /* A report may lead the core to write again (the next request of a client, on a backend):
     * a connection that joins the list meanwhile is reported in this same pass. */
    gw_list *it;
    while ((it = gw_list_first(&gw->written))) {
        mongo_shell_conn *io = gw_container_of(it, mongo_shell_conn, written_node);
        gw_list_remove(it);
        if (io->t.queued == 0) /* else on_written reports it when the queue drains */
            report_written(io, NULL);
    }
    uv_check_stop(h);
}

/* A write the socket took whole, in the call: reported from the check handle. */
static void defer_report(mongo_shell_conn *io)
{
    mongo_gateway *gw = io->sf->gw;
    if (gw_list_linked(&io->written_node) || !gw->written_check_open)
        return;
    gw_list_push_tail(&gw->written, &io->written_node);
    uv_check_start(&gw->written_check, mongo__io_report_written);
}

static void on_tls_ready(gw_transport *t)
{
    mongo_shell_conn *io = conn_of(t);
    if (io->client)
        mongo_shell_log(&io->sf->core, CFG_LOG_DEBUG, "client %d: TLS established (%s)",
                        io->client->conn_id, gw_tls_version(t->tls));
}

static const gw_transport_cbs conn_cbs = {
    .input = on_input,
    .ended = on_ended,
    .written = on_written,
    .tls_ready = on_tls_ready,
    .read_room = on_read_room,
};

void mongo__io_class_init(mongo_gateway *gw)
{
    gw->conn_class = GW_TRANSPORT_CLASS(conn_cbs, &gw->ctx->bufs, mongo_shell_conn, t, t, in);
}

/* A new connection handle, counted live until its close callback. */
static mongo_shell_conn *conn_new(mongo_shell_front *sf)
{
    mongo_shell_conn *io = calloc(1, sizeof *io);
    if (!io)
        return NULL;
    gw_transport_init(&io->t, &sf->gw->conn_class);
    gw_list_init(&io->written_node);
    if (uv_tcp_init(sf->gw->ctx->loop, &io->t.h.tcp) != 0) {
        free(io);
        return NULL;
    }
    io->sf = sf;
    sf->gw->live++;
    sf->live++;
    return io;
}

/* ---- writes ---- */

static int conn_write(mongo_shell_conn *io, uint8_t *msg, size_t len, size_t cap)
{
    gw_buf b = {.data = msg, .len = len, .cap = cap};
    long q = gw_transport_send(&io->t, &b);
    if (q >= 0 && b.data)
        q = UV_EPROTO; /* a TLS session not ready: the core writes only after a message came */
    gw_buf_release(&b, pool_of(io));
    if (q < 0)
        return (int)q;
    io->unreported += len;
    if (io->t.queued == 0)
        defer_report(io);
    return 0;
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

int mongo_shell_client_read(mongo_client *c, bool on)
{
    c->io->client = c;
    if (!on) {
        gw_transport_read_stop(&c->io->t);
        return 0;
    }
    return gw_transport_read_start(&c->io->t);
}

int mongo_shell_backend_read_start(mongo_backend *b)
{
    b->io->backend = b;
    return gw_transport_read_start(&b->io->t);
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
    if (uv_accept((uv_stream_t *)&sf->listener, &io->t.h.stream) != 0) {
        conn_close(io);
        return;
    }
    mongo_client *c = mongo_core_client_accepted(&sf->core, io);
    if (!c) {
        conn_close(io);
        return;
    }
    io->client = c;
    if (!uv_is_closing(&io->t.h.handle))
        uv_tcp_nodelay(&io->t.h.tcp, 1);
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
    int rc = uv_tcp_open(&io->t.h.tcp, job->fd);
    if (rc != 0) {
        char error[128];
        snprintf(error, sizeof error, "cannot use a backend socket: %s", uv_strerror(rc));
        close(job->fd);
        conn_close(io);
        mongo_core_connect_failed(&sf->core, job->target, error);
        return;
    }
    if (job->tls) { /* handshaken on the worker thread: the session carries on here */
        gw_transport_take_tls(&io->t, job->tls);
        job->tls = NULL;
    }
    mongo_backend *b = mongo_core_backend_connected(&sf->core, io, job->host, &job->limits);
    if (!b)
        conn_close(io);
    else
        io->backend = b;
}
