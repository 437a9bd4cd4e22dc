/*
 * libFuzzer harness: replies from a hostile MongoDB server to a waiting client, through the
 * protocol core's reply path (framing, responseTo matching, cursor and transaction bookkeeping,
 * retiring, routing back with the client's requestID). The client asks a find; the input is what
 * the backend sends back, cut into pieces; the first four bytes of each piece, when they are a
 * header, get the request's id patched into responseTo now and then so the routing is reached.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_wire.h"
#include "tests/unit/test_mongo_fake_shell.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct reply_input {
    const uint8_t *data;
    size_t size, off;
} reply_input;

static reply_input *input;

/* The hostile server: answers a request with the next piece of the input, its responseTo set
 * to the request's id when the piece's first byte is odd. */
static void hostile(fake_shell *fs, fake_conn *b, const uint8_t *msg, size_t len)
{
    (void)fs;
    if (!input || input->off >= input->size || len < 16)
        return;
    size_t n = input->data[input->off++];
    n = n * 3 + 16;
    if (n > input->size - input->off)
        n = input->size - input->off;
    uint8_t piece[1024];
    memcpy(piece, input->data + input->off, n);
    input->off += n;
    if (n >= 16 && (piece[0] & 1))
        memcpy(piece + 8, msg + 4, 4); /* responseTo = the request's requestID */
    mongo_fake_backend_send(b, piece, n);
}

static size_t request_msg(uint8_t *out, size_t cap, const char *cmd, int32_t id)
{
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, cmd, "coll");
    BSON_APPEND_UTF8(&doc, "$db", "db");
    size_t n = 0;
    uint8_t *m = mongo_build_msg(&doc, id, 0, false, &n);
    bson_destroy(&doc);
    if (!m || n > cap) {
        free(m);
        return 0;
    }
    memcpy(out, m, n);
    free(m);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reply_input in = {data, size, 0};
    input = &in;
    fake_shell fs;
    mongo_fake_init(&fs);
    fs.quiet = true;
    fs.responder = hostile;
    fs.front.query_timeout_ms = 1000; /* a reply that never completes times out */
    fake_conn *c = mongo_fake_client(&fs);
    static const char *const cmds[] = {"find", "aggregate", "insert", "getMore"};
    uint8_t req[256];
    for (int32_t i = 1; i <= 4 && in.off < in.size; i++) {
        size_t n = request_msg(req, sizeof req, cmds[i % 4], i);
        if (n == 0 || c->closed)
            break;
        mongo_fake_client_send(c, req, n);
        mongo_fake_run(&fs);
        fs.now += 3000;
        mongo_core_tick(&fs.front, fs.now);
        mongo_fake_run(&fs);
    }
    mongo_fake_client_eof(c);
    mongo_fake_run(&fs);
    mongo_fake_free(&fs);
    input = NULL;
    return 0;
}
