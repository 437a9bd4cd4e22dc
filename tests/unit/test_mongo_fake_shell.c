/*
 * The fake shell (test_mongo_fake_shell.h): mongo_shell.h in memory, for unit tests and fuzzers.
 */
#include "tests/unit/test_mongo_fake_shell.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_wire.h"

static void append(uint8_t **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : 256;
        while (want < *len + n)
            want *= 2;
        uint8_t *grown = realloc(*buf, want);
        if (!grown)
            abort(); /* the fake itself: out of memory is not what is under test */
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

/* ---- mongo_shell.h ---- */

uint64_t mongo_shell_now(const mongo_front *f)
{
    return f->shell->now;
}

void mongo_shell_log(const mongo_front *f, cfg_log_level level, const char *fmt, ...)
{
    if (f->shell->quiet || level > f->shell->log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mongo %s: ", f->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void mongo_shell_client_note(mongo_client *c, mongo_conn_note what, const char *reason,
                             const char *text)
{
    (void)what;
    (void)reason;
    mongo_shell_log(c->front, CFG_LOG_INFO, "client %d: %s", c->conn_id, text);
}

const struct auth_userlist *mongo_shell_users(const mongo_front *f)
{
    return f->shell->users;
}

const uint8_t *mongo_shell_auth_seed(const mongo_front *f)
{
    return f->shell->auth_seed;
}

bool mongo_shell_paused(const mongo_front *f)
{
    return f->shell->paused;
}

bool mongo_shell_disabled(const mongo_front *f)
{
    return f->shell->disabled;
}

const char *mongo_shell_strerror(int err)
{
    return strerror(-err);
}

/* Takes msg whatever the result, as the shell does. */
static int conn_write(fake_conn *c, uint8_t *msg, size_t len, size_t cap)
{
    if (c->closing) {
        gw_bufpool_put(&c->fs->bufs, msg, cap);
        return -EPIPE;
    }
    if (c->n_writes == c->cap_writes) {
        size_t want = c->cap_writes ? c->cap_writes * 2 : 8;
        fake_write *grown = realloc(c->writes, want * sizeof *grown);
        if (!grown) {
            gw_bufpool_put(&c->fs->bufs, msg, cap);
            return -ENOMEM;
        }
        c->writes = grown;
        c->cap_writes = want;
    }
    c->writes[c->n_writes++] = (fake_write){msg, len, cap};
    return 0;
}

int mongo_shell_client_write(mongo_client *c, uint8_t *msg, size_t len, size_t cap)
{
    return conn_write(c->io, msg, len, cap);
}

int mongo_shell_client_read(mongo_client *c, bool on)
{
    c->io->reading = on;
    return 0;
}

void mongo_shell_client_close(mongo_client *c)
{
    c->io->closing = true;
}

int mongo_shell_backend_write(mongo_backend *b, uint8_t *msg, size_t len, size_t cap)
{
    return conn_write(b->io, msg, len, cap);
}

int mongo_shell_backend_read_start(mongo_backend *b)
{
    b->io->reading = true;
    return 0;
}

void mongo_shell_backend_close(mongo_backend *b)
{
    b->io->closing = true;
}

int mongo_shell_connect(mongo_front *f, const char *target)
{
    fake_shell *fs = f->shell;
    char(*grown)[MONGO_HOST_LEN] = realloc(fs->targets, (fs->n_targets + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    fs->targets = grown;
    snprintf(fs->targets[fs->n_targets++], MONGO_HOST_LEN, "%s", target);
    fs->n_connects++;
    return 0;
}

/* ---- driving ---- */

void mongo_fake_init(fake_shell *fs)
{
    memset(fs, 0, sizeof *fs);
    fs->now = 1000;
    fs->log_level = CFG_LOG_ERROR;
    fs->out_keep = 1u << 20;
    fs->limits = (mongo_limits){.max_bson = 16 * 1024 * 1024,
                                .max_message = 48000000,
                                .max_batch = 100000,
                                .session_timeout_min = 30,
                                .min_wire = 0,
                                .max_wire = 17};
    gw_bufpool_init(&fs->bufs, 64);
    mongo_core_front_init(&fs->front, fs, "fake", &fs->bufs);
    fs->front.pool_size = 2;
    fs->front.max_clients = 100;
}

static fake_conn *conn_new(fake_shell *fs)
{
    fake_conn *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->fs = fs;
    c->next = fs->conns;
    fs->conns = c;
    return c;
}

fake_conn *mongo_fake_client(fake_shell *fs)
{
    fake_conn *c = conn_new(fs);
    c->client = mongo_core_client_accepted(&fs->front, c);
    if (!c->client)
        c->closed = true;
    return c;
}

void mongo_fake_client_send(fake_conn *c, const void *data, size_t len)
{
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
    size_t cap = c->in_len; /* exact-size growth is fine for a test */
    uint8_t *grown = realloc(c->in, cap + len ? cap + len : 1);
    if (!grown)
        abort();
    c->in = grown;
    memcpy(c->in + c->in_len, data, len);
    c->in_len += len;
}

void mongo_fake_client_eof(fake_conn *c)
{
    c->eof = true;
}

void mongo_fake_backend_send(fake_conn *b, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0 && !b->closing && b->backend) {
        uint8_t *buf;
        size_t room;
        mongo_core_backend_read_buf(b->backend, &buf, &room);
        if (room == 0) {
            mongo_core_backend_failed(b->backend, MONGO_END_NOMEM, "no read buffer");
            return;
        }
        size_t k = len < room ? len : room;
        memcpy(buf, p, k);
        p += k;
        len -= k;
        mongo_core_backend_read(b->backend, k);
    }
}

/* Completes the oldest write of c; returns false when there is none. */
static bool complete_write(fake_shell *fs, fake_conn *c)
{
    if (c->n_writes == 0)
        return false;
    fake_write w = c->writes[0];
    memmove(c->writes, c->writes + 1, (c->n_writes - 1) * sizeof *c->writes);
    c->n_writes--;
    const char *error = c->closing ? "operation canceled" : NULL;
    if (c->client) {
        if (!error && c->out_len + w.len <= fs->out_keep)
            append(&c->out, &c->out_len, &c->out_cap, w.msg, w.len);
        mongo_core_client_written(c->client, w.msg, w.len, w.cap, error);
        return true;
    }
    uint8_t *copy = NULL;
    if (!error && fs->responder) {
        copy = malloc(w.len ? w.len : 1);
        if (!copy)
            abort();
        memcpy(copy, w.msg, w.len);
    }
    mongo_core_backend_written(c->backend, w.msg, w.cap, error);
    if (copy && !c->closing && c->backend)
        fs->responder(fs, c, copy, w.len);
    free(copy);
    return true;
}

/* Hands buffered client input to the core while it reads; then the end, if the peer closed. */
static bool deliver_input(fake_conn *c)
{
    if (!c->client || c->closing || !c->reading)
        return false;
    if (c->in_off < c->in_len) {
        uint8_t *buf;
        size_t room;
        mongo_core_client_read_buf(c->client, &buf, &room);
        if (room == 0) {
            mongo_core_client_failed(c->client, MONGO_END_NOMEM, "no read buffer");
            return true;
        }
        size_t k = c->in_len - c->in_off < room ? c->in_len - c->in_off : room;
        memcpy(buf, c->in + c->in_off, k);
        c->in_off += k;
        mongo_core_client_read(c->client, k);
        return true;
    }
    if (c->eof) {
        c->eof = false;
        mongo_core_client_failed(c->client, MONGO_END_CLIENT_LEFT, NULL);
        return true;
    }
    return false;
}

static bool finish_close(fake_conn *c)
{
    if (!c->closing || c->closed || c->n_writes > 0)
        return false;
    c->closed = true;
    if (c->client)
        mongo_core_client_closed(c->client);
    if (c->backend)
        mongo_core_backend_closed(c->backend);
    c->client = NULL;
    c->backend = NULL;
    return true;
}

static bool answer_connect(fake_shell *fs)
{
    if (fs->n_targets == 0 || fs->hold_connects)
        return false;
    char target[MONGO_HOST_LEN];
    memcpy(target, fs->targets[0], sizeof target);
    memmove(fs->targets, fs->targets + 1, (fs->n_targets - 1) * sizeof *fs->targets);
    fs->n_targets--;
    if (fs->refuse_connects) {
        mongo_core_connect_failed(&fs->front, target, "connection refused (fake)");
        return true;
    }
    fake_conn *b = conn_new(fs);
    b->backend =
        mongo_core_backend_connected(&fs->front, b, target[0] ? target : "fake:27017", &fs->limits);
    if (!b->backend)
        b->closed = true;
    return true;
}

void mongo_fake_run(fake_shell *fs)
{
    bool progress;
    do {
        progress = false;
        for (fake_conn *c = fs->conns; c; c = c->next) {
            if (c->closed)
                continue;
            while (complete_write(fs, c))
                progress = true;
            while (deliver_input(c))
                progress = true;
            if (finish_close(c))
                progress = true;
        }
        if (answer_connect(fs))
            progress = true;
    } while (progress);
}

void mongo_fake_free(fake_shell *fs)
{
    fs->responder = NULL;
    mongo_core_stop(&fs->front);
    mongo_fake_run(fs);
    for (fake_conn *c = fs->conns, *next; c; c = next) {
        next = c->next;
        if (!c->closed) { /* cannot happen after a stop; free what the core would */
            fprintf(stderr, "fake shell: a connection was left open after the stop\n");
            abort();
        }
        free(c->writes);
        free(c->out);
        free(c->in);
        free(c);
    }
    fs->conns = NULL;
    free(fs->targets);
    fs->targets = NULL;
    mongo_core_front_free(&fs->front);
    gw_bufpool_destroy(&fs->bufs);
}

void mongo_fake_answer_ok(fake_shell *fs, fake_conn *b, const uint8_t *msg, size_t len)
{
    (void)fs;
    mongo_header h = mongo_header_read(msg);
    mongo_msg m;
    const char *why;
    bson_t doc = BSON_INITIALIZER;
    if (len >= 16 && h.opcode == MONGO_OP_MSG && mongo_msg_scan(msg, len, &m, &why) == 0 &&
        (strcmp(m.command, "find") == 0 || strcmp(m.command, "aggregate") == 0)) {
        bson_t cursor, batch;
        BSON_APPEND_DOCUMENT_BEGIN(&doc, "cursor", &cursor);
        BSON_APPEND_INT64(&cursor, "id", 0);
        BSON_APPEND_UTF8(&cursor, "ns", "db.coll");
        BSON_APPEND_ARRAY_BEGIN(&cursor, "firstBatch", &batch);
        bson_append_array_end(&cursor, &batch);
        bson_append_document_end(&doc, &cursor);
    }
    BSON_APPEND_DOUBLE(&doc, "ok", 1.0);
    size_t n;
    uint8_t *reply = mongo_build_msg(&doc, 4242, h.request_id, false, &n);
    bson_destroy(&doc);
    if (reply)
        mongo_fake_backend_send(b, reply, n);
    free(reply);
}

const uint8_t *mongo_fake_next_reply(fake_conn *c, size_t *len)
{
    size_t left = c->out_len - c->out_off;
    if (left < 16)
        return NULL;
    int32_t n = mongo_get_i32(c->out + c->out_off);
    if (n < 16 || (size_t)n > left)
        return NULL;
    const uint8_t *p = c->out + c->out_off;
    c->out_off += (size_t)n;
    *len = (size_t)n;
    return p;
}

void mongo_fake_send_doc(fake_conn *c, bson_t *doc, int32_t id)
{
    size_t n;
    uint8_t *m = mongo_build_msg(doc, id, 0, false, &n);
    bson_destroy(doc);
    if (!m)
        abort();
    mongo_fake_client_send(c, m, n);
    free(m);
    mongo_fake_run(c->fs);
}

bool mongo_fake_reply_doc(fake_conn *c, mongo_header *h, bson_t *body)
{
    size_t len;
    const uint8_t *r = mongo_fake_next_reply(c, &len);
    mongo_msg m;
    const char *why;
    bson_t view;
    if (!r || mongo_header_read(r).opcode != MONGO_OP_MSG ||
        mongo_msg_scan(r, len, &m, &why) != 0 || !bson_init_static(&view, m.body, m.body_len))
        return false;
    *h = mongo_header_read(r);
    bson_copy_to(&view, body);
    return true;
}
