/*
 * pg_accept: the shell's side of a client connection: accepting its socket and releasing it.
 * Calls up into the core only through pg_client_start, pg_client_close and pg_client_closed.
 */
#include <stdlib.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

void pg_client_accept(pg_gateway *gw, uv_stream_t *listener, bool is_unix)
{
    gw_ctx *ctx = gw->ctx;
    pg_io_client *io = calloc(1, sizeof *io);
    if (!io) {
        gw_error(ctx, "out of memory accepting a client");
        return;
    }
    pg_client *c = &io->c;
    int rc = is_unix ? uv_pipe_init(ctx->loop, &io->h.pipe, 0) : uv_tcp_init(ctx->loop, &io->h.tcp);
    if (rc != 0) {
        gw_error(ctx, "accepting a client: %s", uv_strerror(rc));
        free(io); /* a failed init leaves nothing registered with the loop */
        return;
    }
    io->h.handle.data = &c->conn;
    c->conn.stream_open = true;
    gw->live++;
    pg_client_start(c, gw);
    if ((rc = uv_accept(listener, &io->h.stream)) != 0) {
        pg_client_close(c, PG_END_IO_ERROR, uv_strerror(rc));
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&io->h.tcp, 1);
    pg_conn_start_reading(&c->conn);
}

static void on_client_closed(uv_handle_t *h)
{
    pg_io_client *io = gw_container_of(h, pg_io_client, h.handle);
    pg_gateway *gw = io->c.conn.gw;
    pg_client_closed(&io->c);
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
    if (flush && c->conn.out.len > 0 && pg_conn_flush(&c->conn) == 0) {
        uv_shutdown_t *req = malloc(sizeof *req);
        if (req && uv_shutdown(req, &pg_conn_stream(&c->conn)->stream, on_client_shutdown) == 0)
            return;
        free(req);
    }
    uv_close(&pg_conn_stream(&c->conn)->handle, on_client_closed);
}
