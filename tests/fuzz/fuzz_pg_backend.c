/*
 * libFuzzer harness: a hostile or broken server's bytes through the PostgreSQL core (fake
 * shell, no I/O). A client logs in and sends a query (the first byte picks simple or extended
 * protocol, how the server's bytes are cut into reads, and whether the server closes after
 * them); the rest is what the server answers, for a client that stays linked to it. Everything
 * is freed per input.
 */
#include <stdint.h>
#include <string.h>

#include "drivers/pg/pg_wire.h"
#include "tests/fuzz/fuzz_pg_core_shell.h"

static size_t put(uint8_t *b, uint8_t t, const void *body, size_t len)
{
    b[0] = t;
    pg_put_u32(b + 1, (uint32_t)len + 4);
    memcpy(b + 5, body, len);
    return len + 5;
}

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
    fk_connect_all(&w, false);
    size_t n;
    if (mode & 1) {
        static const char parse[] = "s1\0SELECT $1\0\0\0";
        static const char bind[] = "\0s1\0\0\0\0\0\0\0";
        n = put(b, 'P', parse, sizeof parse - 1);
        n += put(b + n, 'B', bind, sizeof bind - 1);
        n += put(b + n, 'E', "\0\0\0\0\0", 5);
        n += put(b + n, 'S', "", 0);
    } else {
        n = put(b, 'Q', "SELECT 1", 9);
    }
    if (fk_client_alive(&w, c))
        fk_client_input(&w, c, b, n);
    fk_feed_server(&w, c, data, size, 1 + ((mode >> 1) & 0x3f) * 4, true);
    pg_server *s = fk_first_server(&w);
    if ((mode & 0x80) && s && s->state != PG_SV_CONNECTING)
        fk_server_eof(&w, s);
    fk_fini(&w);
    return 0;
}
