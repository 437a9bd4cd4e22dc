/*
 * libFuzzer harness: bytes from a MongoDB client through the protocol core (framing, hello,
 * command bookkeeping, maxTimeMS rewriting, error replies), with fake backends that answer every
 * request with {ok: 1}. The input is cut into chunks at the first byte's say, so that messages
 * also arrive split; the fake's clock moves between chunks so timeouts fire too.
 */
#include <stddef.h>
#include <stdint.h>

#include "tests/unit/test_mongo_fake_shell.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fake_shell fs;
    mongo_fake_init(&fs);
    fs.quiet = true;
    fs.responder = mongo_fake_answer_ok;
    fs.front.query_timeout_ms = 5000; /* maxTimeMS gets added */
    fs.front.query_wait_timeout_ms = 2000;
    fake_conn *c = mongo_fake_client(&fs);
    size_t chunk = size ? (size_t)data[0] * 7 + 1 : 1;
    for (size_t off = 1; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        mongo_fake_client_send(c, data + off, n);
        mongo_fake_run(&fs);
        fs.now += 700;
        mongo_core_tick(&fs.front, fs.now);
        mongo_fake_run(&fs);
        c->out_off = c->out_len = 0; /* replies are not kept: memory stays flat */
    }
    mongo_fake_client_eof(c);
    mongo_fake_run(&fs);
    mongo_fake_free(&fs);
    return 0;
}
