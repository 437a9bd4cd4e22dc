#define _GNU_SOURCE
/* Sluice's own login to a server (pg_login.c), driven through the fake shell: md5 passthrough
 * from the stored hash, SCRAM passthrough from a ClientKey against a real SCRAM server exchange
 * (the auth library's server end plays PostgreSQL), and servers that misbehave during login. */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/scram.h"
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

TestSuite(pg_login, .init = setup, .fini = teardown);

static uint8_t out[1 << 16];

static size_t msg(uint8_t *buf, uint8_t t, const void *b, size_t len)
{
    buf[0] = t;
    pg_put_u32(buf + 1, (uint32_t)len + 4);
    memcpy(buf + 5, b, len);
    return len + 5;
}

/* An authentication request: code, then extra bytes. */
static size_t auth_req(uint8_t *buf, uint32_t code, const void *extra, size_t len)
{
    uint8_t body[1024];
    pg_put_u32(body, code);
    memcpy(body + 4, extra, len);
    return msg(buf, 'R', body, len + 4);
}

/* What a server sends once the client is authenticated: AuthenticationOk, two parameters,
 * BackendKeyData (pid 777, key 4242) and ReadyForQuery. */
static size_t after_auth(uint8_t *buf)
{
    size_t m = auth_req(buf, 0, "", 0);
    m += msg(buf + m, 'S',
             "server_version\0"
             "15.0\0",
             20);
    m += msg(buf + m, 'S',
             "client_encoding\0"
             "UTF8\0",
             21);
    uint8_t k[8];
    pg_put_u32(k, 777);
    pg_put_u32(k + 4, 4242);
    m += msg(buf + m, 'K', k, 8);
    m += msg(buf + m, 'Z', "I", 1);
    return m;
}

/* A client of pool db/u starts a pool whose credential the test sets, then the pool's server
 * is dialled: its startup packet must name the user and database. */
static pg_server *dial(pg_client **cp, void (*set_cred)(pg_pool *))
{
    uint8_t b[256];
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, b, fk_startup(b));
    cr_assert_eq(w.connects, 1);
    pg_server *s = fk_first_server(&w);
    cr_assert_not_null(s);
    set_cred(s->pool);
    cr_assert(pg_login_wanted(s->pool));
    pg_login_begin(s);
    fk_step(&w);
    size_t n = fk_server_output(&w, s, out, sizeof out);
    cr_assert_gt(n, 8);
    cr_assert_eq(pg_get_u32(out), n, "one startup packet");
    cr_assert_eq(pg_get_u32(out + 4), PG_PROTO_30);
    cr_assert(memmem(out, n, "user\0u\0", 7), "names the user");
    cr_assert(memmem(out, n, "database\0db\0", 12), "names the database");
    *cp = c;
    return s;
}

static void md5_cred(pg_pool *p)
{
    p->cred.kind = PG_CRED_MD5;
    auth_md5_hash("secret", "u", p->cred.md5);
}

Test(pg_login, md5_passthrough_answers_from_the_hash)
{
    pg_client *c;
    pg_server *s = dial(&c, md5_cred);
    uint8_t b[512], salt[4] = {1, 2, 3, 4};
    fk_server_input(&w, s, b, auth_req(b, 5, salt, 4));
    size_t n = fk_server_output(&w, s, out, sizeof out);
    /* md5(md5("secret" "u") hex, salt), computed independently of the library. */
    char inner[33], want[36];
    unsigned char d[16];
    unsigned int dl;
    EVP_Digest("secretu", 7, d, &dl, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        sprintf(inner + 2 * i, "%02x", d[i]);
    uint8_t buf2[36];
    memcpy(buf2, inner, 32);
    memcpy(buf2 + 32, salt, 4);
    EVP_Digest(buf2, 36, d, &dl, EVP_md5(), NULL);
    strcpy(want, "md5");
    for (int i = 0; i < 16; i++)
        sprintf(want + 3 + 2 * i, "%02x", d[i]);
    cr_assert_eq(out[0], 'p');
    cr_assert_eq(n, 5 + 36);
    cr_assert_str_eq((const char *)out + 5, want);
    fk_server_input(&w, s, b, after_auth(b));
    cr_assert(fk_client_alive(&w, c));
    cr_assert_eq(c->state, PG_CL_IDLE, "the waiting client logged in");
    cr_assert_eq(s->backend_pid, 777);
    cr_assert_eq(s->backend_key, 4242);
    cr_assert_null(s->login);
}

/* ClientKey and ServerKey of password "pencil" with salt/iterations, as a client's proof would
 * reveal them. */
static auth_scram_verifier ver;
static uint8_t client_key[32];

static void scram_cred(pg_pool *p)
{
    static const uint8_t salt[16] = "0123456789abcdef";
    cr_assert_eq(auth_scram_derive(false, NULL, "pencil", salt, 16, 4096, &ver), 0);
    uint8_t salted[32];
    unsigned int len = 32;
    cr_assert(PKCS5_PBKDF2_HMAC("pencil", 6, salt, 16, 4096, EVP_sha256(), 32, salted));
    HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10, client_key, &len);
    p->cred.kind = PG_CRED_SCRAM;
    memcpy(p->cred.client_key, client_key, 32);
    memcpy(p->cred.server_key, ver.server_key, 32);
}

/* The body of the 'p' message in out: a SASLInitialResponse's data, or a SASLResponse. */
static const char *sasl_data(size_t n, bool initial, size_t *len)
{
    cr_assert_eq(out[0], 'p');
    cr_assert_eq(pg_get_u32(out + 1) + 1, n);
    if (!initial) {
        *len = n - 5;
        return (const char *)out + 5;
    }
    cr_assert_str_eq((const char *)out + 5, "SCRAM-SHA-256");
    const uint8_t *p = out + 5 + 14;
    *len = pg_get_u32(p);
    return (const char *)p + 4;
}

static uint8_t seed[32];

Test(pg_login, scram_passthrough_convinces_a_real_scram_server)
{
    pg_client *c;
    pg_server *s = dial(&c, scram_cred);
    uint8_t b[2048];
    size_t m = auth_req(b, 10, "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0", 34);
    fk_server_input(&w, s, b, m);
    size_t len, n = fk_server_output(&w, s, out, sizeof out);
    const char *first = sasl_data(n, true, &len);
    cr_assert(len > 3 && memcmp(first, "n,,", 3) == 0, "no channel binding without TLS");

    auth_scram_server srv;
    const char *why = NULL;
    char reply[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_scram_server_init(&srv, &ver, "u", seed, false), 0);
    cr_assert_eq(auth_scram_server_first(&srv, first, len, reply, &why), 0, "%s", why);
    fk_server_input(&w, s, b, auth_req(b, 11, reply, strlen(reply)));
    n = fk_server_output(&w, s, out, sizeof out);
    const char *final = sasl_data(n, false, &len);
    cr_assert_eq(auth_scram_server_final(&srv, final, len, reply, &why), 0,
                 "the server accepts the proof made from the ClientKey (%s)", why ? why : "");
    cr_assert_eq(memcmp(srv.client_key, client_key, 32), 0);
    m = auth_req(b, 12, reply, strlen(reply));
    m += after_auth(b + m);
    fk_server_input(&w, s, b, m);
    cr_assert(fk_client_alive(&w, c));
    cr_assert_eq(c->state, PG_CL_IDLE);
    cr_assert_null(s->login);
}

/* The server must prove it knows the verifier: a wrong signature ends the attempt. */
Test(pg_login, scram_server_with_a_wrong_signature_is_refused)
{
    pg_client *c;
    pg_server *s = dial(&c, scram_cred);
    uint8_t b[2048];
    fk_server_input(&w, s, b, auth_req(b, 10, "SCRAM-SHA-256\0", 15));
    size_t len, n = fk_server_output(&w, s, out, sizeof out);
    const char *first = sasl_data(n, true, &len);
    auth_scram_server srv;
    const char *why = NULL;
    char reply[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_scram_server_init(&srv, &ver, "u", seed, false), 0);
    cr_assert_eq(auth_scram_server_first(&srv, first, len, reply, &why), 0);
    fk_server_input(&w, s, b, auth_req(b, 11, reply, strlen(reply)));
    fk_server_output(&w, s, out, sizeof out);
    static const char bad[] = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    size_t m = auth_req(b, 12, bad, sizeof bad - 1);
    m += after_auth(b + m);
    fk_server_input(&w, s, b, m);
    cr_assert_eq(w.last_server_end, PG_END_CONNECT_FAILED);
    cr_assert(!fk_client_alive(&w, c),
              "the client is not logged in on a server that did not prove itself");
}

/* Servers that do not follow the protocol during the login: each attempt fails cleanly. */
static void refused(void (*cred)(pg_pool *), const uint8_t *b, size_t m)
{
    pg_client *c;
    pg_server *s = dial(&c, cred);
    fk_server_input(&w, s, b, m);
    cr_assert_eq(w.last_server_end, PG_END_CONNECT_FAILED);
    cr_assert_null(fk_first_server(&w), "the attempt is over");
}

/* A server that trusts the user asks for nothing: as with libpq, that is a login. */
Test(pg_login, trusting_server_needs_no_exchange)
{
    pg_client *c;
    uint8_t b[256];
    pg_server *s = dial(&c, scram_cred);
    fk_server_input(&w, s, b, after_auth(b));
    cr_assert_eq(c->state, PG_CL_IDLE);
}

/* Once the SCRAM exchange has begun, the server must finish it (prove itself) before Ok. */
Test(pg_login, ok_in_the_middle_of_the_scram_exchange_is_refused)
{
    uint8_t b[256];
    pg_client *c;
    pg_server *s = dial(&c, scram_cred);
    fk_server_input(&w, s, b, auth_req(b, 10, "SCRAM-SHA-256\0", 15));
    fk_server_output(&w, s, out, sizeof out);
    fk_server_input(&w, s, b, after_auth(b));
    cr_assert_eq(w.last_server_end, PG_END_CONNECT_FAILED);
    cr_assert(!fk_client_alive(&w, c));
}

Test(pg_login, md5_request_with_only_a_scram_key_is_refused)
{
    uint8_t b[256];
    refused(scram_cred, b, auth_req(b, 5, "salt", 4));
}

Test(pg_login, cleartext_request_is_refused)
{
    uint8_t b[256];
    refused(md5_cred, b, auth_req(b, 3, "", 0));
}

Test(pg_login, ready_before_authentication_is_refused)
{
    uint8_t b[256];
    refused(md5_cred, b, msg(b, 'Z', "I", 1));
}

Test(pg_login, huge_login_message_is_refused)
{
    uint8_t b[8] = {'R', 0x40, 0, 0, 0};
    refused(md5_cred, b, 5);
}

Test(pg_login, server_refusal_keeps_its_sqlstate)
{
    uint8_t b[256];
    static const char err[] = "SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for "
                              "user \"u\"\0";
    pg_client *c;
    pg_server *s = dial(&c, md5_cred);
    pg_pool *p = s->pool;
    fk_server_input(&w, s, b, msg(b, 'E', err, sizeof err));
    cr_assert_str_eq(p->last_sqlstate, "28P01");
    cr_assert(!fk_client_alive(&w, c), "the waiting client got the refusal");
    size_t n = fk_client_output(&w, NULL, out, sizeof out);
    cr_assert_gt(n, 5);
    cr_assert_str_eq(pg_error_field(out + 5, n - 5, 'C'), "28P01");
}

/* ---- TLS first (the shell can do it; sslmode from server_tls_sslmode) ---- */

static const char *const tls_config[] = {
    "[sluice]\nlisten_port = 6432\nlog_level = error\nserver_tls_sslmode = require\n"
    "[databases]\ndb = host=127.0.0.1 port=1 dbname=db\n",
    "[sluice]\nlisten_port = 6432\nlog_level = error\nserver_tls_sslmode = prefer\n"
    "[databases]\ndb = host=127.0.0.1 port=1 dbname=db\n",
};

/* Like dial, but the first thing sent must be an SSLRequest. */
static pg_server *dial_tls(pg_client **cp, const char *config)
{
    fk_fini(&w);
    cr_assert_eq(fk_init(&w, config), 0);
    w.server_tls = true;
    uint8_t b[256];
    pg_client *c = fk_client(&w);
    fk_client_input(&w, c, b, fk_startup(b));
    pg_server *s = fk_first_server(&w);
    cr_assert_not_null(s);
    md5_cred(s->pool);
    pg_login_begin(s);
    fk_step(&w);
    size_t n = fk_server_output(&w, s, out, sizeof out);
    cr_assert_eq(n, 8, "only the SSLRequest");
    cr_assert_eq(pg_get_u32(out), 8);
    cr_assert_eq(pg_get_u32(out + 4), PG_CODE_SSL);
    *cp = c;
    return s;
}

Test(pg_login, tls_is_asked_for_first_and_the_login_follows_the_handshake)
{
    pg_client *c;
    pg_server *s = dial_tls(&c, tls_config[0]);
    fk_server_input(&w, s, "S", 1);
    cr_assert_eq(w.tls_starts, 1);
    cr_assert_eq(fk_server_output(&w, s, out, sizeof out), 0, "nothing before the handshake");
    pg_login_tls_ready(s);
    fk_step(&w);
    size_t n = fk_server_output(&w, s, out, sizeof out);
    cr_assert_eq(pg_get_u32(out + 4), PG_PROTO_30, "the startup packet, now");
    cr_assert_eq(pg_get_u32(out), n);
    uint8_t b[512], salt[4] = {1, 2, 3, 4};
    fk_server_input(&w, s, b, auth_req(b, 5, salt, 4));
    fk_server_output(&w, s, out, sizeof out);
    fk_server_input(&w, s, b, after_auth(b));
    cr_assert_eq(c->state, PG_CL_IDLE);
}

Test(pg_login, require_refuses_a_server_without_tls)
{
    pg_client *c;
    pg_server *s = dial_tls(&c, tls_config[0]);
    fk_server_input(&w, s, "N", 1);
    cr_assert_eq(w.last_server_end, PG_END_CONNECT_FAILED);
    cr_assert_eq(w.tls_starts, 0);
    cr_assert(!fk_client_alive(&w, c));
}

Test(pg_login, prefer_goes_on_in_cleartext_after_n)
{
    pg_client *c;
    pg_server *s = dial_tls(&c, tls_config[1]);
    fk_server_input(&w, s, "N", 1);
    size_t n = fk_server_output(&w, s, out, sizeof out);
    cr_assert_gt(n, 8);
    cr_assert_eq(pg_get_u32(out + 4), PG_PROTO_30);
    uint8_t b[256];
    fk_server_input(&w, s, b, after_auth(b));
    cr_assert_eq(c->state, PG_CL_IDLE);
}

Test(pg_login, bytes_after_the_ssl_answer_or_before_the_handshake_are_refused)
{
    /* 'S' with a forged AuthenticationOk behind it in the same read. */
    pg_client *c;
    pg_server *s = dial_tls(&c, tls_config[1]);
    uint8_t b[256];
    b[0] = 'S';
    size_t m = 1 + after_auth(b + 1);
    fk_server_input(&w, s, b, m);
    cr_assert_eq(w.last_server_end, PG_END_CONNECT_FAILED);
    cr_assert_eq(w.tls_starts, 0);
    cr_assert(!fk_client_alive(&w, c));

    /* Plaintext after 'S', in a later read, before the handshake ended. */
    s = dial_tls(&c, tls_config[1]);
    fk_server_input(&w, s, "S", 1);
    fk_server_input(&w, s, b + 1, m - 1);
    cr_assert_eq(w.last_server_end, PG_END_CONNECT_FAILED);
    cr_assert(!fk_client_alive(&w, c));

    /* Neither 'S' nor 'N'. */
    s = dial_tls(&c, tls_config[1]);
    fk_server_input(&w, s, "E", 1);
    cr_assert_eq(w.last_server_end, PG_END_CONNECT_FAILED);
}
