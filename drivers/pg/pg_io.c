/*
 * pg_io (shell): reading and writing the sockets of clients and servers.
 *
 * Output the core builds while handling events is not written at once: the connection is put on
 * the gateway's ready list and written once per loop iteration (uv_prepare and uv_check both run
 * the list), so a burst of messages becomes one write. Whether a connection is read is the
 * core's decision (pg_conn_wants_input: reading one side pauses while the other side has
 * PG_HIGH_WATER bytes unsent, which bounds memory for large results and COPY); this file only
 * applies it. Calls up through pg_conn_input, pg_conn_input_ended and pg_conn_close.
 */
#include <errno.h>
#include <stdlib.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

typedef struct pg_wreq {
    uv_write_t req;
    pg_conn *conn;
    uint8_t *data;
    size_t len, cap;
} pg_wreq;

static void on_write(uv_write_t *req, int status)
{
    pg_wreq *w = (pg_wreq *)req;
    pg_conn *c = w->conn;
    c->pending -= w->len;
    gw_bufpool_put(&c->gw->bufs, w->data, w->cap);
    free(w);
    if (status < 0) {
        if (!pg_conn_closing(c))
            pg_conn_close(c, PG_END_IO_ERROR, uv_strerror(status));
        return;
    }
    /* Output drained: the other side may read again, and a client that stopped for its own
     * output bound may go on. */
    pg_conn *p = pg_conn_peer(c);
    if (p && p->reading == false)
        pg_conn_mark(p);
    if (c->in_blocked)
        pg_conn_mark_process(c);
    else if (!c->reading)
        pg_conn_mark(c);
}

int pg_conn_flush(pg_conn *c)
{
    if (c->out.len == 0 || !c->stream_open)
        return 0;
    size_t off = 0;
    if (c->pending == 0) {
        /* Nothing queued: write directly. A completed uv_write costs libuv an extra epoll_ctl
         * when it drains, one syscall per message on the hot path. */
        uv_buf_t b = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
        int n = uv_try_write(&pg_conn_stream(c)->stream, &b, 1);
        if (n == (int)c->out.len) {
            gw_buf_release(&c->out, &c->gw->bufs);
            return 0;
        }
        if (n < 0 && n != UV_EAGAIN)
            return n;
        if (n > 0)
            off = (size_t)n;
    }
    pg_wreq *w = malloc(sizeof *w);
    if (!w)
        return -ENOMEM;
    w->conn = c;
    w->data = c->out.data;
    w->len = c->out.len - off;
    w->cap = c->out.cap;
    c->out.data = NULL;
    c->out.len = c->out.cap = 0;
    uv_buf_t b = uv_buf_init((char *)w->data + off, (unsigned)w->len);
    int rc = uv_write(&w->req, &pg_conn_stream(c)->stream, &b, 1, on_write);
    if (rc < 0) {
        gw_bufpool_put(&c->gw->bufs, w->data, w->cap);
        free(w);
        return rc;
    }
    c->pending += w->len;
    return 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

void pg_conn_start_reading(pg_conn *c)
{
    if (c->reading || pg_conn_closing(c) || !c->stream_open)
        return;
    int rc = uv_read_start(&pg_conn_stream(c)->stream, pg_alloc_cb, on_read);
    if (rc == 0)
        c->reading = true;
    else
        pg_conn_close(c, PG_END_IO_ERROR,
                      uv_strerror(rc)); /* a connection never read again would hang its peer */
}

void pg_conn_stop_reading(pg_conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop(&pg_conn_stream(c)->stream);
    c->reading = false;
}

static void update_reading(pg_conn *c)
{
    if (pg_conn_closing(c))
        return;
    if (pg_conn_wants_input(c))
        pg_conn_start_reading(c);
    else
        pg_conn_stop_reading(c);
}

void pg_gateway_run_ready(pg_gateway *gw)
{
    gw_list *it;
    while ((it = gw_list_first(&gw->ready)) != NULL) {
        gw_list_remove(it);
        pg_conn *c = gw_container_of(it, pg_conn, ready);
        if (pg_conn_closing(c))
            continue;
        if (c->need_process) {
            c->need_process = false;
            pg_conn_input(c);
            if (pg_conn_closing(c))
                continue;
        }
        if (pg_conn_flush(c) != 0) {
            pg_conn_close(c, PG_END_IO_ERROR, "write failed");
            continue;
        }
        update_reading(c);
        pg_conn *p = pg_conn_peer(c);
        if (p && !pg_conn_closing(p))
            update_reading(p);
    }
}

void pg_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    pg_conn *c = h->data;
    if (gw_buf_reserve(&c->in, &c->gw->bufs, 4096) != 0) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to on_read */
        return;
    }
    *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    pg_conn *c = stream->data;
    if (nread > 0) {
        c->in.len += (size_t)nread;
        pg_conn_input(c);
        if (!pg_conn_closing(c))
            pg_conn_mark(c);
        return;
    }
    if (c->in.len == 0)
        gw_buf_release(&c->in, &c->gw->bufs);
    if (nread == 0)
        return;
    pg_conn_input_ended(c, nread == UV_EOF, uv_strerror((int)nread));
}
