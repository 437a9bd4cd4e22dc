/* Unit tests that drive the PostgreSQL core with bytes through a fake shell: no socket, no
 * libpq, no event loop run. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#include "drivers/pg/pg_wire.h"
#include "tests/fuzz/fuzz_pg_core_shell.h"

static fk_world w;

static void setup(void)
{
    cr_assert_eq(fk_init(&w, NULL), 0);
}

static void teardown(void)
{
    fk_fini(&w);
}

TestSuite(pg_core, .init = setup, .fini = teardown);

/* Appends a message of type t with body b (len bytes). */
static size_t msg(uint8_t *buf, uint8_t t, const void *b, size_t len)
{
    buf[0] = t;
    pg_put_u32(buf + 1, (uint32_t)len + 4);
    memcpy(buf + 5, b, len);
    return len + 5;
}

/* The message types in buf, in order ("RSSKZ"), and *field the value of field code in the
 * first ErrorResponse (NULL when none). */
static void types(const uint8_t *buf, size_t n, char *out, size_t cap, char code,
                  const char **field)
{
    size_t k = 0;
    if (field)
        *field = NULL;
    for (size_t pos = 0; pos + 5 <= n && k + 1 < cap;) {
        uint32_t len = pg_get_u32(buf + pos + 1);
        cr_assert_geq(len, 4);
        cr_assert_leq(pos + 1 + len, n, "a message runs past the output");
        if (buf[pos] == 'E' && field && !*field)
            *field = pg_error_field(buf + pos + 5, len - 4, code);
        out[k++] = (char)buf[pos];
        pos += 1 + len;
    }
    out[k] = 0;
}

static uint8_t out[1 << 16];

/* A client logged in through a fresh server connection. */
static pg_client *logged_in(void)
{
    uint8_t b[256];
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, b, fk_startup(b));
    cr_assert_eq(w.connects, 1, "the first client of a pool opens a server connection");
    cr_assert_eq(fk_client_output(&w, c, out, sizeof out), 0, "nothing before the server");
    fk_connect_all(&w, false);
    size_t n = fk_client_output(&w, c, out, sizeof out);
    char t[64];
    types(out, n, t, sizeof t, 0, NULL);
    cr_assert_str_eq(t, "RSSSSSSSSKZ", "login answered by Sluice itself, got %s", t);
    cr_assert_eq(out[n - 1], 'I');
    return c;
}

Test(pg_core, startup_gets_auth_ok_parameters_key_and_ready)
{
    pg_client *c = logged_in();
    cr_assert(fk_client_alive(&w, c));
    cr_assert_eq(c->state, PG_CL_IDLE);
}

/* c sends a simple query: it must reach the server linked to c unchanged. */
static pg_server *query(pg_client *c, const char *sql)
{
    uint8_t b[256];
    size_t len = msg(b, 'Q', sql, strlen(sql) + 1);
    fk_client_input(&w, c, b, len);
    pg_server *s = fk_first_server(&w);
    cr_assert_not_null(s);
    cr_assert_eq(s->client, c, "the server is linked to the client");
    cr_assert_eq(fk_server_output(&w, s, out, sizeof out), len);
    cr_assert_eq(memcmp(out, b, len), 0, "the query reaches the server unchanged");
    return s;
}

Test(pg_core, query_goes_to_the_server_and_its_answer_comes_back)
{
    pg_client *c = logged_in();
    pg_server *s = query(c, "SELECT 1");
    uint8_t b[256];
    size_t m = msg(b, 'C', "SELECT 1", 9);
    m += msg(b + m, 'Z', "I", 1);
    fk_server_input(&w, s, b, m);
    size_t n = fk_client_output(&w, c, out, sizeof out);
    cr_assert_eq(n, m);
    cr_assert_eq(memcmp(out, b, m), 0, "the answer reaches the client unchanged");
    cr_assert_eq(s->state, PG_SV_IDLE, "transaction over: the server is back in the pool");
    cr_assert_eq(c->state, PG_CL_IDLE);
}

Test(pg_core, server_error_reaches_the_client)
{
    pg_client *c = logged_in();
    pg_server *s = query(c, "SELECT x");
    uint8_t b[256];
    static const char err[] = "SERROR\0C42703\0Mcolumn \"x\" does not exist\0";
    size_t m = msg(b, 'E', err, sizeof err);
    m += msg(b + m, 'Z', "I", 1);
    fk_server_input(&w, s, b, m);
    size_t n = fk_client_output(&w, c, out, sizeof out);
    char t[16];
    const char *code;
    types(out, n, t, sizeof t, 'C', &code);
    cr_assert_str_eq(t, "EZ");
    cr_assert_str_eq(code, "42703");
    cr_assert(fk_client_alive(&w, c));
}

/* c was closed for why, after a last message: one FATAL ErrorResponse with sqlstate. */
static void expect_fatal(pg_client *c, pg_end why, const char *sqlstate)
{
    cr_assert(!fk_client_alive(&w, c));
    cr_assert_eq(w.last_client_end, why, "ended %s, not %s", pg_end_name(w.last_client_end),
                 pg_end_name(why));
    size_t n = fk_client_output(&w, NULL, out, sizeof out);
    char t[8];
    const char *code;
    types(out, n, t, sizeof t, 'C', &code);
    cr_assert_str_eq(t, "E");
    cr_assert_str_eq(code, sqlstate);
    cr_assert_str_eq(pg_error_field(out + 5, n - 5, 'S'), "FATAL");
}

Test(pg_core, oversize_message_is_fatal_54000_and_closes)
{
    pg_client *c = logged_in();
    uint8_t b[5] = {'Q'};
    pg_put_u32(b + 1, 64u * 1024u * 1024u); /* over max_buffered_message (16 MB) */
    unsigned closes = w.closes;
    fk_client_input(&w, c, b, sizeof b);
    cr_assert_eq(w.closes, closes + 1, "one close action, for that client");
    expect_fatal(c, PG_END_TOO_BIG, "54000");
}

Test(pg_core, lying_length_is_08P01)
{
    pg_client *c = logged_in();
    uint8_t b[5] = {'Q', 0, 0, 0, 3}; /* shorter than its own length field */
    fk_client_input(&w, c, b, sizeof b);
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
}

Test(pg_core, truncated_startup_packet_is_08P01)
{
    pg_client *c = fk_client(&w);
    uint8_t b[4] = {0, 0, 0, 5}; /* a startup packet cannot be shorter than 8 bytes */
    fk_client_input(&w, c, b, sizeof b);
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
}

Test(pg_core, refused_server_login_passes_its_sqlstate_on)
{
    uint8_t b[256];
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, b, fk_startup(b));
    fk_connect_all(&w, true);
    expect_fatal(c, PG_END_CONNECT_FAILED, "28P01");
}

Test(pg_core, server_gone_mid_query_is_08006_for_its_client)
{
    pg_client *c = logged_in();
    pg_server *s = query(c, "SELECT 1");
    uint8_t bad[5] = {'D', 0, 0, 0, 2}; /* a length no message can have */
    fk_server_input(&w, s, bad, sizeof bad);
    cr_assert_eq(w.last_server_end, PG_END_PROTOCOL);
    expect_fatal(c, PG_END_SERVER_GONE, "08006");
}

Test(pg_core, unknown_server_message_type_ends_the_server_and_tells_its_client)
{
    pg_client *c = logged_in();
    pg_server *s = query(c, "SELECT 1");
    uint8_t b[64];
    size_t m = msg(b, 'T', "\0\0", 2); /* a whole message first: the client is at a boundary */
    m += msg(b + m, '@', "junk", 4);
    fk_server_input(&w, s, b, m);
    cr_assert_eq(w.last_server_end, PG_END_PROTOCOL, "the server connection is dropped");
    cr_assert(!fk_client_alive(&w, c));
    size_t n = fk_client_output(&w, NULL, out, sizeof out);
    char t[8];
    const char *code;
    types(out, n, t, sizeof t, 'C', &code);
    cr_assert_str_eq(t, "TE", "the unknown message is not relayed, an error follows: %s", t);
    cr_assert_str_eq(code, "08006");
}

/* A DataRow of which only the first 8 of its 20 bytes came before something ended c. */
static const uint8_t half_row[8] = {'D', 0, 0, 0, 19, 0, 1, 0};

static void expect_only_half_row(void)
{
    uint8_t got[64];
    size_t n = fk_client_output(&w, NULL, got, sizeof got);
    cr_assert_eq(n, sizeof half_row, "the client gets the relayed part and nothing after it");
    cr_assert_eq(memcmp(got, half_row, n), 0);
}

Test(pg_core, server_gone_mid_row_closes_its_client_without_a_spliced_error)
{
    pg_client *c = logged_in();
    pg_server *s = query(c, "SELECT 'hello'");
    fk_server_input(&w, s, half_row, sizeof half_row);
    cr_assert(fk_client_alive(&w, c));
    fk_server_eof(&w, s);
    cr_assert_eq(w.last_server_end, PG_END_SERVER_GONE);
    cr_assert(!fk_client_alive(&w, c));
    cr_assert_eq(w.last_client_end, PG_END_SERVER_GONE);
    expect_only_half_row();
}

Test(pg_core, client_error_mid_row_from_its_server_appends_nothing)
{
    pg_client *c = logged_in();
    pg_server *s = query(c, "SELECT 'hello'");
    fk_server_input(&w, s, half_row, sizeof half_row);
    uint8_t bad[5] = {'Q', 0, 0, 0, 3}; /* would earn an 08P01 error at a message boundary */
    fk_client_input(&w, c, bad, sizeof bad);
    cr_assert(!fk_client_alive(&w, c));
    cr_assert_eq(w.last_client_end, PG_END_PROTOCOL);
    expect_only_half_row();
}

/* Another client of the same pool, logged in without a new server connection. */
static pg_client *another_client(void)
{
    uint8_t b[256];
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, b, fk_startup(b));
    size_t n = fk_client_output(&w, c, out, sizeof out);
    char t[64];
    types(out, n, t, sizeof t, 0, NULL);
    cr_assert_str_eq(t, "RSSSSSSSSKZ", "login answered from the pool's parameters, got %s", t);
    return c;
}

/* c sends sql; its answer (taken from its output) must have the message types want. */
static size_t expect_answer(pg_client *c, const char *sql, const char *want)
{
    uint8_t b[256];
    fk_client_input(&w, c, b, msg(b, 'Q', sql, strlen(sql) + 1));
    size_t n = fk_client_output(&w, c, out, sizeof out);
    char t[16];
    types(out, n, t, sizeof t, 0, NULL);
    cr_assert_str_eq(t, want, "%s answered with %s", sql, t);
    return n;
}

/* Takes c's output: the payloads of the notifications in it, comma-separated, and nothing
 * else may be there. */
static void expect_notifications(pg_client *c, const char *want)
{
    size_t n = fk_client_output(&w, c, out, sizeof out);
    char got[256] = "";
    for (size_t pos = 0; pos < n;) {
        cr_assert_eq(out[pos], 'A', "only notifications, got '%c'", out[pos]);
        uint32_t len = pg_get_u32(out + pos + 1);
        const char *channel = (const char *)out + pos + 9;
        const char *payload = channel + strlen(channel) + 1;
        cr_assert_eq(pg_get_u32(out + pos + 5), 4243, "the notifying backend's pid");
        cr_assert_eq(strncmp(payload, channel, strlen(channel)), 0, "payload %s came on channel %s",
                     payload, channel);
        if (got[0])
            strcat(got, ",");
        strcat(got, payload);
        pos += 1 + len;
    }
    cr_assert_str_eq(got, want);
}

Test(pg_core, listen_routes_each_notification_to_its_own_listeners)
{
    pg_client *c1 = logged_in();
    pg_client *c2 = another_client();
    size_t n = expect_answer(c1, "LISTEN a", "CZ");
    cr_assert_str_eq((const char *)out + 5, "LISTEN");
    cr_assert_eq(out[n - 1], 'I');
    expect_answer(c2, "LISTEN b", "CZ");
    cr_assert_eq(w.listen_opens, 1, "one listening connection for the pool");
    cr_assert_eq(w.listens, 2, "one LISTEN per channel on it");
    cr_assert_eq(w.connects, 1, "no pooled server was needed");

    fk_notify(&w, "a", "a1");
    fk_notify(&w, "b", "b1");
    fk_notify(&w, "a", "a2");
    fk_notify(&w, "c", "c1"); /* nobody listens on c */
    expect_notifications(c1, "a1,a2");
    expect_notifications(c2, "b1");

    expect_answer(c1, "UNLISTEN a", "CZ");
    cr_assert_eq(w.unlistens, 1, "the last listener of a left");
    fk_notify(&w, "a", "a3");
    fk_notify(&w, "b", "b2");
    expect_notifications(c1, "");
    expect_notifications(c2, "b2");
}

Test(pg_core, unlisten_alone_needs_no_listening_connection)
{
    pg_client *c = logged_in();
    size_t n = expect_answer(c, "UNLISTEN *", "CZ");
    cr_assert_str_eq((const char *)out + 5, "UNLISTEN");
    cr_assert_eq(out[n - 1], 'I');
    cr_assert_eq(w.listen_opens, 0, "nothing to listen on: no connection opened");
}

Test(pg_core, notification_waits_for_the_end_of_a_row_being_streamed)
{
    pg_client *c = logged_in();
    expect_answer(c, "LISTEN a", "CZ");
    pg_server *s = query(c, "SELECT 'hello'");
    static const uint8_t row[16] = {'D', 0, 0, 0, 15, 0, 1, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    fk_server_input(&w, s, row, 8);
    fk_notify(&w, "a", "a1");
    uint8_t b[64];
    memcpy(b, row + 8, 8);
    size_t m = 8 + msg(b + 8, 'C', "SELECT 1", 9);
    m += msg(b + m, 'Z', "I", 1);
    fk_server_input(&w, s, b, m);
    size_t n = fk_client_output(&w, c, out, sizeof out);
    char t[16];
    types(out, n, t, sizeof t, 0, NULL);
    cr_assert_str_eq(t, "DCZA", "the notification follows the whole row, got %s", t);
}

Test(pg_core, shutdown_tells_idle_clients_57P01)
{
    pg_client *c = logged_in();
    w.gw->stopping = true;
    pg_core_shutdown(w.gw);
    fk_step(&w);
    expect_fatal(c, PG_END_SHUTDOWN, "57P01");
}

Test(pg_core, impossible_client_state_change_aborts, .signal = SIGABRT)
{
    pg_client *c = fk_client(&w);
    pg_client_set_state(c, PG_CL_ACTIVE); /* no server was ever linked: STARTUP -> ACTIVE */
}

Test(pg_core, impossible_server_state_change_aborts, .signal = SIGABRT)
{
    logged_in();
    pg_server *s = fk_first_server(&w);
    cr_assert_eq(s->state, PG_SV_IDLE);
    pg_server_set_state(s, PG_SV_CONNECTING);
}
