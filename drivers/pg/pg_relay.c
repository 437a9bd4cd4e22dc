/*
 * pg_relay: what crosses a client-server link, message by message.
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
 *
 * The unnamed statement needs care of its own in transaction mode: a client may Parse it in one
 * Sync segment and Bind it in the next, on another server or after another client replaced it.
 * Each client remembers the body of its unnamed statement and each server what its unnamed
 * statement holds; a Bind or Describe of it re-sends the Parse first when the two differ.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_sql.h"
#include "drivers/pg/pg_wire.h"

bool pg_relay_tracks_stmts(const pg_client *c)
{
    const cfg *conf = pg_ctx(&c->conn)->cfg;
    return c->pool && c->pool->mode == CFG_POOL_TRANSACTION && conf->max_prepared_statements > 0;
}

/* ---- request queue ---- */

static pg_req *q_head(pg_server *s)
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
static void server_unnamed_none(pg_server *s)
{
    pg_relay_set_unnamed(&s->unnamed, NULL, s->conn.gw);
    s->unnamed_unknown = false;
    s->unnamed_seq = 0;
}

int pg_reqq_push(pg_server *s, uint8_t type, pg_req_action action, pg_stmt *stmt, bool named)
{
    pg_reqq *q = &s->q;
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
    s->req_seq++;
    /* A simple query drops the server's unnamed statement. */
    if (type == 'Q' && action != PG_REQ_FAKE)
        server_unnamed_none(s);
    if (type == 'S')
        s->last_sync_seq = s->req_seq;
    if (q->count++ == 0 && action != PG_REQ_FAKE && s->busy_since == 0)
        s->busy_since = gw_now(pg_ctx(&s->conn));
    return 0;
}

static void q_pop(pg_server *s)
{
    pg_req *r = q_head(s);
    if (r->stmt)
        pg_stmt_unref(&s->conn.gw->stmts, r->stmt);
    s->q.head = (s->q.head + 1) % s->q.cap;
    s->q.count--;
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

static int build_tag(gw_buf *out, gw_bufpool *bufs, const char *tag)
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
    while ((r = q_head(s)) != NULL && r->action == PG_REQ_FAKE) {
        if (s->client) {
            gw_buf *out = &s->client->conn.out;
            int rc;
            if (r->type != 'Q') {
                rc = pg_build_empty(out, &gw->bufs, r->type == 'P' ? '1' : '3');
            } else if (s->tx == 'E') {
                rc = pg_build_error(out, &gw->bufs, "ERROR", "25P02",
                                    "current transaction is aborted, commands ignored until end "
                                    "of transaction block");
                rc = rc ? rc : pg_build_ready(out, &gw->bufs, 'E');
            } else {
                rc = build_tag(out, &gw->bufs, "DEALLOCATE");
                rc = rc ? rc : pg_build_ready(out, &gw->bufs, s->tx);
            }
            if (rc != 0) {
                /* Its request is still queued: the client's close closes this server too. */
                pg_client_fatal(s->client, PG_END_NO_MEMORY, "53200", "out of memory");
                return -1;
            }
            pg_conn_mark(&s->client->conn);
        }
        q_pop(s);
    }
    return 0;
}

/* An extended-protocol error: the server skips to Sync; so do we. */
static void error_pop(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    pg_req *r;
    while ((r = q_head(s)) != NULL && r->type != 'S' && r->type != 'Q' && r->type != 'F') {
        if (r->type == 'P' && r->unnamed) {
            s->unnamed_unknown = true;
            s->unnamed_seq = 0;
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
        q_pop(s);
    }
}

/* ---- client to server ---- */

static int append(pg_server *s, const void *data, size_t len)
{
    pg_conn_mark(&s->conn);
    return gw_buf_append(&s->conn.out, &s->conn.gw->bufs, data, len);
}

/* Makes sure st is prepared on s, sending an injected Parse (and the Close of an evicted
 * statement) when it is not. */
static int ensure_prepared(pg_server *s, pg_stmt *st, pg_req_action action, bool named)
{
    pg_gateway *gw = s->conn.gw;
    gw_buf *out = &s->conn.out;
    /* Its Parse is still unanswered and a Sync lies between: if that Parse fails, the server
     * will not have it although this later Sync segment would rely on it. Wait for the answer. */
    uint64_t pending = pg_server_stmts_pending(&s->stmts, st);
    if (pending && pending < s->last_sync_seq)
        return 1;
    if (pg_server_stmts_use(&s->stmts, st)) {
        if (action == PG_REQ_FORWARD)
            return pg_reqq_push(s, 'P', PG_REQ_FAKE, NULL, false);
        return 0;
    }
    int err;
    int max = pg_ctx(&s->conn)->cfg->max_prepared_statements;
    pg_stmt *victim = pg_server_stmts_add(&s->stmts, st, max, 0, &err);
    if (err)
        return err;
    size_t m;
    int rc = 0;
    if (victim) {
        rc = pg_msg_begin(out, &gw->bufs, 'C', &m);
        rc = rc ? rc : pg_msg_put(out, &gw->bufs, "S", 1);
        rc = rc ? rc : pg_msg_put_str(out, &gw->bufs, victim->name);
        pg_msg_finish(out, m, rc);
        /* The queue entry takes over the reference the server set held. */
        rc = rc ? rc : pg_reqq_push(s, 'C', PG_REQ_SKIP, victim, false);
        pg_stmt_unref(&gw->stmts, victim);
        if (rc)
            return rc;
    }
    rc = pg_msg_begin(out, &gw->bufs, 'P', &m);
    rc = rc ? rc : pg_msg_put_str(out, &gw->bufs, st->name);
    rc = rc ? rc : pg_msg_put(out, &gw->bufs, st->body, st->body_len);
    pg_msg_finish(out, m, rc);
    pg_conn_mark(&s->conn);
    rc = rc ? rc : pg_reqq_push(s, 'P', action, st, named);
    if (rc == 0)
        pg_server_stmts_set_pending(&s->stmts, st, s->req_seq);
    return rc;
}

/* Checks the part of a Parse body after the name: query NUL, int16 n, n int32 type oids. */
static bool parse_rest_ok(const uint8_t *rest, size_t len)
{
    pg_reader r = pg_reader_make(rest, len);
    pg_read_str(&r, NULL);
    uint16_t n = pg_read_u16(&r);
    return !r.err && r.len - r.pos == (size_t)n * 4;
}

/* Sends Parse("") of st (the client's own Parse when action is FORWARD, else injected). */
static int send_unnamed_parse(pg_server *s, pg_stmt *st, pg_req_action action)
{
    pg_gateway *gw = s->conn.gw;
    gw_buf *out = &s->conn.out;
    size_t m;
    int rc = pg_msg_begin(out, &gw->bufs, 'P', &m);
    rc = rc ? rc : pg_msg_put(out, &gw->bufs, "", 1);
    rc = rc ? rc : pg_msg_put(out, &gw->bufs, st->body, st->body_len);
    pg_msg_finish(out, m, rc);
    pg_conn_mark(&s->conn);
    rc = rc ? rc : pg_reqq_push(s, 'P', action, st, false);
    if (rc)
        return rc;
    s->q.items[(s->q.head + s->q.count - 1) % s->q.cap].unnamed = true;
    pg_relay_set_unnamed(&s->unnamed, st, gw);
    s->unnamed_unknown = false;
    s->unnamed_seq = s->req_seq;
    return 0;
}

/* Before a Bind or Describe of the unnamed statement: make the server's unnamed statement the
 * client's (a Parse), or none at all (a Close) when the client has none. 1: wait (the Parse it
 * would rely on is unanswered and a Sync lies between). */
static int ensure_unnamed(pg_client *c, pg_server *s)
{
    pg_gateway *gw = c->conn.gw;
    if (!s->unnamed_unknown && s->unnamed == c->unnamed) {
        if (s->unnamed_seq && s->unnamed_seq < s->last_sync_seq)
            return 1;
        return 0;
    }
    if (c->unnamed)
        return send_unnamed_parse(s, c->unnamed, PG_REQ_SKIP);
    gw_buf *out = &s->conn.out;
    size_t m;
    int rc = pg_msg_begin(out, &gw->bufs, 'C', &m);
    rc = rc ? rc : pg_msg_put(out, &gw->bufs, "S", 2);
    pg_msg_finish(out, m, rc);
    pg_conn_mark(&s->conn);
    rc = rc ? rc : pg_reqq_push(s, 'C', PG_REQ_SKIP, NULL, false);
    server_unnamed_none(s);
    return rc;
}

static int relay_parse(pg_client *c, const uint8_t *msg, size_t total)
{
    pg_gateway *gw = c->conn.gw;
    pg_server *s = c->server;
    pg_reader r = pg_reader_make(msg + 5, total - 5);
    const char *name = pg_read_str(&r, NULL);
    const uint8_t *rest = msg + 5 + r.pos;
    size_t rest_len = total - 5 - r.pos;
    if (r.err || !parse_rest_ok(rest, rest_len)) {
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "malformed Parse message");
        return -1;
    }
    pg_stmt *st = pg_stmt_intern(&gw->stmts, rest, rest_len);
    if (!st)
        return -ENOMEM;
    if (!*name) {
        int rc = send_unnamed_parse(s, st, PG_REQ_FORWARD);
        if (rc == 0)
            pg_relay_set_unnamed(&c->unnamed, st, gw);
        pg_stmt_unref(&gw->stmts, st);
        return rc;
    }
    /* Bind the name only once the Parse goes out: a stalled Parse is retried whole. */
    int rc = ensure_prepared(s, st, PG_REQ_FORWARD, true);
    if (rc == 0)
        rc = pg_client_stmts_bind(&c->stmts, &gw->stmts, name, st);
    pg_stmt_unref(&gw->stmts, st);
    return rc;
}

/* Executing a named statement whose text leaves untracked session state pins the client (its
 * Parse may have been answered by Sluice without reaching any server). */
static void pin_for_stmt(pg_client *c, pg_stmt *st)
{
    if (c->pinned || c->pool->mode != CFG_POOL_TRANSACTION)
        return;
    const char *text = (const char *)st->body;
    size_t len = strnlen(text, st->body_len);
    if (!st->sql_scanned) {
        st->sql_flags = pg_sql_scan(text, len, NULL, NULL);
        st->sql_scanned = true;
    }
    if (st->sql_flags & ~(unsigned)PG_SQL_OTHER) {
        const char *why = pg_pin_reason(c->pool, text, len, NULL);
        if (why)
            pg_pin(c, why);
    }
}

/* Bind and Describe('S') name a statement: point them at the server-side name, preparing the
 * statement on this server first when it has not seen it. */
static int relay_bind(pg_client *c, const uint8_t *msg, size_t total)
{
    pg_gateway *gw = c->conn.gw;
    pg_server *s = c->server;
    pg_reader r = pg_reader_make(msg + 5, total - 5);
    size_t plen;
    const char *portal = pg_read_str(&r, &plen);
    const char *name = pg_read_str(&r, NULL);
    if (r.err) {
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "malformed Bind message");
        return -1;
    }
    pg_stmt *st = *name ? pg_client_stmts_find(&c->stmts, name) : NULL;
    if (!st) {
        int rc = *name ? 0 : ensure_unnamed(c, s);
        if (rc)
            return rc;
        if (append(s, msg, total) != 0)
            return -ENOMEM;
        return pg_reqq_push(s, 'B', PG_REQ_FORWARD, NULL, false);
    }
    int rc = ensure_prepared(s, st, PG_REQ_SKIP, false);
    if (rc)
        return rc;
    pin_for_stmt(c, st);
    gw_buf *out = &s->conn.out;
    size_t m;
    rc = pg_msg_begin(out, &gw->bufs, 'B', &m);
    rc = rc ? rc : pg_msg_put(out, &gw->bufs, portal, plen + 1);
    rc = rc ? rc : pg_msg_put_str(out, &gw->bufs, st->name);
    rc = rc ? rc : pg_msg_put(out, &gw->bufs, msg + 5 + r.pos, total - 5 - r.pos);
    pg_msg_finish(out, m, rc);
    pg_conn_mark(&s->conn);
    return rc ? rc : pg_reqq_push(s, 'B', PG_REQ_FORWARD, NULL, false);
}

static int relay_describe_close(pg_client *c, uint8_t t, const uint8_t *msg, size_t total)
{
    pg_gateway *gw = c->conn.gw;
    pg_server *s = c->server;
    pg_reader r = pg_reader_make(msg + 5, total - 5);
    uint8_t kind = pg_read_u8(&r);
    const char *name = pg_read_str(&r, NULL);
    if (r.err || r.pos != r.len || (kind != 'S' && kind != 'P')) {
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "malformed %s message",
                        t == 'D' ? "Describe" : "Close");
        return -1;
    }
    if (kind == 'S' && *name) {
        if (t == 'C') {
            /* Other clients may share the server-side statement: only the name goes. */
            pg_client_stmts_unbind(&c->stmts, &gw->stmts, name);
            return pg_reqq_push(s, 'C', PG_REQ_FAKE, NULL, false);
        }
        pg_stmt *st = pg_client_stmts_find(&c->stmts, name);
        if (st) {
            int rc = ensure_prepared(s, st, PG_REQ_SKIP, false);
            if (rc)
                return rc;
            gw_buf *out = &s->conn.out;
            size_t m;
            rc = pg_msg_begin(out, &gw->bufs, 'D', &m);
            rc = rc ? rc : pg_msg_put(out, &gw->bufs, "S", 1);
            rc = rc ? rc : pg_msg_put_str(out, &gw->bufs, st->name);
            pg_msg_finish(out, m, rc);
            pg_conn_mark(&s->conn);
            return rc ? rc : pg_reqq_push(s, 'D', PG_REQ_FORWARD, NULL, false);
        }
    } else if (kind == 'S') {
        if (t == 'D') {
            int rc = ensure_unnamed(c, s);
            if (rc)
                return rc;
        } else {
            pg_relay_set_unnamed(&c->unnamed, NULL, gw);
            server_unnamed_none(s);
        }
    }
    if (append(s, msg, total) != 0)
        return -ENOMEM;
    return pg_reqq_push(s, t, PG_REQ_FORWARD, NULL, false);
}

int pg_relay_parse_local(pg_client *c, const uint8_t *msg, size_t total)
{
    pg_gateway *gw = c->conn.gw;
    pg_reader r = pg_reader_make(msg + 5, total - 5);
    const char *name = pg_read_str(&r, NULL);
    const uint8_t *rest = msg + 5 + r.pos;
    size_t rest_len = total - 5 - r.pos;
    if (r.err || !*name || !parse_rest_ok(rest, rest_len))
        return 0;
    pg_stmt *st = pg_stmt_lookup(&gw->stmts, rest, rest_len);
    if (!st || st->validated_in != c->pool)
        return 0;
    if (pg_client_stmts_bind(&c->stmts, &gw->stmts, name, st) != 0 ||
        pg_build_empty(&c->conn.out, &gw->bufs, '1') != 0)
        return -1;
    pg_conn_mark(&c->conn);
    return 1;
}

int pg_relay_deallocate(pg_client *c, const uint8_t *msg, size_t total)
{
    pg_gateway *gw = c->conn.gw;
    char name[256];
    if (!pg_sql_deallocate_name((const char *)msg + 5, name, sizeof name) ||
        !pg_client_stmts_unbind(&c->stmts, &gw->stmts, name))
        return 0;
    pg_relay_set_unnamed(&c->unnamed, NULL, gw); /* as any simple query does */
    pg_server *s = c->server;
    if (s)
        return pg_reqq_push(s, 'Q', PG_REQ_FAKE, NULL, false) == 0 ? 1 : -1;
    gw_buf *out = &c->conn.out;
    if (build_tag(out, &gw->bufs, "DEALLOCATE") != 0 || pg_build_ready(out, &gw->bufs, 'I') != 0)
        return -1;
    pg_conn_mark(&c->conn);
    return 1;
}

/* The SQL text of a Query or Parse (up to its NUL, the NUL excluded); false when there is
 * none (a malformed Parse, which relay_parse refuses). */
static bool query_text(uint8_t t, const uint8_t *msg, size_t total, const char **text, size_t *len)
{
    const char *p = (const char *)msg + 5;
    size_t n = total - 5;
    if (t == 'P') {
        const char *name_end = memchr(p, 0, n);
        if (!name_end)
            return false;
        n -= (size_t)(name_end + 1 - p);
        p = name_end + 1;
    }
    const char *end = memchr(p, 0, n);
    if (!end)
        return false;
    *text = p;
    *len = (size_t)(end - p);
    return true;
}

int pg_relay_idle_local(pg_client *c, uint8_t t, const uint8_t *msg, size_t total)
{
    if (t == 'Q' && c->pool->mode == CFG_POOL_TRANSACTION) {
        int rc = pg_listen_query(c, (const char *)msg + 5, total - 6);
        if (rc != 0)
            return rc;
    }
    if ((t != 'P' && t != 'Q') || !pg_relay_tracks_stmts(c))
        return 0;
    int local = t == 'P' ? pg_relay_parse_local(c, msg, total) : pg_relay_deallocate(c, msg, total);
    if (local < 0) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return -1;
    }
    return local;
}

int pg_server_params_reset(pg_server *s)
{
    s->synced = false;
    return pg_params_copy(&s->params, &s->pool->defaults);
}

/* Before a Query or Parse goes out. A query that may take parameters back to the server's
 * defaults is noted (see reset_possible). In transaction mode, a statement that leaves
 * untracked session state pins the client, and one that resets the whole session leaves the
 * server at its connection defaults. */
static int check_query(pg_client *c, pg_server *s, uint8_t t, const uint8_t *msg, size_t total)
{
    const char *text;
    size_t len;
    if (!query_text(t, msg, total, &text, &len))
        return 0;
    if (pg_sql_may_reset(text, len))
        s->reset_possible = true;
    if (c->pool->mode != CFG_POOL_TRANSACTION || c->pinned)
        return 0;
    unsigned flags;
    const char *why = pg_pin_reason(c->pool, text, len, &flags);
    if (why)
        pg_pin(c, why);
    if (flags & PG_SQL_RESET_ALL) {
        s->resync = true;
        return pg_server_params_reset(s);
    }
    return 0;
}

bool pg_relay_needs_whole(const pg_client *c, uint8_t t)
{
    if (t == 'S' || t == 'H' || t == 'E' || t == 'Q')
        return true;
    return pg_relay_tracks_stmts(c) && (t == 'P' || t == 'B' || t == 'D' || t == 'C');
}

int pg_relay_client_msg(pg_client *c, uint8_t t, const uint8_t *msg, size_t total)
{
    pg_server *s = c->server;
    int rc;
    gw_assert(s != NULL);
    if ((t == 'S' || t == 'H') && total != 5) {
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "invalid %s message length",
                        t == 'S' ? "Sync" : "Flush");
        return -1;
    }
    if (t == 'Q' && msg[total - 1] != 0) {
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "invalid string in Query message");
        return -1;
    }
    bool tracked = pg_relay_tracks_stmts(c);
    /* A fast-path FunctionCall names its function by OID: Sluice cannot tell set_config or
     * pg_advisory_lock from anything else there. */
    if (t == 'F' && c->pool->mode == CFG_POOL_TRANSACTION)
        pg_pin(c, "a fast-path function call");
    if ((t == 'Q' || t == 'P') && check_query(c, s, t, msg, total) != 0) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return -1;
    }
    if (tracked && t == 'Q') {
        rc = pg_relay_deallocate(c, msg, total);
        if (rc != 0) {
            if (rc < 0) {
                pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
                return -1;
            }
            return pg_relay_drain_fakes(s);
        }
        pg_relay_set_unnamed(&c->unnamed, NULL, c->conn.gw);
    }
    if (tracked && t == 'P')
        rc = relay_parse(c, msg, total);
    else if (tracked && t == 'B')
        rc = relay_bind(c, msg, total);
    else if (tracked && (t == 'D' || t == 'C'))
        rc = relay_describe_close(c, t, msg, total);
    else {
        rc = append(s, msg, total);
        if (rc == 0 && strchr("QFPBDECS", t))
            rc = pg_reqq_push(s, t, PG_REQ_FORWARD, NULL, false);
    }
    if (pg_conn_closing(&c->conn))
        return -1;
    if (rc == 1) {
        c->stalled = true;
        return 1;
    }
    if (rc != 0) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return -1;
    }
    return pg_relay_drain_fakes(s);
}

/* ---- session parameters ---- */

uint64_t pg_params_fingerprint(const pg_params *ps)
{
    return gw_hash_bytes(ps->data ? ps->data : "", ps->len);
}

/* Sends one statement Sluice injects (its results are consumed). */
static int inject(pg_server *s, gw_buf *sql)
{
    gw_bufpool *bufs = &s->conn.gw->bufs;
    int rc = gw_buf_append(sql, bufs, "", 1);
    rc = rc ? rc : pg_build_query(&s->conn.out, bufs, (const char *)sql->data);
    rc = rc ? rc : pg_reqq_push(s, 'Q', PG_REQ_SKIP, NULL, false);
    sql->len = 0;
    return rc;
}

/* The value client c wants for k on its server: its own, else the pool's default; NULL when it
 * has none (the server should not carry a value another client set). */
static const char *wanted(const pg_server *s, const pg_client *c, const char *k)
{
    const char *want = pg_params_get(&c->params, k);
    return want ? want : pg_params_get(&s->pool->defaults, k);
}

int pg_relay_sync_params(pg_server *s, pg_client *c)
{
    pg_gateway *gw = s->conn.gw;
    /* The common case: the server last matched a client with the same settings. */
    if (s->synced && s->synced_fp == c->params_fp)
        return 0;
    s->synced = true;
    s->synced_fp = c->params_fp;
    s->resync = false;
    /* Every parameter the server carries or the client wants is compared, however many there
     * are: a value the previous client chose must never reach this one. Names to change are
     * collected first, because changing s->params rebuilds its blob. */
    gw_buf names = {0}, sql = {0};
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        const pg_params *src = pass == 0 ? &s->params : &c->params;
        for (const char *k = pg_params_first(src); k && rc == 0; k = pg_params_next(src, k)) {
            if (pass == 1 && pg_params_get(&s->params, k))
                continue;
            if (!pg_param_settable(k) || !pg_param_name_ok(k))
                continue;
            const char *want = wanted(s, c, k);
            const char *have = pg_params_get(&s->params, k);
            if (want && have && strcmp(want, have) == 0)
                continue;
            if (!want && !have)
                continue;
            if (want) {
                /* set_config takes the value as the startup packet gives it: SET would quote
                 * a list such as search_path=a,b into one element. */
                rc = gw_buf_append(&sql, &gw->bufs, "SELECT pg_catalog.set_config(", 29);
                rc = rc ? rc : pg_quote_literal(&sql, &gw->bufs, k);
                rc = rc ? rc : gw_buf_append(&sql, &gw->bufs, ", ", 2);
                rc = rc ? rc : pg_quote_literal(&sql, &gw->bufs, want);
                rc = rc ? rc : gw_buf_append(&sql, &gw->bufs, ", false)", 8);
            } else {
                /* Set by an earlier client, not reported by the server, unknown to this one. */
                rc = gw_buf_append(&sql, &gw->bufs, "RESET ", 6);
                rc = rc ? rc : gw_buf_append(&sql, &gw->bufs, k, strlen(k));
            }
            rc = rc ? rc : inject(s, &sql);
            rc = rc ? rc : gw_buf_append(&names, &gw->bufs, k, strlen(k) + 1);
        }
    }
    /* Recorded now: the server reports only GUC_REPORT parameters back. */
    for (size_t off = 0; rc == 0 && off < names.len;) {
        const char *k = (const char *)names.data + off;
        const char *want = wanted(s, c, k);
        if (want)
            rc = pg_params_set(&s->params, k, want);
        else
            pg_params_del(&s->params, k);
        off += strlen(k) + 1;
    }
    if (names.len)
        pg_conn_mark(&s->conn);
    gw_buf_release(&sql, &gw->bufs);
    gw_buf_release(&names, &gw->bufs);
    return rc;
}

/* ---- server to client ---- */

static bool head_is_skip_query(pg_server *s)
{
    pg_req *r = q_head(s);
    return r && r->action == PG_REQ_SKIP && r->type == 'Q';
}

int pg_relay_server_header(pg_server *s, uint8_t t, bool *drop, bool *whole)
{
    if (t == 'R' || t == 'K' || t == 'v')
        return -1; /* login messages after login: the stream is out of sync */
    /* Messages that change state or pop the queue are handled whole (they are small);
     * row data, copy data and notices stream through. */
    *whole = strchr("123nsICZETSA", t) != NULL;
    *drop = !s->client || head_is_skip_query(s);
    return 0;
}

static bool tag_is(const uint8_t *body, size_t len, const char *tag)
{
    size_t n = strlen(tag);
    return len >= n + 1 && memcmp(body, tag, n) == 0 && body[n] == 0;
}

/* The value a parameter reported during a possible reset really has for client c: its startup
 * value when the server went back to its own default where c started with another value;
 * NULL when the report stands as it is. */
static const char *client_reset_value(pg_server *s, pg_client *c, const char *k, const char *v)
{
    const char *mine = pg_params_get(&c->startup, k);
    const char *base = pg_params_get(&s->pool->defaults, k);
    if (!mine || !base || strcmp(v, base) != 0 || strcmp(mine, v) == 0 || !pg_param_settable(k))
        return NULL;
    return mine;
}

int pg_relay_server_msg(pg_server *s, uint8_t t, const uint8_t *msg, size_t total)
{
    pg_gateway *gw = s->conn.gw;
    gw_ctx *ctx = gw->ctx;
    const uint8_t *body = msg + 5;
    size_t len = total - 5;
    pg_req *head = q_head(s);
    bool skipq = head_is_skip_query(s);
    bool fwd = s->client && !skipq;
    switch (t) {
    case '1':
    case '3':
        if (head && head->type == (t == '1' ? 'P' : 'C')) {
            fwd = fwd && head->action == PG_REQ_FORWARD;
            if (t == '1' && head->unnamed) {
                if (s->unnamed == head->stmt)
                    s->unnamed_seq = 0;
            } else if (t == '1' && head->stmt) {
                head->stmt->validated_in = s->pool;
                pg_server_stmts_confirm(&s->stmts, head->stmt);
            }
            q_pop(s);
        }
        break;
    case '2':
        if (head && head->type == 'B')
            q_pop(s);
        break;
    case 'n':
    case 'T':
        if (head && head->type == 'D')
            q_pop(s);
        break;
    case 's':
    case 'I':
        if (head && head->type == 'E')
            q_pop(s);
        break;
    case 'C':
        if (tag_is(body, len, "DISCARD ALL") || tag_is(body, len, "DEALLOCATE ALL")) {
            pg_server_stmts_clear(&s->stmts, &gw->stmts);
            if (fwd)
                pg_client_stmts_clear(&s->client->stmts, &gw->stmts);
        }
        if (head && head->type == 'E')
            q_pop(s);
        break;
    case 'E':
        if (skipq) {
            const char *m = pg_error_field(body, len, 'M');
            gw_warn(ctx, "server %u: a query Sluice sent failed: %s", s->id, m ? m : "?");
            if (s->state == PG_SV_RESETTING) {
                /* Its session may still hold the last client's state. */
                pg_server_close(s, PG_END_RESET_FAILED,
                                "the reset of the server connection failed");
                return -1;
            }
        }
        if (head && strchr("PBDEC", head->type))
            error_pop(s);
        break;
    case 'A':
        /* Only a pinned client (or one in session mode) can have LISTENed on this server;
         * anyone else linked to it now must not see another session's notifications. */
        fwd = fwd && (s->client->pinned || s->pool->mode != CFG_POOL_TRANSACTION);
        break;
    case 'Z':
        if (len != 1) {
            pg_server_close(s, PG_END_PROTOCOL, "malformed ReadyForQuery");
            return -1;
        }
        s->tx = (char)body[0];
        if (head && (head->type == 'S' || head->type == 'Q' || head->type == 'F'))
            q_pop(s);
        break;
    case 'S': {
        pg_reader r = pg_reader_make(body, len);
        const char *k = pg_read_str(&r, NULL);
        const char *v = pg_read_str(&r, NULL);
        if (r.err)
            break;
        pg_params_set(&s->params, k, v);
        pg_client *c = s->client;
        if (!c) {
            s->synced = false;
            break;
        }
        const char *mine = s->reset_possible ? client_reset_value(s, c, k, v) : NULL;
        if (mine) {
            /* The client reset k: to its startup value, as on a server of its own. */
            pg_params_set(&c->params, k, mine);
            s->synced = false;
            s->resync = true;
            if (fwd && pg_build_param_status(&c->conn.out, &gw->bufs, k, mine) != 0) {
                pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
                return -1;
            }
            fwd = false;
            pg_conn_mark(&c->conn);
            c->params_fp = pg_params_fingerprint(&c->params);
        } else {
            /* Server and client changed alike: the server still matches the client. */
            pg_params_set(&c->params, k, v);
            c->params_fp = pg_params_fingerprint(&c->params);
            s->synced_fp = c->params_fp;
        }
        break;
    }
    default:
        break;
    }
    if (fwd) {
        if (gw_buf_append(&s->client->conn.out, &gw->bufs, msg, total) != 0) {
            pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
            return -1;
        }
        pg_conn_mark(&s->client->conn);
    }
    if (pg_relay_drain_fakes(s) != 0)
        return -1;
    if (t != 'Z')
        return 0;
    if (s->client && s->client->stalled) {
        s->client->stalled = false;
        pg_conn_mark_process(&s->client->conn);
    }
    uint64_t now = gw_now(ctx);
    if (s->q.count == 0) {
        s->reset_possible = false;
        /* A client that stays on this server gets its reset values SET again now. */
        if (s->resync && s->client && s->tx != 'E' &&
            (s->tx == 'T' || s->pool->mode != CFG_POOL_TRANSACTION || s->client->pinned)) {
            if (pg_relay_sync_params(s, s->client) != 0) {
                pg_server_close(s, PG_END_NO_MEMORY, "out of memory");
                return -1;
            }
        }
    }
    if (s->q.count == 0) {
        s->busy_since = 0;
        s->cancel_at = 0;
        s->idle_since = now;
        if (s->tx == 'I') {
            if (s->state == PG_SV_RESETTING)
                pg_pool_server_ready(s);
            else
                pg_pool_release_if_done(s);
        }
    } else {
        s->busy_since = now;
    }
    return 0;
}
