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
    pg_client *c = calloc(1, sizeof *c);
    if (!c) {
        gw_error(ctx, "out of memory accepting a client");
        return;
    }
    int rc = is_unix ? uv_pipe_init(ctx->loop, &c->conn.h.pipe, 0)
                     : uv_tcp_init(ctx->loop, &c->conn.h.tcp);
    if (rc != 0) {
        gw_error(ctx, "accepting a client: %s", uv_strerror(rc));
        free(c); /* a failed init leaves nothing registered with the loop */
        return;
    }
    c->conn.stream_open = true;
    gw->live++;
    pg_client_start(c, gw);
    if ((rc = uv_accept(listener, &c->conn.h.stream)) != 0) {
        pg_client_close(c, PG_END_IO_ERROR, uv_strerror(rc));
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&c->conn.h.tcp, 1);
    pg_conn_start_reading(&c->conn);
}

static void on_client_closed(uv_handle_t *h)
{
    pg_client *c = gw_container_of(h, pg_client, conn.h.handle);
    pg_gateway *gw = c->conn.gw;
    pg_client_closed(c);
    free(c);
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
        if (req && uv_shutdown(req, &c->conn.h.stream, on_client_shutdown) == 0)
            return;
        free(req);
    }
    uv_close(&c->conn.h.handle, on_client_closed);
}
