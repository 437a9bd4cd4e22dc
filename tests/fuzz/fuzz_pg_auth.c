/*
 * libFuzzer harness: a client's login exchange (pg_auth.c) through the PostgreSQL core (fake
 * shell, no I/O). The first byte picks auth_type (plain, md5, scram-sha-256, hba), the user
 * (plaintext, md5 or SCRAM secret, or unknown; the last one looked up through auth_query) and
 * how the rest is cut into reads; the rest is what the client sends after its startup packet:
 * password messages, SASL messages, anything. The users and hba files are written once per
 * process.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "drivers/pg/pg_wire.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_pg_core_shell.h"

static char users_path[64], hba_path[64];

static void remove_files(void)
{
    unlink(users_path);
    unlink(hba_path);
}

static void write_files(void)
{
    if (users_path[0])
        return;
    snprintf(users_path, sizeof users_path, "/tmp/sluice-fuzz-users-%d", (int)getpid());
    snprintf(hba_path, sizeof hba_path, "/tmp/sluice-fuzz-hba-%d", (int)getpid());
    FILE *f = fopen(users_path, "w");
    FUZZ_CHECK(f);
    /* Password "secret" for all three. */
    fputs("\"alice\" \"secret\"\n"
          "\"bob\" \"md521f3163f8f86fa10bdefbfbd502a8f06\"\n"
          "\"carol\" \"SCRAM-SHA-256$4096:MhwDUyemeJP6KZcxTa/uBQ==$/x5SsE8IWOgYgRdl3MbeKFEqtSvXWOB/"
          "U/+Sfz1US9E=:+C+5CTRE6LNJNypNixJhZgyffiZ4ccDvgblhpOq6auE=\"\n",
          f);
    fclose(f);
    f = fopen(hba_path, "w");
    FUZZ_CHECK(f);
    fputs("host all alice 127.0.0.1/32 password\nhost all bob 127.0.0.1/32 md5\n"
          "host all all 127.0.0.1/32 scram-sha-256\n",
          f);
    fclose(f);
    atexit(remove_files);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {"plain", "md5", "scram-sha-256", "hba"};
    static const char *const users[] = {"alice", "bob", "carol", "nobody"};
    if (size < 1)
        return 0;
    write_files();
    uint8_t mode = data[0];
    char conf[512];
    snprintf(conf, sizeof conf,
             "[sluice]\nauth_type = %s\nauth_file = %s\nauth_hba_file = %s\n"
             "auth_plain_without_tls = 1\nauth_user = pgb\nlog_level = error\n"
             "[databases]\ndb = host=127.0.0.1 port=1 dbname=db\n",
             types[mode & 3], users_path, hba_path);
    fk_world w;
    if (fk_init(&w, conf) != 0)
        return 0;
    const char *user = users[(mode >> 2) & 3];
    size_t chunk = 1 + (size_t)(mode >> 4) * 32; /* 1 .. 481 bytes a read */
    data++, size--;

    uint8_t su[64];
    size_t n = 8;
    pg_put_u32(su + 4, PG_PROTO_30);
    n += (size_t)sprintf((char *)su + n, "user") + 1;
    n += (size_t)sprintf((char *)su + n, "%s", user) + 1;
    su[n++] = 0;
    pg_put_u32(su, (uint32_t)n);
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, su, n);
    if (w.lookup_client == c) {
        w.lookup_client = NULL;
        pg_auth_lookup_done(c, NULL, NULL); /* auth_query: no such user */
        fk_step(&w);
    }
    for (size_t pos = 0; pos < size && fk_client_alive(&w, c);) {
        size_t k = size - pos < chunk ? size - pos : chunk;
        fk_client_input(&w, c, data + pos, k);
        pos += k;
        fk_connect_all(&w, false);
        if (fk_client_alive(&w, c))
            fk_client_output(&w, c, NULL, 0);
    }
    fk_fini(&w);
    return 0;
}
