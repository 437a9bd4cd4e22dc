/*
 * libFuzzer harness: a hostile or broken server during Sluice's own login (pg_login.c). A client
 * waits for the pool's first server; the pool logs in with an md5 hash or a SCRAM ClientKey
 * (the first byte picks which, and how the server's bytes are cut into reads); the rest is what
 * the server sends. Everything is freed per input.
 */
#include <stdint.h>
#include <string.h>

#include "auth/auth.h"
#include "tests/fuzz/fuzz_pg_core_shell.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fk_world w;
    if (fk_init(&w, NULL) != 0)
        return 0;
    uint8_t mode = data[0];
    data++, size--;
    uint8_t b[256];
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, b, fk_startup(b));
    pg_server *s = fk_first_server(&w);
    if (s) {
        pg_pool_cred *cr = &s->pool->cred;
        if (mode & 1) {
            cr->kind = PG_CRED_SCRAM;
            memset(cr->client_key, 0x5a, sizeof cr->client_key);
            memset(cr->server_key, 0xa5, sizeof cr->server_key);
        } else {
            cr->kind = PG_CRED_MD5;
            auth_md5_hash("secret", "u", cr->md5);
        }
        pg_login_begin(s);
        fk_step(&w);
    }
    fk_feed_server(&w, c, data, size, 1 + ((mode >> 1) & 0x3f) * 4, false);
    fk_fini(&w);
    return 0;
}
