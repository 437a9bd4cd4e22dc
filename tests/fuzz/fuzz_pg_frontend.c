/*
 * libFuzzer harness: a client's bytes through the PostgreSQL core (fake shell, no I/O). The
 * first byte picks the pool mode and how the rest is cut into reads; the rest is what the
 * client sends, startup packet first. A fake server answers every request it receives with a
 * plausible reply, so the relay, the request queue and the pool all run. Everything is freed
 * per input.
 */
#include <stdint.h>
#include <string.h>

#include "drivers/pg/pg_wire.h"
#include "tests/fuzz/fuzz_pg_core_shell.h"

static const char session_config[] = "[sluice]\n"
                                     "listen_port = 6432\n"
                                     "pool_mode = session\n"
                                     "log_level = error\n"
                                     "[databases]\n"
                                     "db = host=127.0.0.1 port=1 dbname=db\n";

static void reply(fk_world *w, pg_server *s, uint8_t t)
{
    static const uint8_t parse_ok[] = {'1', 0, 0, 0, 4}, bind_ok[] = {'2', 0, 0, 0, 4},
                         close_ok[] = {'3', 0, 0, 0, 4}, no_data[] = {'n', 0, 0, 0, 4},
                         done[] = {'C', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0},
                         ready[] = {'Z', 0, 0, 0, 5, 'I'},
                         fcall[] = {'V', 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff};
    uint8_t b[64];
    size_t n = 0;
#define PUT(m) (memcpy(b + n, m, sizeof m), n += sizeof m)
    switch (t) {
    case 'P':
        PUT(parse_ok);
        break;
    case 'B':
        PUT(bind_ok);
        break;
    case 'C':
        PUT(close_ok);
        break;
    case 'D':
        PUT(no_data);
        break;
    case 'E':
        PUT(done);
        break;
    case 'S':
        PUT(ready);
        break;
    case 'Q':
        PUT(done);
        PUT(ready);
        break;
    case 'F':
        PUT(fcall);
        PUT(ready);
        break;
    default:
        return;
    }
#undef PUT
    fk_server_input(w, s, b, n);
}

/* The fake server reads what it was sent and answers each request. */
static void serve(fk_world *w)
{
    static uint8_t sent[1 << 16];
    for (int round = 0; round < 8; round++) {
        pg_server *s = fk_first_server(w);
        if (!s || s->state == PG_SV_CONNECTING)
            return;
        size_t n = fk_server_output(w, s, sent, sizeof sent);
        if (n == 0)
            return;
        if (n > sizeof sent)
            n = sizeof sent;
        for (size_t pos = 0; pos + 5 <= n;) {
            uint32_t len = pg_get_u32(sent + pos + 1);
            if (len < 4)
                break;
            uint8_t t = sent[pos];
            pos += 1 + (size_t)len;
            s = fk_first_server(w);
            if (!s || pg_conn_closing(&s->conn))
                return;
            reply(w, s, t);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fk_world w;
    uint8_t mode = data[0];
    if (fk_init(&w, (mode & 1) ? session_config : NULL) != 0)
        return 0;
    size_t chunk = 1 + (mode >> 1) * 4; /* 1 .. 509 bytes a read */
    data++, size--;
    pg_client *c = fk_client(&w);
    for (size_t pos = 0; pos < size && fk_client_alive(&w, c);) {
        size_t n = size - pos < chunk ? size - pos : chunk;
        fk_client_input(&w, c, data + pos, n);
        pos += n;
        fk_connect_all(&w, false);
        serve(&w);
        if (fk_client_alive(&w, c))
            fk_client_output(&w, c, NULL, 0);
    }
    fk_fini(&w);
    return 0;
}
