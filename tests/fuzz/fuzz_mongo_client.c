/*
 * libFuzzer harness: bytes from a MongoDB client through the protocol core (framing, hello,
 * command bookkeeping, maxTimeMS rewriting, error replies), with fake backends that answer every
 * request with {ok: 1}. The input is cut into chunks at the first byte's say, so that messages
 * also arrive split; the fake's clock moves between chunks so timeouts fire too. With the first
 * byte's high bit set, the front has auth_type scram-sha-256, so the login (saslStart,
 * saslContinue, speculativeAuthenticate, saslSupportedMechs) and its gate are fuzzed too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/auth.h"
#include "tests/unit/test_mongo_fake_shell.h"

/* A verifier (of "pencil", 4096 iterations) and an md5 secret: no plaintext user, whose
 * credentials would be derived at each saslStart and slow every run. */
static const char fuzz_users[] =
    "\"vera\" \"SCRAM-SHA-256$4096:c2x1aWNlLWZ1enotc2FsdA==$"
    "q6O4BbhZmZDWf0s9GvhKvOJmOGzUcvA03JwAp1kwgBQ=:p/hl/wy5gN0au2voGqstbq+Qycy5GlOPdc9AKB+jSoU=\"\n"
    "\"mark\" \"md5a5b2c3d4e5f60718293a4b5c6d7e8f90\"\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fake_shell fs;
    mongo_fake_init(&fs);
    fs.quiet = true;
    fs.responder = mongo_fake_answer_ok;
    fs.front.query_timeout_ms = 5000; /* maxTimeMS gets added */
    fs.front.query_wait_timeout_ms = 2000;
    auth_userlist *users = NULL;
    if (size && (data[0] & 0x80)) {
        if (auth_userlist_parse(fuzz_users, strlen(fuzz_users), "fuzz", &users, NULL) != 0)
            __builtin_trap();
        fs.users = users;
        fs.front.auth_type = CFG_AUTH_SCRAM;
    }
    fake_conn *c = mongo_fake_client(&fs);
    size_t chunk = size ? (size_t)(data[0] & 0x7f) * 7 + 1 : 1;
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
    auth_userlist_free(users);
    return 0;
}
