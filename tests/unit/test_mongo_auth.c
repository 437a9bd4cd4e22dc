/* Unit tests for clients logging in to the MongoDB front end (mongo_auth.c), driven through the
 * fake shell: SCRAM-SHA-256 and SCRAM-SHA-1 as drivers speak them (saslStart/saslContinue, with
 * and without skipEmptyExchange, speculativeAuthenticate in hello), the mechanisms hello offers,
 * the gate before a login, and hostile conversations. The client side of SCRAM is written here
 * from RFC 5802 and the MongoDB auth spec with libcrypto, independently of the auth library. */
#include <bson/bson.h>
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"
#include "tests/unit/test_mongo_fake_shell.h"

static fake_shell fs;
static auth_userlist *users;
static int n_seen; /* requests that reached a backend */
static char seen_cmd[64];

/* alice and bob: plaintext; vera: a SCRAM-SHA-256 verifier of "pencil" (made by the auth
 * library, as --make-verifier makes them); mark: an md5 hash. */
static const char users_text[] = "\"alice\" \"secret\"\n"
                                 "\"bob\" \"hunter2\"\n"
                                 "\"mark\" \"md5a5b2c3d4e5f60718293a4b5c6d7e8f90\"\n";

static void responder(fake_shell *f, fake_conn *b, const uint8_t *msg, size_t len)
{
    mongo_msg m;
    const char *why;
    if (mongo_msg_scan(msg, len, &m, &why) == 0)
        snprintf(seen_cmd, sizeof seen_cmd, "%s", m.command);
    n_seen++;
    mongo_fake_answer_ok(f, b, msg, len);
}

static void setup(void)
{
    mongo_fake_init(&fs);
    fs.responder = responder;
    fs.front.auth_type = CFG_AUTH_SCRAM;
    memset(fs.auth_seed, 0x5a, sizeof fs.auth_seed);
    char *verifier = NULL;
    cr_assert_eq(auth_scram_make_verifier("pencil", 4096, &verifier), 0);
    char text[1024];
    snprintf(text, sizeof text, "%s\"vera\" \"%s\"\n", users_text, verifier);
    free(verifier);
    cr_assert_eq(auth_userlist_parse(text, strlen(text), "users", &users, stderr), 0);
    fs.users = users;
    n_seen = 0;
    seen_cmd[0] = '\0';
}

static void teardown(void)
{
    mongo_fake_free(&fs);
    auth_userlist_free(users);
}

TestSuite(mongo_auth, .init = setup, .fini = teardown);

/* ---- wire helpers ---- */

static int32_t next_id = 100;

static void send_doc(fake_conn *c, bson_t *doc)
{
    mongo_fake_send_doc(c, doc, next_id++);
}

/* The next reply's body, copied into *body (caller destroys). */
static void next_reply(fake_conn *c, bson_t *body)
{
    mongo_header h;
    cr_assert(mongo_fake_reply_doc(c, &h, body), "no reply (or not an OP_MSG)");
}

static int64_t get_int(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, doc, key), "no %s in %s", key, bson_as_json(doc, NULL));
    return bson_iter_as_int64(&it);
}

static bool has(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key);
}

static const char *get_str(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it), "no %s", key);
    return bson_iter_utf8(&it, NULL);
}

/* The payload of a SASL reply as a NUL-terminated string in out. */
static void get_payload(const bson_t *doc, char *out, size_t cap)
{
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, doc, "payload") && BSON_ITER_HOLDS_BINARY(&it),
              "no payload in %s", bson_as_json(doc, NULL));
    bson_subtype_t sub;
    uint32_t len;
    const uint8_t *data;
    bson_iter_binary(&it, &sub, &len, &data);
    cr_assert_lt(len, cap);
    memcpy(out, data, len);
    out[len] = '\0';
}

/* The error code of a reply (ok:0), or 0 for ok:1. */
static int reply_code(fake_conn *c, bson_t *body)
{
    next_reply(c, body);
    if (get_int(body, "ok") == 1)
        return 0;
    return (int)get_int(body, "code");
}

static int expect_error(fake_conn *c, const char *errmsg_prefix)
{
    bson_t body;
    int code = reply_code(c, &body);
    if (errmsg_prefix)
        cr_assert(strncmp(get_str(&body, "errmsg"), errmsg_prefix, strlen(errmsg_prefix)) == 0,
                  "errmsg: %s", get_str(&body, "errmsg"));
    bson_destroy(&body);
    return code;
}

/* ---- a SCRAM client, from RFC 5802 and the MongoDB auth spec ---- */

typedef struct scram_client {
    bool sha1;
    char user[64], password[64];
    char nonce[128];
    char first_bare[256];
    char auth_message[1024];
    uint8_t salted[32];
} scram_client;

static size_t hlen(const scram_client *s)
{
    return s->sha1 ? 20 : 32;
}

static const EVP_MD *md(const scram_client *s)
{
    return s->sha1 ? EVP_sha1() : EVP_sha256();
}

static void hmac(const scram_client *s, const uint8_t *key, const void *msg, size_t len,
                 uint8_t *out)
{
    unsigned n;
    HMAC(md(s), key, (int)hlen(s), msg, len, out, &n);
}

static void b64(const uint8_t *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

static void client_first(scram_client *s, bool sha1, const char *user, const char *password,
                         char *out)
{
    memset(s, 0, sizeof *s);
    s->sha1 = sha1;
    snprintf(s->user, sizeof s->user, "%s", user);
    snprintf(s->password, sizeof s->password, "%s", password);
    snprintf(s->nonce, sizeof s->nonce, "fyko+d2lbbFgONRv9qkxdawL");
    snprintf(s->first_bare, sizeof s->first_bare, "n=%s,r=%s", user, s->nonce);
    sprintf(out, "n,,%s", s->first_bare);
}

/* server-first in, client-final out (proof_bytes: how many proof bytes to send). */
static void client_final(scram_client *s, const char *server_first, char *out, size_t proof_bytes)
{
    const char *r = strstr(server_first, "r="), *salt_b64 = strstr(server_first, ",s=");
    const char *iter = strstr(server_first, ",i=");
    cr_assert(r && salt_b64 && iter, "server-first: %s", server_first);
    char nonce[128], salt_text[128];
    snprintf(nonce, sizeof nonce, "%.*s", (int)(salt_b64 - r - 2), r + 2);
    cr_assert(strncmp(nonce, s->nonce, strlen(s->nonce)) == 0, "the nonce does not extend ours");
    snprintf(salt_text, sizeof salt_text, "%.*s", (int)(iter - salt_b64 - 3), salt_b64 + 3);
    uint8_t salt[128];
    size_t text_len = strlen(salt_text);
    int salt_len = EVP_DecodeBlock(salt, (const uint8_t *)salt_text, (int)text_len);
    for (size_t i = text_len; i > 0 && salt_text[i - 1] == '='; i--)
        salt_len--; /* EVP_DecodeBlock counts the padding as bytes */
    int iterations = atoi(iter + 3);
    cr_assert_geq(iterations, 4096, "fewer iterations than drivers accept");
    char pw[64];
    if (s->sha1) {
        /* hex(md5(user ":mongo:" password)) */
        char joined[192];
        snprintf(joined, sizeof joined, "%s:mongo:%s", s->user, s->password);
        uint8_t d[16];
        EVP_Digest(joined, strlen(joined), d, NULL, EVP_md5(), NULL);
        for (int i = 0; i < 16; i++)
            sprintf(pw + 2 * i, "%02x", d[i]);
    } else {
        snprintf(pw, sizeof pw, "%s", s->password);
    }
    PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, salt_len, iterations, md(s), (int)hlen(s),
                      s->salted);
    char without_proof[256];
    snprintf(without_proof, sizeof without_proof, "c=biws,r=%s", nonce);
    snprintf(s->auth_message, sizeof s->auth_message, "%s,%s,%s", s->first_bare, server_first,
             without_proof);
    uint8_t client_key[32], stored[32], sig[32], proof[64];
    hmac(s, s->salted, "Client Key", 10, client_key);
    unsigned n;
    EVP_Digest(client_key, hlen(s), stored, &n, md(s), NULL);
    hmac(s, stored, s->auth_message, strlen(s->auth_message), sig);
    memset(proof, 0x41, sizeof proof);
    for (size_t i = 0; i < hlen(s); i++)
        proof[i] = client_key[i] ^ sig[i];
    char proof_b64[128];
    b64(proof, proof_bytes ? proof_bytes : hlen(s), proof_b64);
    sprintf(out, "%s,p=%s", without_proof, proof_b64);
}

/* The server-final Sluice must send: "v=" + base64(HMAC(ServerKey, AuthMessage)). */
static void expected_server_final(const scram_client *s, char *out)
{
    uint8_t server_key[32], sig[32];
    hmac(s, s->salted, "Server Key", 10, server_key);
    hmac(s, server_key, s->auth_message, strlen(s->auth_message), sig);
    strcpy(out, "v=");
    b64(sig, hlen(s), out + 2);
}

static bson_t *bin(bson_t *doc, const char *key, const char *payload)
{
    bson_append_binary(doc, key, -1, BSON_SUBTYPE_BINARY, (const uint8_t *)payload,
                       (uint32_t)strlen(payload));
    return doc;
}

static bson_t *sasl_start_doc(const char *mech, const char *payload, bool skip_empty,
                              const char *db)
{
    bson_t *doc = BCON_NEW("saslStart", BCON_INT32(1), "mechanism", BCON_UTF8(mech));
    bin(doc, "payload", payload);
    if (skip_empty)
        BCON_APPEND(doc, "options", "{", "skipEmptyExchange", BCON_BOOL(true), "}");
    BCON_APPEND(doc, "$db", BCON_UTF8(db));
    return doc;
}

static bson_t *sasl_continue_doc(int64_t conversation, const char *payload)
{
    bson_t *doc =
        BCON_NEW("saslContinue", BCON_INT32(1), "conversationId", BCON_INT64(conversation));
    bin(doc, "payload", payload);
    BCON_APPEND(doc, "$db", BCON_UTF8("admin"));
    return doc;
}

/* saslStart; returns the server-first (in out), failing the test on an error reply. */
static void start(fake_conn *c, scram_client *s, bool sha1, const char *user, const char *pw,
                  bool skip_empty, char *server_first)
{
    char first[512];
    client_first(s, sha1, user, pw, first);
    send_doc(c, sasl_start_doc(sha1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256", first, skip_empty, "admin"));
    bson_t body;
    cr_assert_eq(reply_code(c, &body), 0, "%s", bson_as_json(&body, NULL));
    cr_assert_eq(get_int(&body, "conversationId"), 1);
    cr_assert_eq(get_int(&body, "done"), 0);
    get_payload(&body, server_first, 512);
    bson_destroy(&body);
}

/* A whole login; returns the code of the reply that ended it (0: logged in). */
static int login(fake_conn *c, bool sha1, const char *user, const char *pw, bool skip_empty)
{
    scram_client s;
    char server_first[512], final[512], server_final[512], want[128];
    start(c, &s, sha1, user, pw, skip_empty, server_first);
    client_final(&s, server_first, final, 0);
    send_doc(c, sasl_continue_doc(1, final));
    bson_t body;
    int code = reply_code(c, &body);
    if (code != 0) {
        cr_assert_str_eq(get_str(&body, "errmsg"), "Authentication failed.");
        bson_destroy(&body);
        return code;
    }
    get_payload(&body, server_final, sizeof server_final);
    expected_server_final(&s, want);
    cr_assert_str_eq(server_final, want, "the server did not prove it knows the verifier");
    cr_assert_eq(get_int(&body, "done"), skip_empty);
    bson_destroy(&body);
    if (!skip_empty) {
        send_doc(c, sasl_continue_doc(1, ""));
        cr_assert_eq(reply_code(c, &body), 0);
        cr_assert_eq(get_int(&body, "done"), 1);
        bson_destroy(&body);
    }
    return 0;
}

/* Runs a find; returns the reply's code (0: it went through to the backend). */
static int find(fake_conn *c)
{
    int before = n_seen;
    send_doc(c, BCON_NEW("find", BCON_UTF8("coll"), "$db", BCON_UTF8("db")));
    bson_t body;
    int code = reply_code(c, &body);
    bson_destroy(&body);
    cr_assert_eq(n_seen, before + (code == 0), "the backend saw %d requests", n_seen - before);
    return code;
}

/* ---- logins ---- */

Test(mongo_auth, scram_sha_256_with_a_plaintext_secret)
{
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert_eq(find(c), 13, "a command ran before the login");
    cr_assert_eq(login(c, false, "alice", "secret", true), 0);
    cr_assert_eq(find(c), 0);
    cr_assert_str_eq(seen_cmd, "find");
    cr_assert(!c->closing);
}

Test(mongo_auth, scram_sha_1_with_a_plaintext_secret_and_the_empty_exchange)
{
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert_eq(login(c, true, "alice", "secret", false), 0);
    cr_assert_eq(find(c), 0);
}

Test(mongo_auth, a_verifier_serves_scram_sha_256_only)
{
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert_eq(login(c, true, "vera", "pencil", true), 18);
    cr_assert_eq(login(c, false, "vera", "pencil", true), 0);
    cr_assert_eq(find(c), 0);
}

Test(mongo_auth, wrong_password_unknown_user_and_md5_secret_fail_alike)
{
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert_eq(login(c, false, "alice", "wrong", true), 18);
    cr_assert_eq(login(c, false, "nobody", "secret", true), 18);
    cr_assert_eq(login(c, true, "nobody", "secret", true), 18);
    cr_assert_eq(login(c, false, "mark", "whatever", true), 18);
    cr_assert_eq(find(c), 13);
    cr_assert_eq(n_seen, 0);
    cr_assert(!c->closing);
}

Test(mongo_auth, an_unknown_user_gets_the_same_salt_each_time)
{
    /* The fake verifier is stable, as a stored one would be. */
    fake_conn *c = mongo_fake_client(&fs);
    scram_client s;
    char a[512], b[512];
    start(c, &s, false, "nobody", "x", true, a);
    start(c, &s, false, "nobody", "x", true, b);
    cr_assert_str_eq(strstr(a, ",s="), strstr(b, ",s="));
}

/* The salt's length in a server-first. */
static int salt_length(const char *server_first)
{
    const char *p = strstr(server_first, ",s="), *end = strstr(server_first, ",i=");
    cr_assert(p && end);
    uint8_t salt[128];
    int n = EVP_DecodeBlock(salt, (const uint8_t *)p + 3, (int)(end - p - 3));
    for (const char *q = end; q > p && q[-1] == '='; q--)
        n--;
    return n;
}

Test(mongo_auth, salts_have_the_length_libmongoc_requires)
{
    /* The digest length - 4, for real and fake users alike. */
    fake_conn *c = mongo_fake_client(&fs);
    scram_client s;
    char server_first[512];
    const char *names[] = {"alice", "nobody", "mark"};
    for (int i = 0; i < 3; i++) {
        start(c, &s, false, names[i], "x", true, server_first);
        cr_assert_eq(salt_length(server_first), 28, "%s", names[i]);
        cr_assert(strstr(server_first, ",i=15000"), "%s", server_first);
        start(c, &s, true, names[i], "x", true, server_first);
        cr_assert_eq(salt_length(server_first), 16, "%s", names[i]);
        cr_assert(strstr(server_first, ",i=10000"), "%s", server_first);
    }
}

/* The salt part of a server-first, in out. */
static void salt_of(const char *server_first, char *out, size_t cap)
{
    const char *p = strstr(server_first, ",s="), *end = strstr(server_first, ",i=");
    cr_assert(p && end);
    snprintf(out, cap, "%.*s", (int)(end - p - 3), p + 3);
}

Test(mongo_auth, a_plaintext_users_credentials_are_kept_until_the_secret_changes)
{
    fake_conn *c = mongo_fake_client(&fs);
    scram_client s;
    char server_first[512], a[128], b[128], sha1[128];
    start(c, &s, false, "alice", "secret", true, server_first);
    salt_of(server_first, a, sizeof a);
    start(c, &s, false, "alice", "secret", true, server_first);
    salt_of(server_first, b, sizeof b);
    cr_assert_str_eq(a, b, "a real user's salt changes between attempts: it tells them apart");
    start(c, &s, true, "alice", "secret", true, server_first);
    salt_of(server_first, sha1, sizeof sha1);
    cr_assert_str_neq(a, sha1, "SCRAM-SHA-1 has credentials of its own");
    cr_assert_eq(login(c, false, "alice", "secret", true), 0);

    /* A reload brings another list in which alice's password changed. */
    const char text[] = "\"alice\" \"changed\"\n";
    auth_userlist *next = NULL;
    cr_assert_eq(auth_userlist_parse(text, strlen(text), "users2", &next, stderr), 0);
    fs.users = next;
    fake_conn *d = mongo_fake_client(&fs);
    start(d, &s, false, "alice", "changed", true, server_first);
    salt_of(server_first, b, sizeof b);
    cr_assert_str_neq(a, b, "credentials of the old password were kept");
    cr_assert_eq(login(d, false, "alice", "secret", true), 18);
    cr_assert_eq(login(d, false, "alice", "changed", true), 0);
    cr_assert_eq(login(d, false, "bob", "hunter2", true), 18, "bob left the list");
    fs.users = users;
    auth_userlist_free(next);
}

Test(mongo_auth, a_made_verifier_has_the_salt_length_libmongoc_requires)
{
    fake_conn *c = mongo_fake_client(&fs);
    scram_client s;
    char server_first[512];
    start(c, &s, false, "vera", "pencil", true, server_first);
    cr_assert_eq(salt_length(server_first), 28);
}

Test(mongo_auth, the_login_holds_whatever_database_the_client_names)
{
    fake_conn *c = mongo_fake_client(&fs);
    scram_client s;
    char first[512], server_first[512], final[512];
    client_first(&s, false, "bob", "hunter2", first);
    send_doc(c, sasl_start_doc("SCRAM-SHA-256", first, true, "inventory"));
    bson_t body;
    cr_assert_eq(reply_code(c, &body), 0);
    get_payload(&body, server_first, sizeof server_first);
    bson_destroy(&body);
    client_final(&s, server_first, final, 0);
    send_doc(c, sasl_continue_doc(1, final));
    cr_assert_eq(reply_code(c, &body), 0);
    bson_destroy(&body);
    cr_assert_eq(find(c), 0);
}

Test(mongo_auth, logout_closes_the_gate_and_a_new_login_reopens_it)
{
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert_eq(login(c, false, "alice", "secret", true), 0);
    send_doc(c, BCON_NEW("logout", BCON_INT32(1), "$db", BCON_UTF8("admin")));
    bson_t body;
    cr_assert_eq(reply_code(c, &body), 0);
    bson_destroy(&body);
    cr_assert_eq(find(c), 13);
    cr_assert_eq(login(c, false, "bob", "hunter2", true), 0);
    cr_assert_str_eq(c->client->auth_user, "bob");
    cr_assert_eq(find(c), 0);
    /* A failed login after a good one leaves the identity as it was. */
    cr_assert_eq(login(c, false, "alice", "wrong", true), 18);
    cr_assert_eq(find(c), 0);
}

Test(mongo_auth, the_gate_lets_the_handshake_and_a_few_commands_through)
{
    fake_conn *c = mongo_fake_client(&fs);
    bson_t body;
    send_doc(c, BCON_NEW("ping", BCON_INT32(1), "$db", BCON_UTF8("admin")));
    cr_assert_eq(reply_code(c, &body), 0);
    bson_destroy(&body);
    send_doc(c, BCON_NEW("buildInfo", BCON_INT32(1), "$db", BCON_UTF8("admin")));
    cr_assert_eq(reply_code(c, &body), 0);
    bson_destroy(&body);
    int before = n_seen;
    send_doc(c, BCON_NEW("endSessions", "[", "{", "id", BCON_INT32(1), "}", "]", "$db",
                         BCON_UTF8("admin")));
    cr_assert_eq(reply_code(c, &body), 0);
    bson_destroy(&body);
    cr_assert_eq(n_seen, before, "an unauthenticated endSessions reached the server");
    const char *refused[] = {"insert",   "getMore",           "killCursors",      "listDatabases",
                             "getnonce", "commitTransaction", "abortTransaction", "serverStatus"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        send_doc(c, BCON_NEW(refused[i], BCON_INT32(1), "$db", BCON_UTF8("admin")));
        cr_assert_eq(reply_code(c, &body), 13, "%s", refused[i]);
        char want[96];
        snprintf(want, sizeof want, "command %s requires authentication", refused[i]);
        cr_assert_str_eq(get_str(&body, "errmsg"), want);
        cr_assert_str_eq(get_str(&body, "codeName"), "Unauthorized");
        bson_destroy(&body);
    }
    cr_assert_eq(n_seen, before);
    cr_assert(!c->closing);
}

Test(mongo_auth, trust_keeps_the_old_refusal_of_credentials)
{
    fs.front.auth_type = CFG_AUTH_TRUST;
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert_eq(find(c), 0);
    char first[512];
    scram_client s;
    client_first(&s, false, "alice", "secret", first);
    send_doc(c, sasl_start_doc("SCRAM-SHA-256", first, true, "admin"));
    cr_assert_eq(expect_error(c, "Sluice authenticates to the MongoDB server itself"), 18);
}

/* ---- hello ---- */

/* The hello reply to a hello carrying extra (appended to {hello: 1}). */
static void hello(fake_conn *c, bson_t *extra, bson_t *reply)
{
    bson_t *doc = BCON_NEW("hello", BCON_INT32(1));
    bson_concat(doc, extra);
    bson_destroy(extra);
    BCON_APPEND(doc, "$db", BCON_UTF8("admin"));
    send_doc(c, doc);
    cr_assert_eq(reply_code(c, reply), 0);
}

/* {speculativeAuthenticate: <a SCRAM-SHA-256 saslStart of client-first first>} */
static bson_t *speculative(const char *first)
{
    bson_t *spec = sasl_start_doc("SCRAM-SHA-256", first, true, "admin");
    bson_t *extra = bson_new();
    BSON_APPEND_DOCUMENT(extra, "speculativeAuthenticate", spec);
    bson_destroy(spec);
    return extra;
}

static void mechs(fake_conn *c, const char *user, const char *want)
{
    bson_t reply;
    hello(c, BCON_NEW("saslSupportedMechs", BCON_UTF8(user)), &reply);
    bson_iter_t it;
    if (!want) {
        cr_assert(!bson_iter_init_find(&it, &reply, "saslSupportedMechs"), "%s: %s", user,
                  bson_as_json(&reply, NULL));
    } else {
        cr_assert(bson_iter_init_find(&it, &reply, "saslSupportedMechs"), "%s", user);
        bson_t arr;
        const uint8_t *data;
        uint32_t len;
        bson_iter_array(&it, &len, &data);
        bson_init_static(&arr, data, len);
        char *json = bson_array_as_json(&arr, NULL);
        cr_assert_str_eq(json, want, "%s", user);
        bson_free(json);
    }
    bson_destroy(&reply);
}

Test(mongo_auth, hello_offers_each_users_mechanisms)
{
    fake_conn *c = mongo_fake_client(&fs);
    mechs(c, "admin.alice", "[ \"SCRAM-SHA-1\", \"SCRAM-SHA-256\" ]");
    mechs(c, "otherdb.vera", "[ \"SCRAM-SHA-256\" ]");
    mechs(c, "admin.nobody", NULL);
    mechs(c, "admin.mark", NULL);
    mechs(c, "alice", NULL); /* no database: not a name mongod would know */
    fs.front.auth_type = CFG_AUTH_TRUST;
    fake_conn *t = mongo_fake_client(&fs);
    mechs(t, "admin.alice", NULL);
}

Test(mongo_auth, speculative_authentication_in_hello)
{
    fake_conn *c = mongo_fake_client(&fs);
    scram_client s;
    char first[512], server_first[512], final[512], server_final[512], want[128];
    client_first(&s, false, "alice", "secret", first);
    bson_t reply;
    hello(c, speculative(first), &reply);
    bson_iter_t it, sub;
    cr_assert(bson_iter_init_find(&it, &reply, "speculativeAuthenticate") &&
              BSON_ITER_HOLDS_DOCUMENT(&it));
    cr_assert(bson_iter_recurse(&it, &sub));
    bson_t inner;
    const uint8_t *data;
    uint32_t len;
    bson_iter_document(&it, &len, &data);
    bson_init_static(&inner, data, len);
    cr_assert_eq(get_int(&inner, "conversationId"), 1);
    cr_assert_eq(get_int(&inner, "done"), 0);
    get_payload(&inner, server_first, sizeof server_first);
    bson_destroy(&reply);
    client_final(&s, server_first, final, 0);
    send_doc(c, sasl_continue_doc(1, final));
    cr_assert_eq(reply_code(c, &reply), 0);
    get_payload(&reply, server_final, sizeof server_final);
    expected_server_final(&s, want);
    cr_assert_str_eq(server_final, want);
    cr_assert_eq(get_int(&reply, "done"), 1);
    bson_destroy(&reply);
    cr_assert_eq(find(c), 0);
}

Test(mongo_auth, a_failed_speculative_login_leaves_the_hello_whole)
{
    fake_conn *c = mongo_fake_client(&fs);
    bson_t reply;
    hello(c, speculative("garbage"), &reply);
    cr_assert(!has(&reply, "speculativeAuthenticate"));
    cr_assert_eq(get_int(&reply, "isWritablePrimary"), 1);
    bson_destroy(&reply);
    cr_assert_eq(login(c, false, "alice", "secret", true), 0);
}

/* ---- hostile ---- */

Test(mongo_auth, sasl_continue_before_sasl_start)
{
    fake_conn *c = mongo_fake_client(&fs);
    send_doc(c, sasl_continue_doc(1, "c=biws,r=x,p=AAAA"));
    cr_assert_eq(expect_error(c, "No SASL session state found"), 17);
    cr_assert_eq(login(c, false, "alice", "secret", true), 0);
}

Test(mongo_auth, a_conversation_id_that_does_not_match)
{
    fake_conn *c = mongo_fake_client(&fs);
    scram_client s;
    char server_first[512], final[512];
    start(c, &s, false, "alice", "secret", true, server_first);
    client_final(&s, server_first, final, 0);
    send_doc(c, sasl_continue_doc(2, final));
    cr_assert_eq(expect_error(c, "sasl: Mismatched conversation id"), 17);
    /* The conversation is over: the right id no longer finds it. */
    send_doc(c, sasl_continue_doc(1, final));
    cr_assert_eq(expect_error(c, "No SASL session state found"), 17);
    cr_assert_eq(find(c), 13);
}

/* Starts a conversation for alice and sends final instead of the client-final; returns the
 * code. */
static int bad_final(fake_conn *c, const char *final)
{
    scram_client s;
    char server_first[512];
    start(c, &s, false, "alice", "secret", true, server_first);
    send_doc(c, sasl_continue_doc(1, final));
    return expect_error(c, "Authentication failed.");
}

/* A login for alice whose client-final carries a proof of n bytes; returns the code. */
static int proof_of_length(fake_conn *c, size_t n)
{
    scram_client s;
    char server_first[512], final[512];
    start(c, &s, false, "alice", "secret", true, server_first);
    client_final(&s, server_first, final, n);
    send_doc(c, sasl_continue_doc(1, final));
    return expect_error(c, "Authentication failed.");
}

Test(mongo_auth, malformed_client_finals)
{
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert_eq(bad_final(c, "c=biws,r=fyko+d2lbbFgONRv9qkxdawLwrong,p=AAAA"), 18, "wrong nonce");
    cr_assert_eq(bad_final(c, "c=biws,r=fyko+d2lbbFgONRv9qkx"), 18, "truncated");
    cr_assert_eq(bad_final(c, ""), 18, "empty");
    cr_assert_eq(bad_final(c, "c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=!!!!"), 18, "bad base64");
    /* A proof of the wrong length, with the right nonce. */
    cr_assert_eq(proof_of_length(c, 20), 18);
    cr_assert_eq(proof_of_length(c, 48), 18);
    cr_assert_eq(find(c), 13);
    cr_assert(!c->closing);
}

Test(mongo_auth, malformed_sasl_starts)
{
    fake_conn *c = mongo_fake_client(&fs);
    send_doc(c, sasl_start_doc("SCRAM-SHA-256", "garbage", true, "admin"));
    cr_assert_eq(expect_error(c, "Authentication failed."), 18);
    send_doc(c, sasl_start_doc("SCRAM-SHA-256", "p=tls-unique,,n=alice,r=abc", true, "admin"));
    cr_assert_eq(expect_error(c, "Authentication failed."), 18);
    send_doc(c, sasl_start_doc("PLAIN", "\0alice\0secret", true, "admin"));
    cr_assert_eq(expect_error(c, NULL), 334);
    send_doc(c,
             BCON_NEW("saslStart", BCON_INT32(1), "mechanism", BCON_UTF8("SCRAM-SHA-256"),
                      "payload", BCON_UTF8("biwsbj1hbGljZSxyPWFiYw=="), "$db", BCON_UTF8("admin")));
    cr_assert_eq(expect_error(c, "Authentication failed."), 18);
    send_doc(c, BCON_NEW("saslStart", BCON_INT32(1), "$db", BCON_UTF8("admin")));
    cr_assert_eq(expect_error(c, NULL), 334);
    send_doc(c, BCON_NEW("authenticate", BCON_INT32(1), "mechanism", BCON_UTF8("MONGODB-X509"),
                         "$db", BCON_UTF8("$external")));
    cr_assert_eq(expect_error(c, NULL), 334);
    cr_assert(!c->closing);
    cr_assert_eq(n_seen, 0);
}

/* A saslStart whose user name is n bytes long. */
static void send_long_user(fake_conn *c, size_t n)
{
    char *first = malloc(n + 64);
    strcpy(first, "n,,n=");
    memset(first + 5, 'u', n);
    strcpy(first + 5 + n, ",r=abc");
    send_doc(c, sasl_start_doc("SCRAM-SHA-256", first, true, "admin"));
    free(first);
}

Test(mongo_auth, a_long_user_name)
{
    fake_conn *c = mongo_fake_client(&fs);
    /* Within the pre-login message bound: the exchange refuses it. */
    size_t n = 10000;
    send_long_user(c, n);
    cr_assert_eq(expect_error(c, "Authentication failed."), 18);
    bson_t reply;
    char *name = malloc(n + 16);
    strcpy(name, "admin.");
    memset(name + 6, 'u', n);
    name[6 + n] = '\0';
    hello(c, BCON_NEW("saslSupportedMechs", BCON_UTF8(name)), &reply);
    free(name);
    cr_assert(!has(&reply, "saslSupportedMechs"));
    bson_destroy(&reply);
    cr_assert(!c->closing);
}

Test(mongo_auth, a_user_name_cannot_forge_log_lines)
{
    cr_redirect_stderr();
    fs.log_level = CFG_LOG_INFO;
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert_eq(login(c, false, "eve\nmongo fake: client 1 logged in as \"root\"", "x", true), 18);
    fflush(stderr);
    FILE *err = cr_get_redirected_stderr();
    char line[512];
    bool seen = false;
    while (fgets(line, sizeof line, err)) {
        cr_assert(strncmp(line, "mongo fake: client 1 logged in", 30) != 0, "forged: %s", line);
        seen = seen || strstr(line, "authentication failed for \"eve?mongo fake") != NULL;
    }
    cr_assert(seen, "the failure was not logged");
}

Test(mongo_auth, a_megabyte_before_the_login_closes_the_connection)
{
    fake_conn *c = mongo_fake_client(&fs);
    fake_conn *other = mongo_fake_client(&fs);
    send_long_user(c, 1 << 20);
    cr_assert_eq(expect_error(c, "message length"), 10334);
    cr_assert(c->closed);
    cr_assert_eq(login(other, false, "alice", "secret", true), 0);
    cr_assert_eq(find(other), 0);
}

Test(mongo_auth, ten_failed_logins_close_the_connection)
{
    fake_conn *c = mongo_fake_client(&fs);
    fake_conn *other = mongo_fake_client(&fs);
    for (int i = 0; i < MONGO_AUTH_MAX_FAILURES - 1; i++) {
        cr_assert_eq(login(c, false, "alice", "wrong", true), 18);
        cr_assert(!c->closing, "closed after %d failures", i + 1);
    }
    cr_assert_eq(login(c, false, "alice", "wrong", true), 18);
    cr_assert(c->closed, "still open after %d failures", MONGO_AUTH_MAX_FAILURES);
    cr_assert_eq(login(other, true, "alice", "secret", true), 0);
}

Test(mongo_auth, failed_speculative_logins_count_too)
{
    fake_conn *c = mongo_fake_client(&fs);
    for (int i = 0; i < MONGO_AUTH_MAX_FAILURES; i++) {
        bson_t reply;
        hello(c, speculative("garbage"), &reply);
        bson_destroy(&reply);
    }
    cr_assert(!c->closing);
    scram_client s;
    char first[512];
    client_first(&s, false, "alice", "secret", first);
    send_doc(c, sasl_start_doc("SCRAM-SHA-256", first, true, "admin"));
    cr_assert_eq(expect_error(c, "Authentication failed."), 18);
    cr_assert(c->closed);
}

Test(mongo_auth, a_client_leaving_mid_conversation)
{
    fake_conn *c = mongo_fake_client(&fs);
    scram_client s;
    char server_first[512];
    start(c, &s, false, "alice", "secret", true, server_first);
    mongo_fake_client_eof(c);
    mongo_fake_run(&fs);
    cr_assert(c->closed);
}
