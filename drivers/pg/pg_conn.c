/*
 * pg_conn: what client and server connections share that needs no I/O: their setup, the ready
 * list that hands output and input to the shell, the streaming of a message through to the
 * peer's output, errors built into the output; and the core's part of the gateway object.
 */
#include <errno.h>

#include "drivers/pg/pg_int.h"

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
        if (gw_buf_append(&to->out, &from->gw->bufs, p, n) != 0)
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
    gw_htable_init(&gw->keys);
    pg_stmt_registry_init(&gw->stmts);
    gw_bufpool_init(&gw->bufs, 1024);
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
    gw_bufpool_destroy(&gw->bufs);
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
