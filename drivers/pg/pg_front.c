/*
 * pg_front: frontend messages on their way from a client to its server (core): prepared
 * statements shared across servers (re-Parse on demand, Sluice-answered Parse and DEALLOCATE),
 * pins, and what an idle client's message needs.
 *
 * The unnamed statement needs care of its own in transaction mode: a client may Parse it in one
 * Sync segment and Bind it in the next, on another server or after another client replaced it.
 * Each client remembers the body of its unnamed statement and each server what its unnamed
 * statement holds; a Bind or Describe of it re-sends the Parse first when the two differ.
 */
#include <errno.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_relay.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_sql.h"
#include "drivers/pg/pg_wire.h"

bool pg_relay_tracks_stmts(const pg_client *c)
{
    const cfg *conf = pg_ctx(&c->conn)->cfg;
    return c->pool && c->pool->mode == CFG_POOL_TRANSACTION && conf->max_prepared_statements > 0;
}

static int append(pg_server *s, const void *data, size_t len)
{
    pg_conn_mark(&s->conn);
    return gw_buf_append(&s->conn.out, s->conn.gw->bufs, data, len);
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
        rc = pg_msg_begin(out, gw->bufs, 'C', &m);
        rc = rc ? rc : pg_msg_put(out, gw->bufs, "S", 1);
        rc = rc ? rc : pg_msg_put_str(out, gw->bufs, victim->name);
        pg_msg_finish(out, m, rc);
        /* The queue entry takes over the reference the server set held. */
        rc = rc ? rc : pg_reqq_push(s, 'C', PG_REQ_SKIP, victim, false);
        pg_stmt_unref(&gw->stmts, victim);
        if (rc)
            return rc;
    }
    rc = pg_msg_begin(out, gw->bufs, 'P', &m);
    rc = rc ? rc : pg_msg_put_str(out, gw->bufs, st->name);
    rc = rc ? rc : pg_msg_put(out, gw->bufs, st->body, st->body_len);
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
    int rc = pg_msg_begin(out, gw->bufs, 'P', &m);
    rc = rc ? rc : pg_msg_put(out, gw->bufs, "", 1);
    rc = rc ? rc : pg_msg_put(out, gw->bufs, st->body, st->body_len);
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
    int rc = pg_msg_begin(out, gw->bufs, 'C', &m);
    rc = rc ? rc : pg_msg_put(out, gw->bufs, "S", 2);
    pg_msg_finish(out, m, rc);
    pg_conn_mark(&s->conn);
    rc = rc ? rc : pg_reqq_push(s, 'C', PG_REQ_SKIP, NULL, false);
    pg_relay_unnamed_none(s);
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
    rc = pg_msg_begin(out, gw->bufs, 'B', &m);
    rc = rc ? rc : pg_msg_put(out, gw->bufs, portal, plen + 1);
    rc = rc ? rc : pg_msg_put_str(out, gw->bufs, st->name);
    rc = rc ? rc : pg_msg_put(out, gw->bufs, msg + 5 + r.pos, total - 5 - r.pos);
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
            rc = pg_msg_begin(out, gw->bufs, 'D', &m);
            rc = rc ? rc : pg_msg_put(out, gw->bufs, "S", 1);
            rc = rc ? rc : pg_msg_put_str(out, gw->bufs, st->name);
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
            pg_relay_unnamed_none(s);
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
        pg_build_empty(&c->conn.out, gw->bufs, '1') != 0)
        return -1;
    pg_conn_mark(&c->conn);
    return 1;
}

int pg_relay_deallocate(pg_client *c, const uint8_t *msg, size_t total)
{
    pg_gateway *gw = c->conn.gw;
    char name[256];
    /* Only for a Query that is not plain (text_plain), so its text ends at its last byte. */
    if (!pg_sql_deallocate_name((const char *)msg + 5, name, sizeof name) ||
        !pg_client_stmts_unbind(&c->stmts, &gw->stmts, name))
        return 0;
    pg_relay_set_unnamed(&c->unnamed, NULL, gw); /* as any simple query does */
    pg_server *s = c->server;
    if (s)
        return pg_reqq_push(s, 'Q', PG_REQ_FAKE, NULL, false) == 0 ? 1 : -1;
    gw_buf *out = &c->conn.out;
    if (pg_relay_build_tag(out, gw->bufs, "DEALLOCATE") != 0 ||
        pg_build_ready(out, gw->bufs, 'I') != 0)
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

/* Whether a Query's or Parse's text is plain (pg_sql_plain): nothing in it that pinning,
 * parameter tracking, LISTEN or DEALLOCATE acts on. False for a malformed Parse. A Query with a
 * NUL inside its text is plain whatever it spells: the server refuses the whole message
 * (08P01) and runs none of it, so nothing of it may be answered or acted on here. */
static bool text_plain(uint8_t t, const uint8_t *msg, size_t total)
{
    const char *text;
    size_t len;
    if (!query_text(t, msg, total, &text, &len))
        return false;
    return (t == 'Q' && len != total - 6) || pg_sql_plain(text, len);
}

int pg_relay_idle_local(pg_client *c, uint8_t t, const uint8_t *msg, size_t total, int *plain)
{
    /* A Query is always whole here (a Parse may not be). A plain one leads with no LISTEN,
     * UNLISTEN or DEALLOCATE (pg_sql_plain): nothing to answer here. */
    *plain = t == 'Q' ? text_plain(t, msg, total) : -1;
    if (*plain == 1)
        return 0;
    if (t == 'Q' && c->pool->mode == CFG_POOL_TRANSACTION) {
        int rc = pg_notify_query(c, (const char *)msg + 5, total - 6);
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
static int check_query(pg_client *c, pg_server *s, uint8_t t, const uint8_t *msg, size_t total,
                       bool plain)
{
    const char *text;
    size_t len;
    /* Most texts are plain: a pass over the bytes instead of scans, lexing and matching (nor
     * can a plain text be a DEALLOCATE: see pg_relay_client_msg). */
    if (plain || !query_text(t, msg, total, &text, &len))
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

/* The messages the server answers in order, each with its entry in the request queue. */
static bool answered(uint8_t t)
{
    switch (t) {
    case 'Q':
    case 'F':
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
    case 'S':
        return true;
    default:
        return false;
    }
}

bool pg_relay_needs_whole(const pg_client *c, uint8_t t)
{
    if (t == 'S' || t == 'H' || t == 'E' || t == 'Q')
        return true;
    return pg_relay_tracks_stmts(c) && (t == 'P' || t == 'B' || t == 'D' || t == 'C');
}

int pg_relay_client_msg(pg_client *c, uint8_t t, const uint8_t *msg, size_t total, int plain)
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
    pg_copy_queue queue;
    const char *copy_why = pg_copy_client_msg(s, t, &queue);
    if (copy_why) {
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "%s", copy_why);
        return -1;
    }
    bool tracked = pg_relay_tracks_stmts(c);
    /* A fast-path FunctionCall names its function by OID: Sluice cannot tell set_config or
     * pg_advisory_lock from anything else there. */
    if (t == 'F' && c->pool->mode == CFG_POOL_TRANSACTION)
        pg_pin(c, "a fast-path function call");
    if ((t == 'Q' || t == 'P') && plain < 0)
        plain = text_plain(t, msg, total);
    if ((t == 'Q' || t == 'P') && check_query(c, s, t, msg, total, plain == 1) != 0) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return -1;
    }
    /* The server refuses a Query with a NUL inside its text (08P01) before it runs it, and so
     * before it drops the unnamed statement as a simple query does. */
    bool refused = tracked && t == 'Q' && memchr(msg + 5, 0, total - 6) != NULL;
    if (tracked && t == 'Q') {
        rc = plain == 1 ? 0 : pg_relay_deallocate(c, msg, total);
        if (rc != 0) {
            if (rc < 0) {
                pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
                return -1;
            }
            return pg_relay_drain_fakes(s);
        }
        if (!refused)
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
        if (rc == 0 && queue == PG_COPY_MARKER)
            rc = pg_reqq_push(s, t, PG_REQ_SILENT, NULL, false);
        else if (rc == 0 && queue == PG_COPY_USUAL && answered(t))
            rc = pg_reqq_push(s, t, PG_REQ_FORWARD, NULL, false);
        if (refused)
            pg_relay_unnamed_unknown(s); /* not none, as pg_reqq_push took it to be */
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
