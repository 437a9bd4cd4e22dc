/*
 * pg_conn: what client and server connections share that needs no I/O: their setup, the ready
 * list that hands output and input to the shell, the streaming of a message through to the
 * peer's output, errors built into the output; and the core's part of the gateway object.
 */
#include <errno.h>

#include "drivers/pg/pg_int.h"
#include "gateway/creds.h"

void pg_conn_init(pg_conn *c, pg_gateway *gw, pg_conn_kind kind)
{
    c->gw = gw;
    c->kind = kind;
    gw_list_init(&c->ready);
}

long pg_conn_pass(pg_conn *from, pg_conn *to, const uint8_t *p, size_t avail)
{
    size_t n = avail < from->pass_left ? avail : from->pass_left;
    if (to && n) {
        if (gw_buf_append(&to->out, from->gw->bufs, p, n) != 0)
            return -ENOMEM;
        pg_conn_mark(to);
    }
    from->pass_left -= (uint32_t)n;
    return (long)n;
}

void pg_core_init(pg_gateway *gw, gw_ctx *ctx)
{
    gw->ctx = ctx;
    gw_list_init(&gw->clients);
    gw_list_init(&gw->pools);
    gw_list_init(&gw->ready);
    gw_list_init(&gw->admin_waiting);
    gw_htable_init(&gw->keys);
    pg_stmt_registry_init(&gw->stmts);
    gw->bufs = &ctx->bufs;
}

void pg_core_free(pg_gateway *gw)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &gw->pools)
    {
        pg_pool_free(gw_container_of(it, pg_pool, node), gw);
    }
    gw_htable_free(&gw->keys);
    pg_stmt_registry_destroy(&gw->stmts);
    gw_creds_free(gw->creds);
    gw->creds = NULL;
}

void pg_conn_mark(pg_conn *c)
{
    if (!pg_conn_closing(c) && !gw_list_linked(&c->ready))
        gw_list_push_tail(&c->gw->ready, &c->ready);
}

void pg_conn_mark_process(pg_conn *c)
{
    c->need_process = true;
    pg_conn_mark(c);
}

uint32_t pg_gateway_random(pg_gateway *gw)
{
    uint64_t z = (gw->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (uint32_t)((z ^ (z >> 31)) >> 16);
}

pg_conn *pg_conn_peer(const pg_conn *c)
{
    if (c->kind == PG_CONN_CLIENT) {
        const pg_client *cl = (const pg_client *)c;
        return cl->server ? &cl->server->conn : NULL;
    }
    const pg_server *s = (const pg_server *)c;
    return s->client ? &s->client->conn : NULL;
}

bool pg_conn_wants_input(const pg_conn *c)
{
    bool want;
    if (c->kind == PG_CONN_CLIENT) {
        /* A client is read while what it sent fits the bound: PG_STREAM_OVER of unprocessed
         * input, or the whole message being awaited, and while its own output has room. A
         * client waiting for a server keeps being read too (up to that bound), so waiting does
         * not cost two epoll changes per transaction and a disconnect is noticed at once. */
        size_t bound = c->want_in > PG_STREAM_OVER ? c->want_in : PG_STREAM_OVER;
        want = c->in.len < bound && c->out.len + c->pending < PG_HIGH_WATER;
    } else {
        /* A connecting server is libpq's to read, unless Sluice runs the login itself. */
        const pg_server *s = (const pg_server *)c;
        want = s->state != PG_SV_CONNECTING || s->login;
    }
    /* Reading one side pauses while the other has PG_HIGH_WATER bytes unsent. */
    const pg_conn *p = pg_conn_peer(c);
    return want && !pg_conn_closing(c) && !(p && p->pending + p->out.len >= PG_HIGH_WATER);
}

void pg_conn_input(pg_conn *c)
{
    if (c->kind == PG_CONN_CLIENT)
        pg_client_process((pg_client *)c);
    else
        pg_server_process((pg_server *)c);
}

void pg_conn_input_ended(pg_conn *c, bool eof, const char *detail)
{
    if (c->kind == PG_CONN_SERVER) {
        pg_server_close((pg_server *)c, PG_END_SERVER_GONE,
                        eof ? "server closed the connection" : detail);
        return;
    }
    pg_client *cl = (pg_client *)c;
    if (eof && (c->in.len > 0 || c->pass_left) &&
        (cl->state == PG_CL_IDLE || cl->state == PG_CL_ACTIVE))
        pg_client_fatal(cl, PG_END_PROTOCOL, "08P01",
                        "unexpected EOF within a message from the client");
    else if (eof)
        pg_client_close(cl, PG_END_CLIENT_LEFT, "client disconnected");
    else
        pg_client_close(cl, PG_END_IO_ERROR, detail);
}

void pg_conn_close(pg_conn *c, pg_end why, const char *detail)
{
    if (c->kind == PG_CONN_CLIENT)
        pg_client_close((pg_client *)c, why, detail);
    else
        pg_server_close((pg_server *)c, why, detail);
}
