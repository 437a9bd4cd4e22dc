/* Unit tests for PostgreSQL framing, message building and parsing, and parameter sets. */
#include <criterion/criterion.h>
#include <string.h>

#include "drivers/pg/pg_params.h"
#include "drivers/pg/pg_wire.h"

static size_t startup(uint8_t *buf, uint32_t code, const char *const *kv)
{
    size_t n = 4;
    pg_put_u32(buf, code);
    for (int i = 0; kv && kv[i]; i++) {
        size_t l = strlen(kv[i]) + 1;
        memcpy(buf + n, kv[i], l);
        n += l;
    }
    if (kv)
        buf[n++] = 0;
    return n;
}

Test(pg_wire, startup_packet_fields)
{
    uint8_t buf[256];
    const char *kv[] = {"user", "alice",   "database",    "app", "application_name",
                        "psql", "options", "-c geqo=off", NULL};
    size_t n = startup(buf, PG_PROTO_30, kv);
    pg_startup su;
    const char *why = NULL;
    cr_assert_eq(pg_parse_startup(buf, n, &su, &why), 0);
    cr_assert_str_eq(su.user, "alice");
    cr_assert_str_eq(su.database, "app");
    cr_assert_str_eq(su.options, "-c geqo=off");
    cr_assert_not(su.replication);
    cr_assert_gt(su.params_len, 0);
}

Test(pg_wire, startup_rejects_bad_packets)
{
    uint8_t buf[64];
    pg_startup su;
    const char *why;
    size_t n = startup(buf, 0x00020000, (const char *[]){"user", "x", NULL});
    cr_assert_eq(pg_parse_startup(buf, n, &su, &why), -1);
    cr_assert_str_eq(why, "unsupported frontend protocol version");
    n = startup(buf, PG_PROTO_30, (const char *[]){"user", "x", NULL});
    cr_assert_eq(pg_parse_startup(buf, n - 1, &su, &why), -1, "missing terminator");
    buf[5] = 'u';
    cr_assert_eq(pg_parse_startup(buf, 3, &su, &why), -1, "too short");
}

Test(pg_wire, special_requests)
{
    uint8_t buf[16];
    pg_startup su;
    const char *why;
    pg_put_u32(buf, PG_CODE_SSL);
    cr_assert_eq(pg_parse_startup(buf, 4, &su, &why), 0);
    cr_assert_eq(su.code, PG_CODE_SSL);
    pg_put_u32(buf, PG_CODE_CANCEL);
    pg_put_u32(buf + 4, 42);
    pg_put_u32(buf + 8, 0xdeadbeef);
    cr_assert_eq(pg_parse_startup(buf, 12, &su, &why), 0);
    cr_assert_eq(su.cancel_pid, 42);
    cr_assert_eq(su.cancel_key, 0xdeadbeef);
    cr_assert_eq(pg_parse_startup(buf, 8, &su, &why), -1);
}

Test(pg_wire, error_response_roundtrip)
{
    gw_bufpool p;
    gw_bufpool_init(&p, 2);
    gw_buf b = {0};
    cr_assert_eq(pg_build_error(&b, &p, "FATAL", "08P01", "bad things"), 0);
    cr_assert_eq(b.data[0], 'E');
    cr_assert_eq(pg_get_u32(b.data + 1), b.len - 1);
    cr_assert_str_eq(pg_error_field(b.data + 5, b.len - 5, 'C'), "08P01");
    cr_assert_str_eq(pg_error_field(b.data + 5, b.len - 5, 'M'), "bad things");
    cr_assert_str_eq(pg_error_field(b.data + 5, b.len - 5, 'S'), "FATAL");
    cr_assert_null(pg_error_field(b.data + 5, b.len - 5, 'D'));
    gw_buf_release(&b, &p);
    gw_bufpool_destroy(&p);
}

Test(pg_wire, fixed_messages)
{
    gw_bufpool p;
    gw_bufpool_init(&p, 2);
    gw_buf b = {0};
    pg_build_ready(&b, &p, 'T');
    pg_build_key_data(&b, &p, 7, 9);
    pg_build_empty(&b, &p, '1');
    const uint8_t want[] = {'Z', 0, 0, 0, 5, 'T', 'K', 0,   0, 0, 12, 0,
                            0,   0, 7, 0, 0, 0,   9,   '1', 0, 0, 0,  4};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_eq(memcmp(b.data, want, sizeof want), 0);
    gw_buf_release(&b, &p);
    gw_bufpool_destroy(&p);
}

/* AuthenticationSASL: -PLUS first (PostgreSQL's order) over TLS, SCRAM-SHA-256 alone without. */
Test(pg_wire, sasl_offers)
{
    gw_bufpool p;
    gw_bufpool_init(&p, 2);
    for (int plus = 0; plus <= 1; plus++) {
        gw_buf b = {0};
        cr_assert_eq(pg_build_auth_sasl(&b, &p, plus), 0);
        static const char both[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
        const char *mechs = plus ? both : both + 19;
        const size_t n = plus ? sizeof both : sizeof both - 19; /* with the list's empty end */
        cr_assert_eq(b.len, 1 + 4 + 4 + n);
        cr_assert_eq(b.data[0], 'R');
        cr_assert_eq(pg_get_u32(b.data + 1), 4 + 4 + n);
        cr_assert_eq(pg_get_u32(b.data + 5), PG_AUTH_REQ_SASL);
        cr_assert_eq(memcmp(b.data + 9, mechs, n), 0);
        gw_buf_release(&b, &p);
    }
    gw_bufpool_destroy(&p);
}

Test(pg_wire, reader_bounds)
{
    const uint8_t body[] = {'a', 'b', 0, 0, 1};
    pg_reader r = pg_reader_make(body, sizeof body);
    cr_assert_str_eq(pg_read_str(&r, NULL), "ab");
    cr_assert_eq(pg_read_u16(&r), 1);
    cr_assert_not(r.err);
    pg_read_u32(&r);
    cr_assert(r.err, "reading past the end is an error, not an overrun");
    pg_reader r2 = pg_reader_make((const uint8_t *)"abc", 3);
    pg_read_str(&r2, NULL);
    cr_assert(r2.err, "a string without NUL is an error");
}

Test(pg_wire, frontend_types)
{
    cr_assert(pg_frontend_type_valid('Q'));
    cr_assert(pg_frontend_type_valid('P'));
    cr_assert(pg_frontend_type_valid('d'));
    cr_assert_not(pg_frontend_type_valid('p'));
    cr_assert_not(pg_frontend_type_valid('Z'));
    cr_assert_not(pg_frontend_type_valid(0));
}

Test(pg_wire, quote_literal)
{
    gw_bufpool p;
    gw_bufpool_init(&p, 2);
    gw_buf b = {0};
    pg_quote_literal(&b, &p, "it's");
    gw_buf_append(&b, &p, "", 1);
    cr_assert_str_eq((char *)b.data, "'it''s'");
    b.len = 0;
    pg_quote_literal(&b, &p, "a\\b");
    gw_buf_append(&b, &p, "", 1);
    cr_assert_str_eq((char *)b.data, "E'a\\\\b'");
    gw_buf_release(&b, &p);
    gw_bufpool_destroy(&p);
}

Test(pg_params, set_get_replace_iterate)
{
    pg_params ps = {0};
    cr_assert_null(pg_params_get(&ps, "TimeZone"));
    pg_params_set(&ps, "TimeZone", "UTC");
    pg_params_set(&ps, "DateStyle", "ISO, MDY");
    pg_params_set(&ps, "timezone", "Asia/Tokyo");
    cr_assert_str_eq(pg_params_get(&ps, "TIMEZONE"), "Asia/Tokyo", "names are case-insensitive");
    int n = 0;
    for (const char *k = pg_params_first(&ps); k; k = pg_params_next(&ps, k))
        n++;
    cr_assert_eq(n, 2);
    pg_params copy = {0};
    pg_params_copy(&copy, &ps);
    cr_assert_str_eq(pg_params_get(&copy, "datestyle"), "ISO, MDY");
    pg_params_free(&copy);
    /* Deleting keeps the rest; deleting the last one frees the blob. A set that a deletion
     * shrank has the bytes (what the fingerprint hashes) of one built without the pair. */
    pg_params_set(&ps, "application_name", "app");
    pg_params_del(&ps, "DATESTYLE");
    pg_params_del(&ps, "nothing");
    cr_assert_null(pg_params_get(&ps, "DateStyle"));
    cr_assert_str_eq(pg_params_get(&ps, "application_name"), "app");
    pg_params other = {0};
    pg_params_set(&other, "timezone", "Asia/Tokyo"); /* the name as last set */
    pg_params_set(&other, "application_name", "app");
    uint32_t la, lb;
    const char *a = pg_params_bytes(&ps, &la), *b = pg_params_bytes(&other, &lb);
    cr_assert(la == lb && memcmp(a, b, la) == 0);
    pg_params_free(&other);
    pg_params_del(&ps, "timezone");
    pg_params_del(&ps, "application_name");
    cr_assert_null(ps.blob, "an empty set holds no memory");
    cr_assert_null(pg_params_first(&ps));
    cr_assert_null(pg_params_bytes(&ps, &la));
    cr_assert_eq(la, 0);
    pg_params_free(&ps);
    cr_assert_not(pg_param_settable("server_version"));
    cr_assert(pg_param_settable("TimeZone"));
    cr_assert(pg_param_name_ok("search_path"));
    cr_assert_not(pg_param_name_ok("x; DROP TABLE y"));
}

/* The fingerprint kept in the blob follows every change: linking compares it instead of the
 * parameters, so a stale one would leave another client's setting on the server. */
Test(pg_params, fingerprint_follows_every_change)
{
    pg_params ps = {0}, other = {0}, copy = {0};
    uint64_t empty = pg_params_fingerprint(&ps);
    pg_params_set(&ps, "TimeZone", "UTC");
    uint64_t utc = pg_params_fingerprint(&ps);
    cr_assert_neq(utc, empty);
    pg_params_set(&ps, "TimeZone", "Asia/Tokyo");
    cr_assert_neq(pg_params_fingerprint(&ps), utc, "a replaced value changes it");
    pg_params_set(&other, "TimeZone", "Asia/Tokyo");
    cr_assert_eq(pg_params_fingerprint(&ps), pg_params_fingerprint(&other));
    pg_params_set(&ps, "search_path", "a");
    pg_params_set(&ps, "application_name", "x");
    uint64_t three = pg_params_fingerprint(&ps);
    pg_params_del(&ps, "search_path");
    cr_assert_neq(pg_params_fingerprint(&ps), three, "a removed name changes it");
    pg_params_set(&other, "application_name", "x");
    cr_assert_eq(pg_params_fingerprint(&ps), pg_params_fingerprint(&other));
    pg_params_copy(&copy, &ps);
    cr_assert_eq(pg_params_fingerprint(&copy), pg_params_fingerprint(&ps));
    pg_params_del(&ps, "TimeZone");
    pg_params_del(&ps, "application_name");
    cr_assert_eq(pg_params_fingerprint(&ps), empty, "emptied is the same as never set");
    pg_params_free(&ps);
    pg_params_free(&other);
    pg_params_free(&copy);
}
