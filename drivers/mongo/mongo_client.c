/*
 * mongo_client: a MongoDB client connection. Frames messages by their length, answers the
 * handshake itself (mongo_hello.c), refuses what it cannot relay, and forwards every other OP_MSG
 * unchanged (but for its requestID, and maxTimeMS when query_timeout asks for it) over a pooled
 * backend connection. One request at a time: the client is not read while a request is in hand
 * or while much is still unsent to it, so it holds at most one message of memory.
 *
 * Core (mongo_core.h): no I/O here; bytes come in through mongo_core_client_read and go out
 * through mongo_shell_client_write.
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"

/* What appending maxTimeMS takes: an int64 element named "maxTimeMS" (1 + 10 + 8 bytes). */
#define MONGO_MAX_TIME_ROOM 19

static void process_input(mongo_client *c);

/* The only place c->state changes; it keeps front->clients, front->waiters and n_clients in
 * step with the state, and aborts on a change that cannot happen. */
static void client_set_state(mongo_client *c, mongo_client_state next)
{
    mongo_front *f = c->front;
    mongo_client_state prev = c->state;
    switch (next) {
    case MONGO_CL_NEW:
        mongo_assert(!"a client never becomes new again");
        break;
    case MONGO_CL_IDLE:
        mongo_assert(prev == MONGO_CL_NEW || prev == MONGO_CL_WAITING || prev == MONGO_CL_ACTIVE);
        break;
    case MONGO_CL_WAITING:
        mongo_assert(prev == MONGO_CL_IDLE);
        break;
    case MONGO_CL_ACTIVE:
        mongo_assert(prev == MONGO_CL_WAITING);
        break;
    case MONGO_CL_DRAINING:
        mongo_assert(prev == MONGO_CL_IDLE);
        break;
    case MONGO_CL_CLOSING:
        mongo_assert(prev != MONGO_CL_NEW && prev != MONGO_CL_CLOSING);
        break;
    }
    if (prev == MONGO_CL_WAITING)
        gw_list_remove(&c->wait_node);
#if GW_STATS_ON
    if (next == MONGO_CL_WAITING) {
        c->wait_start_us = gw_stats_now_us();
    } else if (prev == MONGO_CL_WAITING) {
        uint64_t waited = gw_stats_now_us() - c->wait_start_us;
        GW_STAT_ADD(f->stats.wait_time_us, waited);
        GW_STAT_HIST(&f->stats.wait_hist, waited);
    }
#endif
    if (prev == MONGO_CL_NEW) {
        gw_list_push_tail(&f->clients, &c->node);
        f->n_clients++;
    }
    if (next == MONGO_CL_WAITING)
        gw_list_push_tail(&f->waiters, &c->wait_node);
    if (next == MONGO_CL_CLOSING) {
        gw_list_remove(&c->node);
        f->n_clients--;
    }
    c->state = next;
    c->since = mongo_shell_now(f);
}

void mongo_core_client_closed(mongo_client *c)
{
    mongo_assert(c->state == MONGO_CL_CLOSING);
    mongo__buf_put(c->front, c->in, c->in_cap);
    mongo__buf_put(c->front, c->req, c->req_cap);
    mongo__auth_free(c);
    free(c);
}

void mongo__client_close(mongo_client *c, mongo_end why, const char *detail)
{
    if (c->state == MONGO_CL_CLOSING)
        return;
    char msg[512];
    snprintf(msg, sizeof msg, "closing because %s%s%s", mongo_end_str(why), detail ? ": " : "",
             detail ? detail : "");
    mongo_shell_client_note(c, MONGO_NOTE_END, mongo_end_str(why), msg);
    if (c->backend) {
        /* The reply will arrive for nobody; the connection goes back to the pool then. */
        c->backend->client = NULL;
        c->backend = NULL;
    }
    client_set_state(c, MONGO_CL_CLOSING);
    mongo__sessions_client_gone(c);
    mongo_shell_client_close(c);
}

/* ---- writing to the client ---- */

static void update_reading(mongo_client *c);
static void drop_request(mongo_client *c);

void mongo_core_client_written(mongo_client *c, uint8_t *msg, size_t len, size_t cap,
                               const char *error)
{
    c->pending_writes -= len;
    mongo__buf_put(c->front, msg, cap);
    if (c->state == MONGO_CL_CLOSING)
        return;
    if (error)
        mongo__client_close(c, MONGO_END_IO, error);
    else if (c->state == MONGO_CL_DRAINING && c->pending_writes == 0)
        mongo__client_close(c, MONGO_END_PROTOCOL, "closed after its error reply");
    else
        process_input(c); /* it may have been held back by unsent replies */
}

/* Queues a whole message (takes ownership of msg, a buffer of cap bytes). With close_after, the
 * connection closes once everything queued is written. */
static void send_msg(mongo_client *c, uint8_t *msg, size_t len, size_t cap, bool close_after)
{
    if (!msg) {
        mongo__client_close(c, MONGO_END_NOMEM, NULL);
        return;
    }
    GW_STAT_ADD(c->front->stats.bytes_sent, len);
    int rc = mongo_shell_client_write(c, msg, len, cap);
    if (rc != 0) {
        mongo__client_close(c, MONGO_END_IO, mongo_shell_strerror(rc));
        return;
    }
    c->pending_writes += len;
    if (close_after) {
        drop_request(c);
        client_set_state(c, MONGO_CL_DRAINING);
        update_reading(c);
    }
}

/* Which errorLabels a failure of the request in hand carries, so drivers retry what is safe. */
static const char *failure_label(const mongo_client *c, bool network)
{
    if (strcmp(c->r.cmd, "commitTransaction") == 0)
        return "UnknownTransactionCommitResult";
    if (c->r.in_txn)
        return "TransientTransactionError";
    if (network && c->r.retryable)
        return "RetryableWriteError"; /* the server dedupes a retry by lsid + txnNumber */
    return NULL;
}

/* Sends doc as the reply to response_to (destroys doc). */
static void reply_doc(mongo_client *c, int32_t response_to, bson_t *doc, bool close_after)
{
    size_t len;
    uint8_t *m = mongo_build_msg(doc, mongo__next_id(c->front), response_to, c->r.checksum, &len);
    bson_destroy(doc);
    send_msg(c, m, len, len, close_after);
}

static void reply_error(mongo_client *c, int32_t response_to, int code, const char *code_name,
                        const char *errmsg, const char *label, bool close_after)
{
    char msg[512];
    snprintf(msg, sizeof msg, "pooler error %d %s: %s", code, code_name, errmsg);
    mongo_shell_client_note(c, MONGO_NOTE_ERROR, code_name, msg);
    bson_t doc;
#if GW_STATS_ON
    char code_text[16];
    int n = snprintf(code_text, sizeof code_text, "%d", code);
    GW_STAT_CODE(&c->front->stats.errors, code_text, (size_t)n);
#endif
    mongo_error_doc(&doc, code, code_name, errmsg, label);
    reply_doc(c, response_to, &doc, close_after);
}

/* An OP_REPLY error to a legacy OP_QUERY (drivers read $err there); the connection closes. */
static void reply_query_error(mongo_client *c, int32_t response_to, int code, const char *code_name,
                              const char *errmsg)
{
    bson_t doc;
    mongo_error_doc(&doc, code, code_name, errmsg, NULL);
    BSON_APPEND_UTF8(&doc, "$err", errmsg);
    size_t n;
    uint8_t *m = mongo_build_reply(&doc, mongo__next_id(c->front), response_to, &n);
    bson_destroy(&doc);
    send_msg(c, m, n, n, true);
}

/* ---- the request in hand ---- */

static void drop_request(mongo_client *c)
{
    mongo__buf_put(c->front, c->req, c->req_cap);
    c->req = NULL;
    c->req_len = c->req_cap = 0;
}

static void request_done(mongo_client *c)
{
    drop_request(c);
    client_set_state(c, MONGO_CL_IDLE);
    process_input(c);
}

void mongo__client_fail(mongo_client *c, int code, const char *code_name, const char *errmsg)
{
    mongo_assert(c->state == MONGO_CL_WAITING || c->state == MONGO_CL_ACTIVE);
    c->backend = NULL;
    reply_error(c, c->r.client_id, code, code_name, errmsg,
                failure_label(c, code == 6 || code == 262), false);
    if (c->state != MONGO_CL_CLOSING)
        request_done(c);
}

void mongo__client_backend_lost(mongo_client *c, const char *why)
{
    char msg[384];
    snprintf(msg, sizeof msg, "connection to the MongoDB server failed: %s", why);
    mongo__client_fail(c, 6, "HostUnreachable", msg);
}

void mongo__client_got_backend(mongo_client *c, mongo_backend *b)
{
    mongo_front *f = c->front;
    if (mongo__is_hello(c->r.cmd)) {
        /* The handshake only waited for the backend's limits. */
        mongo__pool_release(b);
        size_t len;
        uint8_t *m = mongo__hello_reply(c, c->req, c->req_len, &len);
        send_msg(c, m, len, len, false);
        if (c->state != MONGO_CL_CLOSING)
            request_done(c);
        return;
    }
    client_set_state(c, MONGO_CL_ACTIVE);
    GW_STAT_ADD(f->stats.server_assignments, 1);
    c->backend = b;
    b->client = c;
    b->busy_since = c->since;
    b->expect_id = mongo__next_id(f);
    b->awaiting_write = c->r.more_to_come;
    mongo__sessions_note_sent(c, b->host);
    uint8_t *req = c->req;
    size_t len = c->req_len, cap = c->req_cap;
    c->req = NULL; /* the write owns it now */
    c->req_len = c->req_cap = 0;
    mongo_rewrite_ids(req, len, b->expect_id, 0);
    int rc = mongo__backend_send(b, req, len, cap);
    if (rc != 0)
        mongo__backend_close(b, MONGO_END_IO, mongo_shell_strerror(rc));
}

void mongo__client_answer_hellos(mongo_front *f)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &f->waiters)
    {
        mongo_client *c = gw_container_of(it, mongo_client, wait_node);
        if (!mongo__is_hello(c->r.cmd))
            continue;
        size_t len;
        uint8_t *m = mongo__hello_reply(c, c->req, c->req_len, &len);
        send_msg(c, m, len, len, false);
        if (c->state != MONGO_CL_CLOSING)
            request_done(c);
    }
}

void mongo__client_sent(mongo_client *c)
{
    c->backend = NULL;
    request_done(c);
}

void mongo__client_got_reply(mongo_client *c, const char *host, uint8_t *msg, size_t len,
                             size_t cap)
{
    mongo_msg m;
    const char *why;
    bson_t body;
    if (mongo_header_read(msg).opcode == MONGO_OP_MSG && mongo_msg_scan(msg, len, &m, &why) == 0 &&
        bson_init_static(&body, m.body, m.body_len))
        mongo__sessions_note_reply(c, host, &body);
    mongo_rewrite_ids(msg, len, mongo__next_id(c->front), c->r.client_id);
    c->backend = NULL;
    mongo__count_reply(c);
    send_msg(c, msg, len, cap, false);
    if (c->state != MONGO_CL_CLOSING)
        request_done(c);
}

/* Commands that must not get a maxTimeMS added. */
static bool takes_max_time(const char *cmd)
{
    static const char *const no[] = {"getMore",
                                     "killCursors",
                                     "commitTransaction",
                                     "abortTransaction",
                                     "endSessions",
                                     "killSessions",
                                     "ping",
                                     "buildInfo",
                                     NULL};
    for (int i = 0; no[i]; i++)
        if (strcmp(cmd, no[i]) == 0)
            return false;
    return true;
}

/* Adds maxTimeMS to the body of the request in hand, in place: its buffer nearly always has
 * room (a pooled block holds a message of up to 64 kB); else the message moves to a buffer
 * with room. */
static int add_max_time(mongo_client *c, uint64_t ms)
{
    size_t n = mongo_msg_append_i64(c->req, c->req_len, c->req_cap, "maxTimeMS", (int64_t)ms);
    if (n == 0) {
        size_t cap = c->req_len + MONGO_MAX_TIME_ROOM;
        uint8_t *grown = malloc(cap);
        if (!grown)
            return -1;
        memcpy(grown, c->req, c->req_len);
        mongo__buf_put(c->front, c->req, c->req_cap);
        c->req = grown;
        c->req_cap = cap;
        n = mongo_msg_append_i64(c->req, c->req_len, c->req_cap, "maxTimeMS", (int64_t)ms);
        if (n == 0)
            return -1; /* past what a message's length can say */
    }
    c->req_len = n;
    return 0;
}

typedef enum msg_outcome {
    MSG_CLOSED,   /* the client is closing (after an error reply) */
    MSG_DONE,     /* answered here; the next message may follow */
    MSG_DISPATCH, /* c->req holds a request for a backend connection */
} msg_outcome;

/* Handles the whole message in c->req. */
static msg_outcome handle_message(mongo_client *c)
{
    mongo_front *f = c->front;
    mongo_header h = mongo_header_read(c->req);
    const char *why;
    char buf[192];
    memset(&c->r, 0, sizeof c->r);
    c->r.client_id = h.request_id;
    if (c->refusal) {
        mongo_info(f, "client %d refused: %s", c->conn_id, c->refusal);
        if (h.opcode == MONGO_OP_QUERY)
            reply_query_error(c, h.request_id, 13, "Unauthorized", c->refusal);
        else
            reply_error(c, h.request_id, 13, "Unauthorized", c->refusal, NULL, true);
        return MSG_CLOSED;
    }
    if (h.opcode == MONGO_OP_QUERY) {
        mongo_query q;
        int rc = mongo_query_parse(c->req, c->req_len, &q, &why);
        if (rc == 0 && q.command && mongo__is_hello(q.command)) {
            snprintf(c->r.cmd, sizeof c->r.cmd, "hello");
            return MSG_DISPATCH;
        }
        snprintf(buf, sizeof buf, "%s",
                 rc == 0 ? "OP_QUERY is only supported for the hello/isMaster handshake" : why);
        if (rc == MONGO_BSON_TOO_DEEP)
            reply_query_error(c, h.request_id, 15, "Overflow", buf);
        else
            reply_query_error(c, h.request_id, 352, "UnsupportedOpQueryCommand", buf);
        return MSG_CLOSED;
    }
    if (h.opcode != MONGO_OP_MSG) {
        snprintf(buf, sizeof buf, "opcode %d is not supported%s", h.opcode,
                 h.opcode == MONGO_OP_COMPRESSED ? " (compression was not negotiated)"
                                                 : " by this gateway; use OP_MSG");
        reply_error(c, h.request_id, 352, "UnsupportedOpQueryCommand", buf, NULL, true);
        return MSG_CLOSED;
    }
    mongo_msg m;
    /* Read the checksum flag first, so that even the error reply to a bad message carries one. */
    if (c->req_len > 20)
        c->r.checksum = (mongo_get_i32(c->req + 16) & MONGO_MSG_CHECKSUM) != 0;
    int rc = mongo_msg_parse(c->req, c->req_len, &m, &why);
    if (rc == MONGO_BSON_TOO_DEEP) {
        /* Well framed, so the connection can go on; as the server answers (code 15). */
        mongo_info(f, "client %d: %s", c->conn_id, why);
        reply_error(c, h.request_id, 15, "Overflow", why, NULL, false);
        return MSG_DONE;
    }
    if (rc != 0) {
        reply_error(c, h.request_id, 22, "InvalidBSON", why, NULL, true);
        return MSG_CLOSED;
    }
    if (m.flags & MONGO_MSG_EXHAUST) {
        reply_error(c, h.request_id, 2, "BadValue",
                    "exhaustAllowed is not supported by this gateway", NULL, false);
        return MSG_DONE;
    }
    snprintf(c->r.cmd, sizeof c->r.cmd, "%s", m.command);
    mongo__count_request(c, m.command);
    c->r.more_to_come = (m.flags & MONGO_MSG_MORE_TO_COME) != 0;
    if (mongo__is_hello(m.command))
        return MSG_DISPATCH;
    bson_t body;
    bson_init_static(&body, m.body, m.body_len);
    if (mongo__auth_is_command(m.command)) {
        /* Never forwarded: a login would change the state of a shared server connection.
         * Sluice logs in to the server itself, with the URI's credentials. */
        if (!c->need_auth) {
            reply_error(c, h.request_id, 18, "AuthenticationFailed",
                        "Sluice authenticates to the MongoDB server itself: connect to it "
                        "without credentials",
                        NULL, false);
            return MSG_DONE;
        }
        bson_t reply;
        bool close_after = mongo__auth_command(c, m.command, &body, &reply);
        reply_doc(c, h.request_id, &reply, close_after);
        return close_after ? MSG_CLOSED : MSG_DONE;
    }
    if (!mongo__auth_allows(c, m.command)) {
        snprintf(buf, sizeof buf, "command %s requires authentication", c->r.cmd);
        mongo_debug(f, "client %d: %s", c->conn_id, buf);
        if (!c->r.more_to_come)
            reply_error(c, h.request_id, 13, "Unauthorized", buf, NULL, false);
        return MSG_DONE;
    }
    if (c->need_auth && !c->authed && strcmp(m.command, "endSessions") == 0) {
        /* Answered here: a client that has not logged in has no sessions of its own, and must
         * not end anyone else's. */
        if (!c->r.more_to_come) {
            bson_t ok = BSON_INITIALIZER;
            BSON_APPEND_DOUBLE(&ok, "ok", 1.0);
            reply_doc(c, h.request_id, &ok, false);
        }
        return MSG_DONE;
    }
    mongo_refusal refusal;
    if (mongo__sessions_note_request(c, &body, &refusal) != 0) {
        mongo_debug(f, "client %d: %s refused: %s", c->conn_id, c->r.cmd, refusal.errmsg);
        /* A moreToCome request wants no reply: it is dropped. */
        if (!c->r.more_to_come)
            reply_error(c, h.request_id, refusal.code, refusal.code_name, refusal.errmsg, NULL,
                        false);
        return MSG_DONE;
    }
    bson_iter_t it;
    uint64_t qt = f->query_timeout_ms;
    if (qt && takes_max_time(m.command) && !bson_iter_init_find(&it, &body, "maxTimeMS")) {
        /* So the server stops the work itself when query_timeout passes. */
        if (add_max_time(c, qt) != 0) {
            mongo__client_close(c, MONGO_END_NOMEM, NULL);
            return MSG_CLOSED;
        }
    }
    return MSG_DISPATCH;
}

/* Moves the message of len bytes at the start of c->in into c->req: the buffer itself when it
 * holds nothing else (no copy, and an idle client then holds no buffer). */
static int take_message(mongo_client *c, size_t len)
{
    if (c->in_len == len) {
        c->req = c->in;
        c->req_cap = c->in_cap;
        c->in = NULL;
        c->in_len = c->in_cap = 0;
    } else {
        c->req = len <= MONGO_READ_CHUNK ? mongo__buf_get(c->front) : malloc(len);
        if (!c->req)
            return -1;
        c->req_cap = len <= MONGO_READ_CHUNK ? MONGO_READ_CHUNK : len;
        memcpy(c->req, c->in, len);
        memmove(c->in, c->in + len, c->in_len - len);
        c->in_len -= len;
    }
    c->req_len = len;
    return 0;
}

static void process_input(mongo_client *c)
{
    mongo_front *f = c->front;
    int32_t max = f->have_limits ? f->limits.max_message : MONGO_DEFAULT_MAX;
    while (c->state == MONGO_CL_IDLE && c->pending_writes <= MONGO_WRITE_HIGH && c->in_len >= 16) {
        /* Before a login nothing needs more: a stranger holds at most this much memory. */
        if (((c->need_auth && !c->authed) || c->refusal) && max > MONGO_PREAUTH_MAX)
            max = MONGO_PREAUTH_MAX;
        int32_t len = mongo_get_i32(c->in);
        if (len < MONGO_HEADER_LEN + 5 || len > max) {
            char buf[128];
            snprintf(buf, sizeof buf, "message length %d is out of bounds (%d..%d)", len,
                     MONGO_HEADER_LEN + 5, max);
            if (len > max)
                reply_error(c, mongo_get_i32(c->in + 4), 10334, "BSONObjectTooLarge", buf, NULL,
                            true);
            else
                reply_error(c, mongo_get_i32(c->in + 4), 22, "InvalidBSON", buf, NULL, true);
            return;
        }
        if (c->in_len < (size_t)len)
            break;
        if (take_message(c, (size_t)len) != 0) {
            mongo__client_close(c, MONGO_END_NOMEM, NULL);
            return;
        }
        msg_outcome out = handle_message(c);
        if (out == MSG_CLOSED)
            return;
        if (out == MSG_DONE) {
            drop_request(c);
            continue;
        }
        if (mongo__is_hello(c->r.cmd) && f->have_limits) {
            size_t n;
            uint8_t *m = mongo__hello_reply(c, c->req, c->req_len, &n);
            drop_request(c);
            send_msg(c, m, n, n, false);
            continue;
        }
        client_set_state(c, MONGO_CL_WAITING);
        mongo__pool_acquire(c); /* may complete at once and recurse into here */
        break;
    }
    if (c->state == MONGO_CL_CLOSING)
        return;
    if (c->gone && c->state == MONGO_CL_IDLE) {
        /* Its last complete request was answered; what is left can never complete. */
        mongo__client_close(c, c->gone_why, c->gone_detail);
        return;
    }
    if (c->in_len == 0 && c->in) {
        mongo__buf_put(f, c->in, c->in_cap);
        c->in = NULL;
        c->in_cap = 0;
    }
    update_reading(c);
}

/* ---- reading from the client ---- */

void mongo_core_client_read_buf(mongo_client *c, uint8_t **p, size_t *n)
{
    mongo__read_room(c->front, &c->in, c->in_len, &c->in_cap, p, n);
}

void mongo_core_client_read(mongo_client *c, size_t n)
{
    mongo_assert(c->in && n <= c->in_cap - c->in_len);
    c->in_len += n;
    GW_STAT_ADD(c->front->stats.bytes_recv, n);
    process_input(c);
}

void mongo_core_client_refuse(mongo_client *c, const char *errmsg)
{
    c->refusal = errmsg;
}

void mongo_core_client_failed(mongo_client *c, mongo_end why, const char *detail)
{
    if (c->state == MONGO_CL_WAITING || c->state == MONGO_CL_ACTIVE) {
        c->gone = true;
        c->gone_why = why;
        c->gone_detail = detail;
        update_reading(c);
        return;
    }
    mongo__client_close(c, why, detail);
}

/* Requests are handled one at a time. Reading stays on while one is under way, until the next
 * request's first bytes arrive (they wait in c->in, one read at most): a client that waits for
 * its reply is not switched off and on again, which cost two epoll_ctl per request. Nothing is
 * read while much is unsent to the client (MONGO_WRITE_HIGH), nor after its input ended. */
static void update_reading(mongo_client *c)
{
    bool busy = c->state == MONGO_CL_WAITING || c->state == MONGO_CL_ACTIVE;
    bool want = !c->gone && (c->state == MONGO_CL_IDLE || (busy && c->in_len == 0)) &&
                c->pending_writes <= MONGO_WRITE_HIGH;
    if (want == c->reading)
        return;
    int rc = mongo_shell_client_read(c, want);
    if (rc != 0) {
        mongo__client_close(c, MONGO_END_IO, mongo_shell_strerror(rc));
        return;
    }
    c->reading = want;
}

mongo_client *mongo_core_client_accepted(mongo_front *f, struct mongo_shell_conn *io)
{
    mongo_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->io = io;
    c->front = f;
    c->conn_id = ++f->next_conn_id;
    c->connect_us = gw_stats_now_us();
    c->need_auth = f->auth_type == CFG_AUTH_SCRAM;
    gw_list_init(&c->wait_node);
    gw_list_init(&c->cursors);
    gw_list_init(&c->txns);
    client_set_state(c, MONGO_CL_IDLE);
    char why[64] = "";
    if (f->n_clients > (uint32_t)f->max_clients)
        snprintf(why, sizeof why, "max_client_conn (%d) reached", f->max_clients);
    else if (mongo_shell_disabled(f))
        snprintf(why, sizeof why, "disabled by the admin (DISABLE)");
    if (why[0]) {
        /* MongoDB has no error before the handshake: the connection closes at once (drivers
         * report a network error), rather than after a timeout, holding nothing meanwhile. */
        f->refused++;
        uint64_t now = mongo_shell_now(f);
        if (!f->refused_logged_at || now - f->refused_logged_at >= 1000) {
            mongo_warn(f, "%s: closing new clients (%llu so far)", why,
                       (unsigned long long)f->refused);
            f->refused_logged_at = now;
        }
        mongo__client_close(c, MONGO_END_REFUSED, why);
        return c;
    }
    if (!c->need_auth)
        mongo_shell_client_note(c, MONGO_NOTE_LOGIN, NULL, "login");
    update_reading(c);
    return c;
}

void mongo__client_check_timeouts(mongo_client *c, uint64_t now)
{
    uint64_t qwt = c->front->query_wait_timeout_ms;
    if (c->state == MONGO_CL_WAITING && qwt && now - c->since > qwt) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "query_wait_timeout: no backend connection became free within %.1f s",
                 (double)qwt / 1000.0);
        mongo__client_fail(c, 262, "ExceededTimeLimit", msg);
    }
}
