/*
 * mongo_backend: one backend connection's I/O. The socket was connected and handshaken by the
 * worker thread (with libmongoc); from then on the loop reads and writes it without libmongoc.
 * Replies are matched to the request in flight by responseTo.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/mongo/mongo_int.h"
#include "drivers/mongo/mongo_wire.h"

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_backend_closed(uv_handle_t *h)
{
    mongo_backend *b = (mongo_backend *)h;
    mongo_gateway *gw = b->front->gw;
    mongo__buf_put(b->front, b->in, b->in_cap);
    free(b);
    gw->live--;
    mongo__gateway_maybe_free(gw);
}

void mongo__backend_close(mongo_backend *b, mongo_end why, const char *detail)
{
    if (b->state == MONGO_BE_CLOSING)
        return;
    mongo_front *f = b->front;
    char what[320];
    snprintf(what, sizeof what, "%s%s%s", mongo_end_str(why), detail ? ": " : "",
             detail ? detail : "");
    if (f->gw->stopping)
        gw_debug(f->gw->ctx, "mongo %s: backend connection to %s closing: %s", f->name, b->host,
                 what);
    else
        gw_info(f->gw->ctx, "mongo %s: backend connection to %s closing: %s", f->name, b->host,
                what);
    mongo__backend_set_state(b, MONGO_BE_CLOSING);
    mongo_client *c = b->client;
    b->client = NULL;
    uv_close((uv_handle_t *)&b->tcp, on_backend_closed);
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
    int rc = m ? send_msg(b, m, len, len) : UV_ENOMEM;
    if (rc != 0)
        mongo__backend_close(b, MONGO_END_IO, uv_strerror(rc));
}

typedef struct write_req {
    uv_write_t req;
    mongo_backend *b;
    uint8_t *msg;
    size_t cap;
} write_req;

static void on_written(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    mongo_backend *b = w->b;
    mongo__buf_put(b->front, w->msg, w->cap);
    free(w);
    if (b->state == MONGO_BE_CLOSING)
        return; /* cancelled by the close, which dealt with the client */
    if (status < 0) {
        mongo__backend_close(b, MONGO_END_IO, uv_strerror(status));
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
    write_req *w = malloc(sizeof *w);
    if (!w) {
        mongo__buf_put(b->front, msg, cap);
        return UV_ENOMEM;
    }
    *w = (write_req){.b = b, .msg = msg, .cap = cap};
    uv_buf_t buf = uv_buf_init((char *)msg, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&b->tcp, &buf, 1, on_written);
    if (rc != 0) {
        mongo__buf_put(b->front, msg, cap);
        free(w);
    }
    return rc;
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

static void backend_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    mongo_backend *b = (mongo_backend *)h;
    if (!b->in) {
        b->in = mongo__buf_get(b->front);
        b->in_cap = b->in ? MONGO_READ_CHUNK : 0;
    }
    size_t want = MONGO_READ_CHUNK / 2;
    if (b->in_len >= 16) {
        int32_t len = mongo_get_i32(b->in);
        if (len > 0 && (size_t)len > b->in_len && (size_t)len - b->in_len > want)
            want = (size_t)len - b->in_len;
    }
    if (b->in && b->in_cap - b->in_len < want) {
        uint8_t *n = realloc(b->in, b->in_len + want);
        if (n) {
            b->in = n;
            b->in_cap = b->in_len + want;
        }
    }
    if (!b->in || b->in_cap == b->in_len) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)b->in + b->in_len, (unsigned)(b->in_cap - b->in_len));
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

static void on_backend_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    mongo_backend *b = (mongo_backend *)s;
    if (nread < 0) {
        if (nread == UV_EOF)
            mongo__backend_close(b, MONGO_END_SERVER_CLOSED, NULL);
        else if (nread == UV_ENOBUFS) /* backend_alloc could not grow the buffer */
            mongo__backend_close(b, MONGO_END_NOMEM, "no read buffer");
        else
            mongo__backend_close(b, MONGO_END_IO, uv_strerror((int)nread));
        return;
    }
    b->in_len += (size_t)nread;
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

void mongo__backend_connected(mongo_front *f, mongo_job *job)
{
    mongo_gateway *gw = f->gw;
    if (gw->stopping) {
        close(job->fd);
        return;
    }
    mongo_backend *b = calloc(1, sizeof *b);
    if (!b || uv_tcp_init(gw->ctx->loop, &b->tcp) != 0) {
        free(b);
        close(job->fd);
        return;
    }
    int rc = uv_tcp_open(&b->tcp, job->fd);
    if (rc != 0) {
        gw_warn(gw->ctx, "mongo %s: cannot use a backend socket: %s", f->name, uv_strerror(rc));
        close(job->fd);
        uv_close((uv_handle_t *)&b->tcp, free_handle);
        return;
    }
    b->front = f;
    gw_list_init(&b->idle_node);
    snprintf(b->host, sizeof b->host, "%s", job->host);
    gw->live++;
    mongo__backend_set_state(b, MONGO_BE_BUSY); /* until the pool places it */
    f->limits = job->limits;
    bool first = !f->have_limits;
    f->have_limits = true;
    if (first)
        mongo__client_answer_hellos(f);
    f->last_fail = 0;
    rc = uv_read_start((uv_stream_t *)&b->tcp, backend_alloc, on_backend_read);
    if (rc != 0) {
        mongo__backend_close(b, MONGO_END_IO, uv_strerror(rc));
        return;
    }
    gw_debug(gw->ctx, "mongo %s: backend connection to %s ready (%u open)", f->name, b->host,
             f->n_backends);
    mongo__pool_release(b);
}
