/*
 * gw_transport: the plain and TLS kinds and the libuv reading and writing they share (see
 * transport.h).
 */
#include <errno.h>
#include <stdlib.h>

#include "gateway/transport.h"

typedef struct gw_wreq {
    uv_write_t req;
    gw_transport *t;
    uint8_t *data;
    size_t len, cap;
} gw_wreq;

static void on_write(uv_write_t *req, int status)
{
    gw_wreq *w = (gw_wreq *)req;
    gw_transport *t = w->t;
    size_t len = w->len;
    t->queued -= (uint32_t)len;
    gw_bufpool_put(t->cls->pool, w->data, w->cap);
    gw_bufclass_put(&t->cls->pool->wreqs, w);
    t->cls->cbs.written(t, len, status);
}

/* Writes b's bytes to the socket, taking its memory. Returns the bytes queued for on_write: 0
 * when the socket took them all at once (cbs->written does not run for those). */
static long write_raw(gw_transport *t, gw_buf *b)
{
    if (b->len == 0)
        return 0;
    size_t off = 0;
    if (t->queued == 0) {
        /* Nothing queued: write directly. A completed uv_write costs libuv an extra epoll_ctl
         * when it drains, one syscall per message on the hot path. */
        uv_buf_t ub = uv_buf_init((char *)b->data, (unsigned)b->len);
        int n = uv_try_write(&t->h.stream, &ub, 1);
        if (n == (int)b->len) {
            gw_buf_release(b, t->cls->pool);
            return 0;
        }
        if (n < 0 && n != UV_EAGAIN)
            return n;
        if (n > 0)
            off = (size_t)n;
    }
    if (b->len - off > UINT32_MAX - t->queued)
        return -ENOBUFS;
    /* Pooled, like the buffers: a connection whose peer reads slowly queues a write per
     * message. */
    gw_wreq *w = gw_bufclass_get(&t->cls->pool->wreqs, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->t = t;
    w->data = b->data;
    w->len = b->len - off;
    w->cap = b->cap;
    b->data = NULL;
    b->len = b->cap = 0;
    uv_buf_t ub = uv_buf_init((char *)w->data + off, (unsigned)w->len);
    int rc = uv_write(&w->req, &t->h.stream, &ub, 1, on_write);
    if (rc < 0) {
        gw_bufpool_put(t->cls->pool, w->data, w->cap);
        gw_bufclass_put(&t->cls->pool->wreqs, w);
        return rc;
    }
    t->queued += (uint32_t)w->len;
    return (long)w->len;
}

/* ---- plain ---- */

static void plain_alloc(gw_transport *t, uv_buf_t *buf)
{
    if (t->cls->cbs.read_room) {
        uint8_t *room;
        size_t n;
        t->cls->cbs.read_room(t, &room, &n);
        *buf = n ? uv_buf_init((char *)room, (unsigned)n) : uv_buf_init(NULL, 0);
        return;
    }
    gw_buf *in = gw_transport_in(t);
    if (gw_buf_reserve(in, t->cls->pool, 4096) != 0) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to on_read */
        return;
    }
    *buf = uv_buf_init((char *)in->data + in->len, (unsigned)(in->cap - in->len));
}

static int plain_received(gw_transport *t, const uv_buf_t *buf, size_t n)
{
    if (t->cls->cbs.read_room) {
        /* The bytes are in the owner's room (plain_alloc), not in the input buffer's own
         * memory. */
        *gw_transport_in(t) = (gw_buf){.data = (uint8_t *)buf->base, .len = n, .cap = n};
        return 0;
    }
    gw_transport_in(t)->len += n;
    return 0;
}

static const gw_transport_ops plain_ops = {"plain", plain_alloc, plain_received, write_raw};

/* ---- TLS ---- */

static void tls_alloc(gw_transport *t, uv_buf_t *buf)
{
    /* One pooled block per read: a TLS record is at most 16 kB plus its overhead, and an idle
     * connection holds nothing between reads. */
    gw_buf *raw = &gw_tls_bufs_of(t->tls)->raw;
    if (gw_buf_reserve(raw, t->cls->pool, GW_BUF_BLOCK) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)raw->data, (unsigned)raw->cap);
}

static int tls_feed(gw_transport *t, const uint8_t *data, size_t n)
{
    gw_buf *wire = &gw_tls_bufs_of(t->tls)->wire;
    int rc = gw_tls_unseal(t->tls, data, n, gw_transport_in(t), wire, t->cls->pool);
    /* Handshake messages and alerts go out even when the session just failed: the peer learns
     * why from the alert. */
    long q = write_raw(t, wire);
    if (rc == 0 && q < 0)
        rc = (int)q;
    return rc;
}

static int tls_received(gw_transport *t, const uv_buf_t *buf, size_t n)
{
    (void)buf; /* the session's raw buffer */
    bool was_ready = gw_tls_ready(t->tls);
    gw_buf *raw = &gw_tls_bufs_of(t->tls)->raw;
    int rc = tls_feed(t, raw->data, n);
    gw_buf_release(raw, t->cls->pool);
    if (rc == 0 && !was_ready && gw_tls_ready(t->tls) && t->cls->cbs.tls_ready)
        t->cls->cbs.tls_ready(t);
    return rc;
}

static long tls_send(gw_transport *t, gw_buf *out)
{
    if (!gw_tls_ready(t->tls))
        return 0; /* held until the handshake completed (tls_ready) */
    gw_buf *wire = &gw_tls_bufs_of(t->tls)->wire;
    int rc = gw_tls_seal(t->tls, out->data, out->len, wire, t->cls->pool);
    gw_buf_release(out, t->cls->pool);
    if (rc != 0)
        return rc;
    return write_raw(t, wire);
}

static const gw_transport_ops tls_ops = {"tls", tls_alloc, tls_received, tls_send};

/* ---- shared ---- */

/* The kind follows from the session: one pointer less in every connection. */
static const gw_transport_ops *ops_of(const gw_transport *t)
{
    return t->tls ? &tls_ops : &plain_ops;
}

void gw_transport_init(gw_transport *t, const gw_transport_class *cls)
{
    t->cls = cls;
    t->h.handle.data = t;
}

int gw_transport_start_tls(gw_transport *t, gw_tls_conf *conf, bool direct)
{
    t->tls = gw_tls_new(conf, direct);
    if (!t->tls)
        return -ENOMEM;
    gw_buf *in = gw_transport_in(t);
    if (!direct || in->len == 0)
        return 0;
    /* The ClientHello was read as plaintext: it moves into the session. The caller sees the
     * outcome through the callbacks of the next read, or here when it already failed. */
    gw_buf hello = *in;
    *in = (gw_buf){0};
    int rc = tls_feed(t, hello.data, hello.len);
    gw_buf_release(&hello, t->cls->pool);
    if (rc != 0)
        t->tls_ended = true;
    return rc;
}

void gw_transport_take_tls(gw_transport *t, gw_tls *tls)
{
    t->tls = tls;
}

int gw_transport_start_tls_client(gw_transport *t, gw_tls_conf *conf, const char *host,
                                  bool check_name)
{
    t->tls = gw_tls_client_new(conf, host, check_name);
    if (!t->tls)
        return -ENOMEM;
    int rc = tls_feed(t, NULL, 0); /* writes the ClientHello */
    if (rc != 0)
        t->tls_ended = true;
    return rc;
}

int gw_transport_adopt_tls(gw_transport *t, void *session)
{
    t->tls = gw_tls_adopt(session);
    if (!t->tls)
        return -ENOMEM;
    /* Plaintext the previous owner's OpenSSL decrypted but nobody read joins the input now (the
     * owner sees it with the next read's); nothing comes in, so nothing can fail but memory. */
    int rc = tls_feed(t, NULL, 0);
    if (rc != 0)
        t->tls_ended = true;
    return rc;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    gw_transport *t = h->data;
    ops_of(t)->alloc(t, buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    gw_transport *t = stream->data;
    if (nread > 0) {
        int rc = ops_of(t)->received(t, buf, (size_t)nread);
        if (rc == 0) {
            t->cls->cbs.input(t);
            return;
        }
        t->tls_ended = true;
        gw_transport_read_stop(t);
        if (rc == GW_TLS_EOF)
            t->cls->cbs.ended(t, true, false, "end of TLS session");
        else
            t->cls->cbs.ended(t, false, rc != -ENOMEM,
                              rc == -ENOMEM ? "out of memory" : gw_tls_error(t->tls));
        return;
    }
    if (t->tls)
        gw_buf_release(&gw_tls_bufs_of(t->tls)->raw, t->cls->pool);
    /* (A plain owner's room from read_room stays the owner's, unused.) */
    gw_buf *in = gw_transport_in(t);
    if (in->len == 0)
        gw_buf_release(in, t->cls->pool);
    if (nread == 0)
        return;
    t->cls->cbs.ended(t, nread == UV_EOF, false, uv_strerror((int)nread));
}

int gw_transport_read_start(gw_transport *t)
{
    if (t->reading || t->tls_ended)
        return 0;
    int rc = uv_read_start(&t->h.stream, on_alloc, on_read);
    if (rc == 0)
        t->reading = true;
    return rc;
}

void gw_transport_read_stop(gw_transport *t)
{
    if (!t->reading)
        return;
    uv_read_stop(&t->h.stream);
    t->reading = false;
}

long gw_transport_send(gw_transport *t, gw_buf *out)
{
    if (out->len == 0)
        return 0;
    return ops_of(t)->send(t, out);
}

void gw_transport_close_notify(gw_transport *t)
{
    if (!t->tls || t->tls_ended)
        return;
    gw_buf *wire = &gw_tls_bufs_of(t->tls)->wire;
    gw_tls_close_notify(t->tls, wire, t->cls->pool);
    (void)write_raw(t, wire);
}

void gw_transport_release(gw_transport *t)
{
    if (!t->tls)
        return;
    gw_tls_bufs *b = gw_tls_bufs_of(t->tls);
    gw_buf_release(&b->raw, t->cls->pool);
    gw_buf_release(&b->wire, t->cls->pool);
    gw_tls_free(t->tls);
    t->tls = NULL;
}
