/*
 * pg_cancel: CancelRequest handling. A client's cancel names Sluice's key; it is turned into a
 * cancel of the server linked to that client at this moment, and of no other. PQcancel blocks
 * (it opens a connection to the server), so it runs on libuv's thread pool with its own copy of
 * the cancel data: the server may be gone by the time the work runs.
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

typedef struct cancel_work {
    uv_work_t req;
    PGcancel *cancel;
    gw_ctx *ctx;
    pg_gateway *gw;
    uint32_t server_id;
    int ok;
    char err[256];
} cancel_work;

static void do_cancel(uv_work_t *req)
{
    cancel_work *w = (cancel_work *)req;
    w->ok = PQcancel(w->cancel, w->err, sizeof w->err);
}

static void after_cancel(uv_work_t *req, int status)
{
    cancel_work *w = (cancel_work *)req;
    if (status == 0 && !w->ok)
        gw_warn(w->ctx, "cancel of server %u failed: %s", w->server_id, w->err);
    PQfreeCancel(w->cancel);
    pg_gateway *gw = w->gw;
    gw->pending_cancels--;
    pg_server_cancel_done(gw, w->server_id);
    free(w);
    pg_gateway_maybe_free(gw);
}

void pg_shell_cancel(pg_server *s)
{
    PGconn *pq = pg_io_server_of(s)->pq;
    if (!pq || s->state != PG_SV_ACTIVE)
        return;
    cancel_work *w = calloc(1, sizeof *w);
    if (!w)
        return;
    w->cancel = PQgetCancel(pq);
    w->ctx = pg_ctx(&s->conn);
    w->server_id = s->id;
    w->gw = s->conn.gw;
    if (!w->cancel || uv_queue_work(w->ctx->loop, &w->req, do_cancel, after_cancel) != 0) {
        PQfreeCancel(w->cancel);
        free(w);
        return;
    }
    s->cancels++;
    w->gw->pending_cancels++;
    gw_debug(w->ctx, "cancel sent to server %u", s->id);
}
