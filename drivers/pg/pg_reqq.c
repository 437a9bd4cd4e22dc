/*
 * pg_reqq: a server's queue of requests awaiting responses (core).
 *
 * Every request that the server will answer (Parse, Bind, Describe, Execute, Close, Sync, Query,
 * FunctionCall) is recorded in the server's request queue in send order, with an action saying
 * whether its responses go to the client (FORWARD), are consumed because Sluice injected the
 * request (SKIP), or were never sent because Sluice answers it itself (FAKE). Responses pop the
 * queue head; a FAKE entry is answered as soon as it reaches the head, which keeps synthesized
 * ParseComplete/CloseComplete messages in the exact position the server would have sent them.
 *
 * After an ErrorResponse to an extended-protocol message the server discards everything up to
 * Sync: the queue entries up to the next Sync are dropped the same way, undoing what they
 * assumed (a Parse that never happened is forgotten; an eviction Close that never happened puts
 * the statement back).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_relay.h"
#include "drivers/pg/pg_wire.h"

pg_req *pg_reqq_head(pg_server *s)
{
    return s->q.count ? &s->q.items[s->q.head] : NULL;
}

void pg_relay_set_unnamed(pg_stmt **slot, pg_stmt *st, pg_gateway *gw)
{
    if (*slot == st)
        return;
    if (*slot)
        pg_stmt_unref(&gw->stmts, *slot);
    *slot = st ? pg_stmt_ref(st) : NULL;
}

/* The server surely has no unnamed statement (a simple query or a Close dropped it). */
void pg_relay_unnamed_none(pg_server *s)
{
    pg_relay_set_unnamed(&s->unnamed, NULL, s->conn.gw);
    s->unnamed_unknown = false;
    s->unnamed_seq = 0;
}

/* The server may hold any unnamed statement: the next Bind or Describe of it re-sends the
 * client's Parse, or a Close when the client has none (ensure_unnamed). */
void pg_relay_unnamed_unknown(pg_server *s)
{
    s->unnamed_unknown = true;
    s->unnamed_seq = 0;
}

int pg_reqq_push(pg_server *s, uint8_t type, pg_req_action action, pg_stmt *stmt, bool named)
{
    pg_reqq *q = &s->q;
    if (action == PG_REQ_SILENT && q->count == 0)
        return 0; /* nothing ahead of it to wait for: popped at once */
    if (q->count == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 8;
        pg_req *items = malloc(cap * sizeof *items);
        if (!items)
            return -ENOMEM;
        for (uint32_t i = 0; i < q->count; i++)
            items[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = items;
        q->cap = cap;
        q->head = 0;
    }
    pg_req *r = &q->items[(q->head + q->count) % q->cap];
    r->type = type;
    r->action = (uint8_t)action;
    r->stmt = stmt ? pg_stmt_ref(stmt) : NULL;
    r->client_named = named;
    r->unnamed = false;
    r->after_copy = type == 'S' && s->copy_sent;
    r->copy_ended = false;
    s->req_seq++;
    if (action == PG_REQ_FORWARD)
        pg_count_request(s, type);
    /* A simple query drops the server's unnamed statement. */
    if (type == 'Q' && action != PG_REQ_FAKE)
        pg_relay_unnamed_none(s);
    if (type == 'S' && action != PG_REQ_SILENT)
        s->last_sync_seq = s->req_seq;
    if (q->count++ == 0 && action != PG_REQ_FAKE && s->busy_since == 0)
        s->busy_since = gw_now(pg_ctx(&s->conn));
    return 0;
}

void pg_reqq_pop(pg_server *s)
{
    pg_reqq *q = &s->q;
    pg_req *r = &q->items[q->head];
    do {
        if (r->stmt)
            pg_stmt_unref(&s->conn.gw->stmts, r->stmt);
        q->head = (q->head + 1) % q->cap;
        q->count--;
        r = &q->items[q->head];
        /* Silent entries behind it need no answer: the head is always one that does. */
    } while (q->count && r->action == PG_REQ_SILENT);
}

void pg_reqq_free(pg_reqq *q, pg_gateway *gw)
{
    for (uint32_t i = 0; i < q->count; i++) {
        pg_req *r = &q->items[(q->head + i) % q->cap];
        if (r->stmt)
            pg_stmt_unref(&gw->stmts, r->stmt);
    }
    free(q->items);
    memset(q, 0, sizeof *q);
}

int pg_relay_build_tag(gw_buf *out, gw_bufpool *bufs, const char *tag)
{
    size_t m;
    int rc = pg_msg_begin(out, bufs, 'C', &m);
    rc = rc ? rc : pg_msg_put_str(out, bufs, tag);
    return pg_msg_finish(out, m, rc);
}

int pg_relay_drain_fakes(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    pg_req *r;
    while ((r = pg_reqq_head(s)) != NULL && r->action == PG_REQ_FAKE) {
        if (s->client) {
            gw_buf *out = &s->client->conn.out;
            int rc;
            if (r->type != 'Q') {
                rc = pg_build_empty(out, gw->bufs, r->type == 'P' ? '1' : '3');
            } else if (s->tx == 'E') {
                rc = pg_build_error(out, gw->bufs, "ERROR", "25P02",
                                    "current transaction is aborted, commands ignored until end "
                                    "of transaction block");
                rc = rc ? rc : pg_build_ready(out, gw->bufs, 'E');
            } else {
                rc = pg_relay_build_tag(out, gw->bufs, "DEALLOCATE");
                rc = rc ? rc : pg_build_ready(out, gw->bufs, s->tx);
            }
            if (rc != 0) {
                /* Its request is still queued: the client's close closes this server too. */
                pg_client_fatal(s->client, PG_END_NO_MEMORY, "53200", "out of memory");
                return -1;
            }
            pg_conn_mark(&s->client->conn);
        }
        pg_reqq_pop(s);
    }
    return 0;
}

/* An error in an extended-protocol message: the server skips every message up to the next
 * Sync, and so do we. A Query or FunctionCall sent in between is skipped too: the server never
 * answers it (waiting for its answer would keep the server from the pool for good), nor does it
 * drop the unnamed statement, as pg_reqq_push took the Query to do. */
void pg_reqq_error_pop(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    pg_req *r;
    while ((r = pg_reqq_head(s)) != NULL && r->type != 'S') {
        if (r->type == 'Q' || r->type == 'F') {
            pg_relay_unnamed_unknown(s);
        } else if (r->type == 'P' && r->unnamed) {
            pg_relay_unnamed_unknown(s);
            if (r->action == PG_REQ_FORWARD && s->client && s->client->unnamed == r->stmt)
                pg_relay_set_unnamed(&s->client->unnamed, NULL, gw);
        } else if (r->type == 'P' && r->action != PG_REQ_FAKE && r->stmt) {
            pg_server_stmts_remove(&s->stmts, &gw->stmts, r->stmt);
            if (r->client_named && s->client)
                pg_client_stmts_unbind_stmt(&s->client->stmts, &gw->stmts, r->stmt);
        } else if (r->type == 'C' && r->action == PG_REQ_SKIP && r->stmt) {
            int err;
            pg_server_stmts_add(&s->stmts, r->stmt, 0, 0, &err);
        }
        pg_reqq_pop(s);
    }
}
