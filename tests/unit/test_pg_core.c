/* Unit tests that drive the PostgreSQL core with bytes through a fake shell: no socket, no
 * libpq, no event loop run. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
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

/* ---- server lifecycle and client limits (pg_pool.c, pg_tick.c) ---- */

/* A fresh world whose [sluice] section adds extra, with databases as its [databases] lines. */
static void world_with(const char *extra, const char *databases)
{
    char text[512];
    snprintf(text, sizeof text,
             "[sluice]\nlisten_port = 6432\npool_mode = transaction\nlog_level = error\n%s"
             "[databases]\n%s",
             extra, databases ? databases : "db = host=127.0.0.1 port=1 dbname=db\n");
    fk_fini(&w);
    cr_assert_eq(fk_init(&w, text), 0);
}

static size_t answer(uint8_t *b, const char *tag)
{
    size_t m = msg(b, 'C', tag, strlen(tag) + 1);
    return m + msg(b + m, 'Z', "I", 1);
}

/* A client whose query meets its pool's only server idle and due for a check
 * (server_check_delay 0): the server is sent server_check_query first, and the client waits. */
typedef struct checked {
    pg_client *c;
    pg_server *s; /* running the check */
    uint8_t q[64];
    size_t qlen;
} checked;

static void query_behind_check(checked *k)
{
    world_with("server_check_delay = 0\n", NULL);
    k->c = logged_in();
    k->qlen = msg(k->q, 'Q', "SELECT 2", 9);
    fk_client_input(&w, k->c, k->q, k->qlen);
    k->s = fk_first_server(&w);
    cr_assert_eq(k->s->state, PG_SV_RESETTING);
    cr_assert(k->s->checking);
    cr_assert_eq(k->c->state, PG_CL_WAITING);
    size_t n = fk_server_output(&w, k->s, out, sizeof out);
    cr_assert_gt(n, 5);
    cr_assert_eq(out[0], 'Q');
    cr_assert_str_eq((const char *)out + 5, "select 1", "the check query goes first");
}

/* s now serves the client: it got the client's query unchanged, and the client heard nothing of
 * the check. */
static void expect_served(pg_server *s, const checked *k)
{
    cr_assert_eq(s->client, k->c);
    cr_assert_eq(fk_server_output(&w, s, out, sizeof out), k->qlen);
    cr_assert_eq(memcmp(out, k->q, k->qlen), 0, "the client's query, unchanged");
    cr_assert_eq(fk_client_output(&w, k->c, out, sizeof out), 0, "no answer or error of the check");
}

Test(pg_core, passed_server_check_hands_the_server_on)
{
    checked k;
    query_behind_check(&k);
    uint8_t b[64];
    fk_server_input(&w, k.s, b, answer(b, "SELECT 1"));
    expect_served(k.s, &k);
    cr_assert_eq(k.s->pool->n_checking, 0);
}

Test(pg_core, failed_server_check_gives_the_waiting_client_another_server)
{
    checked k;
    query_behind_check(&k);
    uint8_t b[128];
    static const char err[] = "SERROR\0C42P01\0Mno such table\0";
    size_t m = msg(b, 'E', err, sizeof err);
    m += msg(b + m, 'Z', "I", 1);
    fk_server_input(&w, k.s, b, m);
    cr_assert_eq(w.last_server_end, PG_END_CHECK_FAILED);
    cr_assert_eq(w.connects, 2, "a new server is opened for the waiting client");
    cr_assert_eq(k.c->state, PG_CL_WAITING);
    fk_connect_all(&w, false);
    expect_served(fk_first_server(&w), &k); /* a fresh server is not checked */
}

Test(pg_core, server_gone_during_its_check_is_replaced_too)
{
    checked k;
    query_behind_check(&k);
    fk_server_eof(&w, k.s);
    cr_assert(fk_client_alive(&w, k.c));
    cr_assert_eq(w.connects, 2);
    fk_connect_all(&w, false);
    expect_served(fk_first_server(&w), &k);
}

Test(pg_core, server_lifetime_zero_closes_a_server_after_one_client)
{
    world_with("server_lifetime = 0\n", NULL);
    pg_client *c = logged_in();
    pg_server *s = query(c, "SELECT 1");
    uint8_t b[64];
    fk_server_input(&w, s, b, answer(b, "SELECT 1"));
    cr_assert_eq(w.last_server_end, PG_END_LIFETIME);
    cr_assert_null(fk_first_server(&w));
    cr_assert(fk_client_alive(&w, c), "the client stays");
}

Test(pg_core, client_idle_timeout_is_fatal_08P01)
{
    world_with("client_idle_timeout = 1\n", NULL);
    pg_client *c = logged_in();
    uint64_t since = c->since;
    pg_core_tick(w.gw, since + 900);
    fk_step(&w);
    cr_assert(fk_client_alive(&w, c));
    pg_core_tick(w.gw, since + 1100);
    fk_step(&w);
    expect_fatal(c, PG_END_CLIENT_IDLE, "08P01");
}

/* A client of database "db" logs in and leaves; then the janitor runs at +0.5 s, +1.5 s and
 * +1.6 s. */
static void leave_and_sweep(void)
{
    pg_client *c = logged_in();
    fk_client_input(&w, c, "X\0\0\0\4", 5);
    cr_assert(!fk_client_alive(&w, c));
    uint64_t t = gw_now(&w.ctx);
    for (unsigned ms = 500; ms <= 1600; ms += ms < 1500 ? 1000 : 100) {
        pg_core_tick(w.gw, t + ms);
        fk_step(&w);
    }
}

Test(pg_core, autodb_pool_is_freed_when_unused)
{
    world_with("autodb_idle_timeout = 1\n", "* = host=127.0.0.1 port=1\n");
    leave_and_sweep();
    cr_assert_eq(w.last_server_end, PG_END_AUTODB_IDLE);
    cr_assert_eq(w.gw->autodb_freed, 1);
    cr_assert(gw_list_empty(&w.gw->pools));
}

Test(pg_core, named_database_pool_is_kept)
{
    world_with("autodb_idle_timeout = 1\n", NULL);
    leave_and_sweep();
    cr_assert_eq(w.gw->autodb_freed, 0);
    cr_assert_not_null(fk_first_server(&w), "its idle server stays too");
}

/* ---- client authentication (pg_auth.c) ---- */

#include <stdio.h>
#include <unistd.h>

#include "auth/scram.h"

static char users_path[64];

/* A users file with one user per kind of secret, all with password "secret": alice plaintext,
 * bob an md5 hash, carol a SCRAM verifier. */
static void write_users(void)
{
    char md5[AUTH_MD5_LEN + 1], *verifier = NULL;
    auth_md5_hash("secret", "bob", md5);
    cr_assert_eq(auth_scram_make_verifier("secret", 0, &verifier), 0);
    snprintf(users_path, sizeof users_path, "/tmp/sluice-pgauth-XXXXXX");
    int fd = mkstemp(users_path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "\"alice\" \"secret\"\n\"bob\" \"%s\"\n\"carol\" \"%s\"\n", md5, verifier);
    fclose(f);
    free(verifier);
}

/* Starts the world with auth_type and extra [sluice] lines. */
static void auth_world(const char *auth_type, const char *extra)
{
    fk_fini(&w); /* the suite's setup made a trust world */
    write_users();
    char conf[1024];
    snprintf(conf, sizeof conf,
             "[sluice]\nauth_type = %s\nauth_file = %s\nlog_level = error\n%s\n[databases]\n"
             "db = host=127.0.0.1 port=1 dbname=db\n",
             auth_type, users_path, extra ? extra : "");
    cr_assert_eq(fk_init(&w, conf), 0, "%s", conf);
    unlink(users_path); /* loaded: a reload would need it, no test reloads */
}

/* A client that sent a startup packet for user (database "db"). */
static pg_client *start_as(const char *user)
{
    uint8_t b[256];
    size_t n = 8;
    pg_put_u32(b + 4, PG_PROTO_30);
    n += (size_t)sprintf((char *)b + n, "user") + 1;
    n += (size_t)sprintf((char *)b + n, "%s", user) + 1;
    n += (size_t)sprintf((char *)b + n, "database") + 1;
    n += (size_t)sprintf((char *)b + n, "db") + 1;
    b[n++] = 0;
    pg_put_u32(b, (uint32_t)n);
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, b, n);
    return c;
}

/* The one authentication request c was sent: its code, and its data in data (NUL-ended). */
static uint32_t auth_request(pg_client *c, char *data, size_t cap)
{
    size_t n = fk_client_output(&w, c, out, sizeof out);
    cr_assert_geq(n, 9, "an authentication request was sent");
    cr_assert_eq(out[0], 'R');
    uint32_t len = pg_get_u32(out + 1);
    cr_assert_eq(n, (size_t)len + 1, "one message");
    size_t dl = len - 8;
    cr_assert_lt(dl, cap);
    memcpy(data, out + 9, dl);
    data[dl] = 0;
    return pg_get_u32(out + 5);
}

static void send_password(pg_client *c, const char *pw)
{
    static uint8_t b[16384];
    fk_client_input(&w, c, b, msg(b, 'p', pw, strlen(pw) + 1));
}

static void send_sasl_initial(pg_client *c, const char *mech, const char *data)
{
    uint8_t b[4096], body[4096];
    size_t n = strlen(mech) + 1;
    memcpy(body, mech, n);
    pg_put_u32(body + n, data ? (uint32_t)strlen(data) : UINT32_MAX);
    n += 4;
    if (data) {
        memcpy(body + n, data, strlen(data));
        n += strlen(data);
    }
    fk_client_input(&w, c, b, msg(b, 'p', body, n));
}

static void send_sasl(pg_client *c, const char *data, size_t len)
{
    static uint8_t b[16384];
    fk_client_input(&w, c, b, msg(b, 'p', data, len));
}

/* The login ends as for trust: the pool's first server connects, then AuthenticationOk,
 * parameters, BackendKeyData, ReadyForQuery. */
static void expect_logged_in(pg_client *c)
{
    cr_assert(fk_client_alive(&w, c));
    cr_assert_eq(c->state, PG_CL_LOGIN_WAIT);
    cr_assert_null(c->login->auth, "the exchange is freed");
    fk_connect_all(&w, false);
    size_t n = fk_client_output(&w, c, out, sizeof out);
    char t[64];
    types(out, n, t, sizeof t, 0, NULL);
    cr_assert_str_eq(t, "RSSSSSSSSKZ", "got %s", t);
    cr_assert_eq(pg_get_u32(out + 5), PG_AUTH_REQ_OK);
    cr_assert_eq(c->state, PG_CL_IDLE);
}

/* As expect_fatal, and the message text. */
static void expect_fatal_text(pg_client *c, pg_end why, const char *sqlstate, const char *text)
{
    cr_assert(!fk_client_alive(&w, c));
    cr_assert_eq(w.last_client_end, why, "ended %s, not %s", pg_end_name(w.last_client_end),
                 pg_end_name(why));
    size_t n = fk_client_output(&w, NULL, out, sizeof out);
    cr_assert_gt(n, 5);
    cr_assert_eq(out[0], 'E');
    cr_assert_str_eq(pg_error_field(out + 5, n - 5, 'C'), sqlstate);
    if (text)
        cr_assert_str_eq(pg_error_field(out + 5, n - 5, 'M'), text);
}

/* Runs a SCRAM exchange as a client with password; returns what the last step answered
 * (the client is logged in or closed). */
static void scram_login(pg_client *c, const char *password, bool expect_ok)
{
    char data[AUTH_SCRAM_MSG_MAX * 2];
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_SASL);
    cr_assert_str_eq(data, "SCRAM-SHA-256", "SCRAM-SHA-256 and the empty end of the list");
    auth_scram_client sc;
    char first[AUTH_SCRAM_MSG_MAX], final[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_scram_client_init_password(&sc, password), 0);
    cr_assert_eq(auth_scram_client_first(&sc, first), 0);
    send_sasl_initial(c, "SCRAM-SHA-256", first);
    cr_assert_eq(c->state, PG_CL_AUTH);
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_SASL_CONTINUE);
    const char *why = NULL;
    cr_assert_eq(auth_scram_client_final(&sc, data, strlen(data), final, &why), 0, "%s", why);
    send_sasl(c, final, strlen(final));
    if (!expect_ok)
        return;
    cr_assert(fk_client_alive(&w, c));
    /* SASLFinal comes at once; AuthenticationOk once the pool's server is there. */
    size_t n = fk_client_output(&w, c, out, sizeof out);
    cr_assert_eq(out[0], 'R');
    cr_assert_eq(pg_get_u32(out + 5), PG_AUTH_REQ_SASL_FINAL);
    cr_assert_eq(n, pg_get_u32(out + 1) + 1u);
    cr_assert_eq(auth_scram_client_verify(&sc, (const char *)out + 9, n - 9, &why), 0,
                 "the server proved it knows the verifier");
    expect_logged_in(c);
    cr_assert_null(c->login, "a logged-in client holds no secret, nor any login state");
    cr_assert_neq(c->pool->cred.kind, PG_CRED_NONE, "its pool learned how to log in as it");
}

Test(pg_core, auth_plain_over_a_unix_socket)
{
    auth_world("plain", NULL);
    w.peer_unix = true;
    pg_client *c = start_as("alice");
    char data[64];
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_PASSWORD);
    cr_assert_eq(c->state, PG_CL_AUTH);
    send_password(c, "secret");
    expect_logged_in(c);
    cr_assert_null(c->login, "a logged-in client holds no secret, nor any login state");
    cr_assert_eq(c->pool->cred.kind, PG_CRED_PASSWORD);
    cr_assert_str_eq(c->pool->cred.password, "secret", "the pool keeps it for the server login");
}

Test(pg_core, auth_plain_over_tcp_needs_the_operator_to_allow_it)
{
    auth_world("plain", NULL);
    pg_client *c = start_as("alice");
    expect_fatal(c, PG_END_LOGIN_REFUSED, "28000");
    fk_fini(&w);
    cr_assert_eq(fk_init(&w, NULL), 0);
    auth_world("plain", "auth_plain_without_tls = 1");
    c = start_as("alice");
    char data[64];
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_PASSWORD);
    send_password(c, "secret");
    expect_logged_in(c);
}

Test(pg_core, auth_wrong_password_and_unknown_user_look_the_same)
{
    auth_world("plain", "auth_plain_without_tls = 1");
    char data[64];
    pg_client *c = start_as("alice");
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_PASSWORD);
    send_password(c, "wrong");
    expect_fatal_text(c, PG_END_AUTH_FAILED, "28P01",
                      "password authentication failed for user \"alice\"");
    c = start_as("nobody");
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_PASSWORD,
                 "an unknown user is asked for a password too");
    send_password(c, "secret");
    expect_fatal_text(c, PG_END_AUTH_FAILED, "28P01",
                      "password authentication failed for user \"nobody\"");
}

/* An md5 login as user with password; the challenge must be md5. */
static void md5_login(pg_client *c, const char *user, const char *password)
{
    char data[64], hash[AUTH_MD5_LEN + 1], resp[AUTH_MD5_LEN + 1];
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_MD5);
    auth_md5_hash(password, user, hash);
    auth_md5_response(hash, (const uint8_t *)data, resp);
    send_password(c, resp);
}

Test(pg_core, auth_md5_with_md5_and_plaintext_secrets)
{
    auth_world("md5", NULL);
    pg_client *c = start_as("bob");
    md5_login(c, "bob", "secret");
    expect_logged_in(c);
    cr_assert_eq(c->pool->cred.kind, PG_CRED_MD5, "md5 passthrough from the hash");

    pg_client *a = start_as("alice");
    md5_login(a, "alice", "secret");
    expect_logged_in(a);
    cr_assert_eq(a->pool->cred.kind, PG_CRED_PASSWORD, "the plaintext secret");

    pg_client *x = start_as("bob");
    md5_login(x, "bob", "wrong");
    expect_fatal_text(x, PG_END_AUTH_FAILED, "28P01",
                      "password authentication failed for user \"bob\"");
    x = start_as("nobody");
    md5_login(x, "nobody", "secret");
    expect_fatal_text(x, PG_END_AUTH_FAILED, "28P01",
                      "password authentication failed for user \"nobody\"");
}

Test(pg_core, auth_md5_asks_a_scram_user_for_scram)
{
    auth_world("md5", NULL);
    scram_login(start_as("carol"), "secret", true);
}

Test(pg_core, auth_scram_with_verifier_and_plaintext_secrets)
{
    auth_world("scram-sha-256", NULL);
    scram_login(start_as("carol"), "secret", true);
    scram_login(start_as("alice"), "secret", true);
}

Test(pg_core, auth_scram_failures_look_the_same)
{
    auth_world("scram-sha-256", NULL);
    pg_client *c = start_as("carol");
    scram_login(c, "wrong", false);
    expect_fatal_text(c, PG_END_AUTH_FAILED, "28P01",
                      "password authentication failed for user \"carol\"");
    c = start_as("nobody");
    scram_login(c, "secret", false);
    expect_fatal_text(c, PG_END_AUTH_FAILED, "28P01",
                      "password authentication failed for user \"nobody\"");
    c = start_as("bob"); /* an md5 hash cannot serve SCRAM */
    scram_login(c, "secret", false);
    expect_fatal_text(c, PG_END_AUTH_FAILED, "28P01",
                      "password authentication failed for user \"bob\"");
}

/* The "s=...,i=..." part of the server-first message a SCRAM client gets as user (the client
 * then leaves). */
static void salt_offered(const char *user, char *salt, size_t cap)
{
    pg_client *c = start_as(user);
    char data[AUTH_SCRAM_MSG_MAX * 2], first[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_SASL);
    auth_scram_client sc;
    cr_assert_eq(auth_scram_client_init_password(&sc, "x"), 0);
    cr_assert_eq(auth_scram_client_first(&sc, first), 0);
    send_sasl_initial(c, "SCRAM-SHA-256", first);
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_SASL_CONTINUE);
    const char *s = strstr(data, ",s=");
    cr_assert_not_null(s);
    snprintf(salt, cap, "%s", s + 1);
    pg_conn_input_ended(&c->conn, true, NULL);
    fk_step(&w);
}

/* A plaintext user's verifier is derived once and kept: the same salt at every attempt, like a
 * stored verifier's and an unknown user's, and of the same shape as the unknown user's. */
Test(pg_core, auth_scram_salts_do_not_tell_plaintext_users_from_unknown_ones)
{
    auth_world("scram-sha-256", NULL);
    char a1[128], a2[128], n1[128], n2[128];
    salt_offered("alice", a1, sizeof a1);
    salt_offered("alice", a2, sizeof a2);
    salt_offered("nobody", n1, sizeof n1);
    salt_offered("nobody", n2, sizeof n2);
    cr_assert_str_eq(a1, a2, "a plaintext user keeps its salt");
    cr_assert_str_eq(n1, n2, "an unknown user keeps its salt");
    cr_assert_str_neq(a1, n1);
    cr_assert_eq(strlen(a1), strlen(n1), "same salt length and iterations: %s vs %s", a1, n1);
    cr_assert_str_eq(strstr(a1, ",i="), strstr(n1, ",i="));
}

/* A SCRAM exchange taken to the client-final step; returns the client-final it would send in
 * final, and leaves the client waiting for it. */
static pg_client *scram_until_final(auth_scram_client *sc, char final[AUTH_SCRAM_MSG_MAX])
{
    pg_client *c = start_as("carol");
    char data[AUTH_SCRAM_MSG_MAX * 2], first[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_SASL);
    cr_assert_eq(auth_scram_client_init_password(sc, "secret"), 0);
    cr_assert_eq(auth_scram_client_first(sc, first), 0);
    send_sasl_initial(c, "SCRAM-SHA-256", first);
    cr_assert_eq(auth_request(c, data, sizeof data), PG_AUTH_REQ_SASL_CONTINUE);
    const char *why;
    cr_assert_eq(auth_scram_client_final(sc, data, strlen(data), final, &why), 0);
    return c;
}

Test(pg_core, auth_hostile_sasl_inputs_are_protocol_errors)
{
    auth_world("scram-sha-256", NULL);
    auth_scram_client sc;
    char final[AUTH_SCRAM_MSG_MAX], bad[AUTH_SCRAM_MSG_MAX * 8];

    /* A second SASLInitialResponse where the client-final belongs. */
    pg_client *c = scram_until_final(&sc, final);
    send_sasl_initial(c, "SCRAM-SHA-256", "n,,n=,r=abc");
    expect_fatal(c, PG_END_PROTOCOL, "08P01");

    /* Bad base64 in the proof. */
    c = scram_until_final(&sc, final);
    snprintf(bad, sizeof bad, "%.*sp=!!!notbase64!!!", (int)(strstr(final, "p=") - final), final);
    send_sasl(c, bad, strlen(bad));
    expect_fatal(c, PG_END_PROTOCOL, "08P01");

    /* A nonce that is not the server's. */
    c = scram_until_final(&sc, final);
    char *r = strstr(final, "r=");
    r[2] = r[2] == 'A' ? 'B' : 'A';
    send_sasl(c, final, strlen(final));
    expect_fatal(c, PG_END_PROTOCOL, "08P01");

    /* A truncated client-final. */
    c = scram_until_final(&sc, final);
    send_sasl(c, final, strlen(final) / 2);
    expect_fatal(c, PG_END_PROTOCOL, "08P01");

    /* A proof of the wrong length (valid base64 of 8 bytes). */
    c = scram_until_final(&sc, final);
    snprintf(bad, sizeof bad, "%.*sp=AAAAAAAAAAA=", (int)(strstr(final, "p=") - final), final);
    send_sasl(c, bad, strlen(bad));
    cr_assert(!fk_client_alive(&w, c));
    cr_assert(w.last_client_end == PG_END_PROTOCOL || w.last_client_end == PG_END_AUTH_FAILED);
    fk_client_output(&w, NULL, NULL, 0);

    /* A client-final over AUTH_SCRAM_INPUT_MAX. */
    c = scram_until_final(&sc, final);
    memset(bad, 'x', sizeof bad);
    send_sasl(c, bad, AUTH_SCRAM_INPUT_MAX + 1);
    expect_fatal(c, PG_END_PROTOCOL, "08P01");

    /* Another mechanism, no initial response, a malformed client-first. */
    c = start_as("carol");
    fk_client_output(&w, c, NULL, 0);
    send_sasl_initial(c, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc");
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
    c = start_as("carol");
    fk_client_output(&w, c, NULL, 0);
    send_sasl_initial(c, "SCRAM-SHA-256", NULL);
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
    c = start_as("carol");
    fk_client_output(&w, c, NULL, 0);
    send_sasl_initial(c, "SCRAM-SHA-256", "garbage");
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
}

Test(pg_core, auth_out_of_order_and_oversize_messages)
{
    auth_world("md5", NULL);
    /* A Query before the login ends. */
    pg_client *c = start_as("bob");
    fk_client_output(&w, c, NULL, 0);
    uint8_t b[64];
    fk_client_input(&w, c, b, msg(b, 'Q', "SELECT 1", 9));
    expect_fatal_text(c, PG_END_PROTOCOL, "08P01",
                      "expected password response, got message type 81");
    /* A password message over the bound. */
    c = start_as("bob");
    fk_client_output(&w, c, NULL, 0);
    static char big[9000];
    memset(big, 'x', sizeof big - 1);
    send_password(c, big);
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
    /* A password message whose string does not fill it. */
    c = start_as("bob");
    fk_client_output(&w, c, NULL, 0);
    fk_client_input(&w, c, b, msg(b, 'p', "md5\0junk", 8));
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
    /* Terminate during the exchange: a plain goodbye. */
    c = start_as("bob");
    fk_client_output(&w, c, NULL, 0);
    fk_client_input(&w, c, b, msg(b, 'X', "", 0));
    cr_assert(!fk_client_alive(&w, c));
    cr_assert_eq(w.last_client_end, PG_END_CLIENT_LEFT);
    /* The login timeout covers the exchange, counted from the connection, not from the last
     * login state entered (as if the startup packet had come 50 s after the connect). */
    c = start_as("bob");
    fk_client_output(&w, c, NULL, 0);
    c->since += 50000;
    uint64_t accepted = c->login->accepted;
    pg_core_tick(w.gw, accepted + 59000);
    fk_step(&w);
    cr_assert(fk_client_alive(&w, c));
    pg_core_tick(w.gw, accepted + 61000);
    fk_step(&w);
    expect_fatal(c, PG_END_LOGIN_TIMEOUT, "08P01");
}

Test(pg_core, auth_password_message_under_trust_is_a_protocol_error)
{
    pg_client *c = logged_in();
    uint8_t b[64];
    fk_client_input(&w, c, b, msg(b, 'p', "secret", 7));
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
}

Test(pg_core, auth_huge_user_name_in_startup_is_refused)
{
    auth_world("md5", NULL);
    static uint8_t b[1 << 20];
    size_t n = 8;
    pg_put_u32(b + 4, PG_PROTO_30);
    memcpy(b + n, "user", 5);
    n += 5;
    memset(b + n, 'u', sizeof b - n - 2);
    n = sizeof b;
    b[n - 2] = b[n - 1] = 0;
    pg_put_u32(b, (uint32_t)n);
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, b, n);
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
}

/* hba: writes the rules and starts an hba world on them. */
static void hba_world(const char *rules)
{
    char hba[64];
    snprintf(hba, sizeof hba, "/tmp/sluice-pghba-XXXXXX");
    int fd = mkstemp(hba);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, rules, strlen(rules)), (ssize_t)strlen(rules));
    close(fd);
    char extra[128];
    snprintf(extra, sizeof extra, "auth_hba_file = %s", hba);
    auth_world("hba", extra);
    unlink(hba);
}

Test(pg_core, auth_hba_picks_the_first_matching_line)
{
    hba_world("local all all trust\n"
              "host all alice 127.0.0.1/32 reject\n"
              "host all bob 127.0.0.1/32 md5\n"
              "host all carol 127.0.0.1/32 scram-sha-256\n"
              "host all dave 127.0.0.1/32 password\n"
              "host all erin 127.0.0.1/32 cert\n");
    w.peer_unix = true;
    pg_client *c = start_as("anyone");
    fk_connect_all(&w, false);
    cr_assert(fk_client_alive(&w, c));
    cr_assert_eq(c->state, PG_CL_IDLE, "local trust");
    fk_client_output(&w, c, NULL, 0);

    w.peer_unix = false;
    c = start_as("alice");
    expect_fatal_text(c, PG_END_LOGIN_REFUSED, "28000",
                      "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"alice\", "
                      "database \"db\", no encryption");
    c = start_as("bob");
    md5_login(c, "bob", "secret");
    cr_assert(fk_client_alive(&w, c));
    c = start_as("carol");
    scram_login(c, "secret", false);
    cr_assert(fk_client_alive(&w, c));
    c = start_as("dave");
    expect_fatal(c, PG_END_LOGIN_REFUSED, "28000"); /* password over TCP, not allowed */
    c = start_as("erin");
    expect_fatal_text(c, PG_END_LOGIN_REFUSED, "28000",
                      "certificate authentication requires an SSL connection");
    w.peer_ipv4 = 0x0a000001u; /* 10.0.0.1: outside every CIDR */
    c = start_as("bob");
    expect_fatal_text(c, PG_END_LOGIN_REFUSED, "28000",
                      "no pg_hba.conf entry for host \"10.0.0.1\", user \"bob\", database "
                      "\"db\", no encryption");
}

Test(pg_core, auth_query_hook_waits_for_the_shell)
{
    auth_world("md5", "auth_user = pgb");
    /* A user missing from auth_file is looked up; the client waits. */
    pg_client *c = start_as("zed");
    cr_assert_eq(w.lookups, 1);
    cr_assert_eq(w.lookup_client, c);
    cr_assert_str_eq(pg_auth_user(c), "zed");
    cr_assert_str_eq(pg_auth_dbname(c), "db");
    cr_assert_eq(fk_client_output(&w, c, NULL, 0), 0, "no challenge before the answer");
    char hash[AUTH_MD5_LEN + 1];
    auth_md5_hash("pw", "zed", hash);
    w.lookup_client = NULL;
    pg_auth_lookup_done(c, hash, NULL);
    fk_step(&w);
    md5_login(c, "zed", "pw");
    expect_logged_in(c);

    /* Not found: the exchange runs and fails like a wrong password. */
    c = start_as("yan");
    w.lookup_client = NULL;
    pg_auth_lookup_done(c, NULL, NULL);
    fk_step(&w);
    md5_login(c, "yan", "pw");
    expect_fatal_text(c, PG_END_AUTH_FAILED, "28P01",
                      "password authentication failed for user \"yan\"");

    /* A failed lookup is an error of its own. */
    c = start_as("xi");
    w.lookup_client = NULL;
    pg_auth_lookup_done(c, NULL, "connection refused");
    fk_step(&w);
    expect_fatal_text(c, PG_END_LOGIN_REFUSED, "28000",
                      "authentication lookup failed for user \"xi\"");

    /* A message during the lookup is out of order; the lookup is cancelled. */
    c = start_as("wu");
    uint8_t b[64];
    fk_client_input(&w, c, b, msg(b, 'p', "x", 2));
    expect_fatal(c, PG_END_PROTOCOL, "08P01");
    cr_assert_eq(w.lookup_cancels, 1);
    cr_assert_null(w.lookup_client);

    /* No lookup possible: an unknown user. */
    w.lookup_unavailable = true;
    c = start_as("vo");
    md5_login(c, "vo", "pw");
    expect_fatal(c, PG_END_AUTH_FAILED, "28P01");
}

Test(pg_core, auth_cert_is_refused_without_tls)
{
    auth_world("cert", NULL);
    pg_client *c = start_as("alice");
    expect_fatal_text(c, PG_END_LOGIN_REFUSED, "28000",
                      "certificate authentication requires an SSL connection");
}
