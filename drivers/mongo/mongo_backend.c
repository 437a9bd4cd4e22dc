/*
 * mongo_backend: one backend connection's framing and reply routing. The socket was connected
 * and handshaken by the shell's worker thread (with libmongoc); from then on the shell reads and
 * writes it without libmongoc, and this core code frames the replies, matches them to the
 * request in flight by responseTo and routes them to its client.
 *
 * Core (mongo_core.h): no I/O here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"

void mongo_core_backend_closed(mongo_backend *b)
{
    mongo_assert(b->state == MONGO_BE_CLOSING);
    mongo__buf_put(b->front, b->in, b->in_cap);
    free(b);
}

void mongo__backend_close(mongo_backend *b, mongo_end why, const char *detail)
{
    if (b->state == MONGO_BE_CLOSING)
        return;
    mongo_front *f = b->front;
    char what[320];
    snprintf(what, sizeof what, "%s%s%s", mongo_end_str(why), detail ? ": " : "",
             detail ? detail : "");
    mongo_log(f, f->stopping ? CFG_LOG_DEBUG : CFG_LOG_INFO, "backend connection to %s closing: %s",
              b->host, what);
    mongo__backend_set_state(b, MONGO_BE_CLOSING);
    mongo_client *c = b->client;
    b->client = NULL;
    mongo_shell_backend_close(b);
    if (c)
        mongo__client_backend_lost(c, what);
    mongo__pool_connect_more(f);
}

static int send_msg(mongo_backend *b, uint8_t *msg, size_t len, size_t cap);

/*
 * After a moreToCome request the connection is not free yet: the server may still be working on
 * it, may fail it by closing the connection, or (some servers) answer it anyway. Were the
 * connection handed on at once, the next client's request would bear the cost: lost with the
 * connection, or taken for the answer. So a ping of Sluice's own follows; the server answers in
 * order, and the connection goes back to the pool with the ping's reply, a stray reply to the
 * moreToCome request dropped on the way.
 */
static void send_fence(mongo_backend *b)
{
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    BSON_APPEND_UTF8(&cmd, "$db", "admin");
    b->stray_id = b->expect_id;
    b->expect_id = mongo__next_id(b->front);
    b->internal = true;
    size_t len;
    uint8_t *m = mongo_build_msg(&cmd, b->expect_id, 0, false, &len);
    bson_destroy(&cmd);
    if (!m) {
        mongo__backend_close(b, MONGO_END_NOMEM, NULL);
        return;
    }
    int rc = send_msg(b, m, len, len);
    if (rc != 0)
        mongo__backend_close(b, MONGO_END_IO, mongo_shell_strerror(rc));
}

void mongo_core_backend_written(mongo_backend *b, uint8_t *msg, size_t cap, const char *error)
{
    mongo__buf_put(b->front, msg, cap);
    if (b->state == MONGO_BE_CLOSING)
        return; /* cancelled by the close, which dealt with the client */
    if (error) {
        mongo__backend_close(b, MONGO_END_IO, error);
        return;
    }
    if (b->awaiting_write) {
        /* moreToCome: no reply comes; the client's request is done once it is written. */
        mongo_client *c = b->client;
        b->awaiting_write = false;
        b->client = NULL;
        send_fence(b);
        if (c)
            mongo__client_sent(c);
    }
}

int mongo__backend_send(mongo_backend *b, uint8_t *msg, size_t len, size_t cap)
{
    b->stray_id = 0;
    return send_msg(b, msg, len, cap);
}

static int send_msg(mongo_backend *b, uint8_t *msg, size_t len, size_t cap)
{
    return mongo_shell_backend_write(b, msg, len, cap); /* takes msg in any case */
}

/* Errors after which a connection must not serve again: the server is no longer the primary
 * or is going away; new connections go through server selection again. */
static bool retires_connection(const uint8_t *msg, size_t len)
{
    static const int32_t codes[] = {10107, 13435, 13436, 189, 91, 11600, 11602};
    mongo_msg m;
    const char *why;
    bson_t body;
    bson_iter_t it;
    if (mongo_header_read(msg).opcode != MONGO_OP_MSG || mongo_msg_scan(msg, len, &m, &why) != 0 ||
        !bson_init_static(&body, m.body, m.body_len) || !bson_iter_init_find(&it, &body, "code") ||
        !BSON_ITER_HOLDS_NUMBER(&it))
        return false;
    int64_t code = bson_iter_as_int64(&it);
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (code == codes[i])
            return true;
    return false;
}

void mongo_core_backend_read_buf(mongo_backend *b, uint8_t **p, size_t *n)
{
    mongo__read_room(b->front, &b->in, b->in_len, &b->in_cap, p, n);
}

/* One whole reply of len bytes at the start of b->in. */
static void got_reply(mongo_backend *b, size_t len)
{
    mongo_front *f = b->front;
    uint8_t *msg;
    size_t cap;
    if (b->in_len == len) {
        msg = b->in; /* handed over whole: no copy */
        cap = b->in_cap;
        b->in = NULL;
        b->in_len = b->in_cap = 0;
    } else {
        cap = len <= MONGO_READ_CHUNK ? MONGO_READ_CHUNK : len;
        msg = cap == MONGO_READ_CHUNK ? mongo__buf_get(f) : malloc(len);
        if (msg)
            memcpy(msg, b->in, len);
        memmove(b->in, b->in + len, b->in_len - len);
        b->in_len -= len;
    }
    if (msg && retires_connection(msg, len))
        b->retire = true;
    mongo_client *c = b->client;
    bool internal = b->internal;
    char host[sizeof b->host];
    memcpy(host, b->host, sizeof host);
    b->client = NULL;
    mongo__pool_release(b);
    if (!c || internal) {
        mongo__buf_put(f, msg, cap); /* a reply nobody waits for any more */
        return;
    }
    if (msg)
        mongo__client_got_reply(c, host, msg, len, cap);
    else
        mongo__client_backend_lost(c, "out of memory");
}

/* Drops a reply of len bytes at the start of b->in to a moreToCome request. */
static void drop_stray(mongo_backend *b, size_t len)
{
    memmove(b->in, b->in + len, b->in_len - len);
    b->in_len -= len;
}

void mongo_core_backend_failed(mongo_backend *b, mongo_end why, const char *detail)
{
    mongo__backend_close(b, why, detail);
}

void mongo_core_backend_read(mongo_backend *b, size_t n)
{
    mongo_assert(b->in && n <= b->in_cap - b->in_len);
    b->in_len += n;
    while (b->in_len >= 16 && b->state != MONGO_BE_CLOSING) {
        mongo_header h = mongo_header_read(b->in);
        int32_t max = b->front->have_limits ? b->front->limits.max_message : MONGO_DEFAULT_MAX;
        if (h.length < 16 || h.length > max) {
            mongo__backend_close(b, MONGO_END_BAD_LENGTH, NULL);
            return;
        }
        if (b->in_len < (size_t)h.length)
            break;
        if (b->stray_id && h.response_to == b->stray_id) {
            drop_stray(b, (size_t)h.length);
            continue;
        }
        if (b->state != MONGO_BE_BUSY || b->awaiting_write || h.response_to != b->expect_id) {
            mongo__backend_close(b, MONGO_END_UNEXPECTED, NULL);
            return;
        }
        got_reply(b, (size_t)h.length);
    }
    if (b->in && b->in_len == 0 && b->state != MONGO_BE_CLOSING) {
        mongo__buf_put(b->front, b->in, b->in_cap);
        b->in = NULL;
        b->in_cap = 0;
    }
}

mongo_backend *mongo_core_backend_connected(mongo_front *f, struct mongo_shell_conn *io,
                                            const char *host, const mongo_limits *limits)
{
    f->n_connecting--;
    GW_STAT_ADD(f->stats.server_connects, 1);
    if (f->stopping)
        return NULL;
    mongo_backend *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->io = io;
    b->front = f;
    gw_list_init(&b->idle_node);
    snprintf(b->host, sizeof b->host, "%s", host);
    mongo__backend_set_state(b, MONGO_BE_BUSY); /* until the pool places it */
    f->limits = *limits;
    bool first = !f->have_limits;
    f->have_limits = true;
    if (first)
        mongo__client_answer_hellos(f);
    f->last_fail = 0;
    int rc = mongo_shell_backend_read_start(b);
    if (rc != 0) {
        mongo__backend_close(b, MONGO_END_IO, mongo_shell_strerror(rc));
        return b;
    }
    mongo_debug(f, "backend connection to %s ready (%u open)", b->host, f->n_backends);
    mongo__pool_release(b);
    return b;
}

void mongo_core_connect_failed(mongo_front *f, const char *target, const char *error)
{
    f->n_connecting--;
    GW_STAT_ADD(f->stats.server_connect_failures, 1);
    mongo__pool_connect_failed(f, target, error);
}
