/*
 * pg_accept: the shell's side of a client connection: accepting its socket and releasing it.
 * Calls up into the core only through pg_client_start, pg_client_close and pg_client_closed.
 */
#include <stdlib.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

/* Every client costs this allocation for as long as it is connected, idle or not (5,000 idle
 * clients pay a new field 5,000 times): what only some clients need hangs off a pointer (see
 * pg_client). The bound leaves out the libuv handle, whose size is libuv's; raise it knowingly
 * (test_soak.py measures the RSS an idle client costs). */
_Static_assert(sizeof(pg_io_client) - sizeof(gw_stream) <= 288,
               "pg_io_client grew: every idle client pays for it");

void pg_client_accept(pg_gateway *gw, uv_stream_t *listener, bool is_unix)
{
    gw_ctx *ctx = gw->ctx;
    pg_io_client *io = calloc(1, sizeof *io);
    if (!io) {
        gw_error(ctx, "out of memory accepting a client");
        return;
    }
    pg_client *c = &io->c;
    int rc =
        is_unix ? uv_pipe_init(ctx->loop, &io->t.h.pipe, 0) : uv_tcp_init(ctx->loop, &io->t.h.tcp);
    if (rc != 0) {
        gw_error(ctx, "accepting a client: %s", uv_strerror(rc));
        free(io); /* a failed init leaves nothing registered with the loop */
        return;
    }
    pg_conn_transport_init(&io->t, gw, PG_CONN_CLIENT);
    c->conn.stream_open = true;
    gw->live++;
    if (pg_client_start(c, gw) != 0) {
        pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
        return;
    }
    if ((rc = uv_accept(listener, &io->t.h.stream)) != 0) {
        pg_client_close(c, PG_END_IO_ERROR, uv_strerror(rc));
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&io->t.h.tcp, 1);
    pg_conn_start_reading(&c->conn);
}

static void on_client_closed(uv_handle_t *h)
{
    pg_io_client *io = gw_container_of(h, pg_io_client, t.h.handle);
    pg_gateway *gw = io->c.conn.gw;
    pg_client_closed(&io->c);
    gw_transport_release(&io->t);
    free(io);
    gw->live--;
    pg_gateway_maybe_free(gw);
}

static void on_client_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    uv_close((uv_handle_t *)req->handle, on_client_closed);
    free(req);
}

void pg_shell_client_close(pg_client *c, bool flush)
{
    gw_transport *t = pg_conn_transport(&c->conn);
    if (flush && c->conn.out.len > 0 && pg_conn_flush(&c->conn) == 0) {
        gw_transport_close_notify(t);
        uv_shutdown_t *req = malloc(sizeof *req);
        if (req && uv_shutdown(req, &pg_conn_stream(&c->conn)->stream, on_client_shutdown) == 0)
            return;
        free(req);
    }
    uv_close(&pg_conn_stream(&c->conn)->handle, on_client_closed);
}

int pg_shell_client_tls_start(pg_client *c)
{
    gw_tls_conf *conf = pg_ctx(&c->conn)->client_tls;
    gw_transport *t = pg_conn_transport(&c->conn);
    if (!conf || t->tls)
        return 1;
    /* The 'S' goes out in clear, before any byte of the handshake (libuv keeps writes in
     * order). */
    if (gw_buf_append(&c->conn.out, c->conn.gw->bufs, "S", 1) != 0 ||
        pg_conn_flush(&c->conn) != 0 || gw_transport_start_tls(t, conf, false) != 0)
        return -1;
    return 0;
}

bool pg_shell_client_tls(const pg_client *c)
{
    return gw_transport_is_tls(pg_conn_transport((pg_conn *)&c->conn));
}

size_t pg_shell_client_tls_end_point(const pg_client *c, const uint8_t **data)
{
    const gw_transport *t = pg_conn_transport((pg_conn *)&c->conn);
    *data = NULL;
    return t->tls ? gw_tls_end_point(t->tls, data) : 0;
}

int pg_shell_client_cert_cn(const pg_client *c, char *out, size_t cap)
{
    const gw_transport *t = pg_conn_transport((pg_conn *)&c->conn);
    if (!t->tls || !gw_tls_ready(t->tls))
        return 0;
    return gw_tls_peer_cn(t->tls, out, cap);
}
