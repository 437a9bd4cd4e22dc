/*
 * mongo_auth: clients log in to Sluice itself (auth_type=scram-sha-256 on the [mongodb] line),
 * with SCRAM-SHA-256 or SCRAM-SHA-1 over saslStart/saslContinue, or speculatively inside hello,
 * as mongod speaks them. Users come from auth_file, shared with the PostgreSQL front end:
 *   - a plaintext secret serves both mechanisms: the credentials are derived with a random salt
 *     and MongoDB's default iteration counts at the user's first login, and kept
 *     (mongo_creds.c);
 *   - a SCRAM-SHA-256 verifier (PostgreSQL's format; MongoDB derives its SCRAM-SHA-256
 *     credentials the same way) serves SCRAM-SHA-256 only, since SCRAM-SHA-1 hashes
 *     "user:mongo:password" and needs the password;
 *   - an md5 secret, or an unknown user, goes through the exchange against a fake verifier and
 *     fails at the proof with the same reply as a wrong password.
 * The user is found by name whatever database (authSource) the client names.
 *
 * Sluice's connections to the server keep the credentials of the line's URI: a login here only
 * opens the gate (mongo__auth_allows) to the pooled connections.
 *
 * Core (mongo_core.h): no I/O; the users and the fake-verifier seed come through the shell.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/scram.h"
#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"
#include "gateway/creds.h"

_Static_assert(MONGO_SHA256_SALT <= AUTH_MAX_KEY && MONGO_SHA256_SALT <= AUTH_MAX_SALT,
               "a fake salt is padded from a key");

/* mongod numbers every conversation 1: one at a time per connection. */
#define CONVERSATION_ID 1

/* The conversation under way on a client (c->sasl), from saslStart until it ends either way. */
typedef struct mongo_sasl {
    auth_scram_server scram;
    bool sha1;
    bool skip_empty;  /* options.skipEmptyExchange: the server-final ends it with done:true */
    bool await_empty; /* the proof was right; an empty saslContinue completes the login */
} mongo_sasl;

/* Why an exchange failed, for the client (code, codeName, errmsg) and the log (detail). */
typedef struct auth_failure {
    int code;
    const char *code_name;
    const char *errmsg;
    const char *detail;
} auth_failure;

static const char auth_failed[] = "Authentication failed.";

bool mongo__auth_is_command(const char *cmd)
{
    return strcmp(cmd, "saslStart") == 0 || strcmp(cmd, "saslContinue") == 0 ||
           strcmp(cmd, "authenticate") == 0 || strcmp(cmd, "logout") == 0;
}

bool mongo__auth_allows(const mongo_client *c, const char *cmd)
{
    /* What mongod answers before a login: the handshake, liveness and version checks, the SASL
     * commands, and endSessions (drivers send it on close whether they logged in or not). */
    static const char *const open[] = {"ping", "buildInfo", "buildinfo", "endSessions", NULL};
    if (!c->need_auth || c->authed || mongo__is_hello(cmd) || mongo__auth_is_command(cmd))
        return true;
    for (int i = 0; open[i]; i++)
        if (strcmp(cmd, open[i]) == 0)
            return true;
    return false;
}

static void end_conversation(mongo_client *c)
{
    if (c->sasl)
        OPENSSL_cleanse(c->sasl, sizeof *c->sasl); /* the verifier and the keys */
    free(c->sasl);
    c->sasl = NULL;
}

void mongo__auth_free(mongo_client *c)
{
    end_conversation(c);
    free(c->auth_user);
    c->auth_user = NULL;
}

/* The verifier a secret gives for one mechanism; false when it gives none (md5, or a
 * SCRAM-SHA-256 verifier asked for SCRAM-SHA-1): the exchange then runs against a fake one. */
static bool verifier_for(mongo_client *c, const auth_secret *s, const char *user, bool sha1,
                         auth_scram_verifier *v)
{
    if (!s)
        return false;
    if (s->kind == AUTH_SECRET_SCRAM && !sha1) {
        *v = s->scram;
        return true;
    }
    if (s->kind != AUTH_SECRET_PLAIN)
        return false;
    mongo_front *f = c->front;
    if (!f->creds && !(f->creds = gw_creds_new()))
        return false;
    /* Derived once with MongoDB's salt length and iterations (gateway/creds.c says why). */
    return gw_creds_get(f->creds, user, s->text, sha1, sha1 ? MONGO_SHA1_SALT : MONGO_SHA256_SALT,
                        sha1 ? MONGO_SHA1_ITERATIONS : MONGO_SHA256_ITERATIONS, v) == 0;
}

/* The SASL message of a saslStart or saslContinue: BinData, as drivers send it; false with
 * fail->detail set when there is none. */
static bool get_payload(const bson_t *cmd, const uint8_t **p, uint32_t *len, auth_failure *fail)
{
    bson_iter_t it;
    bson_subtype_t sub;
    if (!bson_iter_init_find(&it, cmd, "payload") || !BSON_ITER_HOLDS_BINARY(&it)) {
        fail->detail = "payload is not BinData";
        return false;
    }
    bson_iter_binary(&it, &sub, len, p);
    return true;
}

/* saslStart's work, also done for speculativeAuthenticate: a new conversation on c (any old one
 * ends), and the server-first message in out. 0, or -1 with *fail set. */
static int sasl_start(mongo_client *c, const bson_t *cmd, char out[AUTH_SCRAM_MSG_MAX],
                      auth_failure *fail)
{
    mongo_front *f = c->front;
    bson_iter_t it;
    end_conversation(c);
    *fail = (auth_failure){18, "AuthenticationFailed", auth_failed, NULL};
    const char *mech = NULL;
    if (bson_iter_init_find(&it, cmd, "mechanism") && BSON_ITER_HOLDS_UTF8(&it))
        mech = bson_iter_utf8(&it, NULL);
    bool sha1 = mech && strcmp(mech, "SCRAM-SHA-1") == 0;
    if (!mech || (!sha1 && strcmp(mech, "SCRAM-SHA-256") != 0)) {
        /* mongod's answer to a mechanism it does not offer. */
        *fail = (auth_failure){334, "MechanismUnavailable",
                               "Received authentication for a mechanism which is not enabled; "
                               "Sluice offers SCRAM-SHA-256 and SCRAM-SHA-1",
                               "mechanism not offered"};
        return -1;
    }
    const uint8_t *payload;
    uint32_t len;
    if (!get_payload(cmd, &payload, &len, fail))
        return -1;
    if (len > AUTH_SCRAM_INPUT_MAX) {
        fail->detail = "client-first message too long";
        return -1;
    }
    mongo_sasl *s = calloc(1, sizeof *s);
    if (!s) {
        fail->detail = "out of memory";
        return -1;
    }
    s->sha1 = sha1;
    if (bson_iter_init_find(&it, cmd, "options") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t opt;
        if (bson_iter_recurse(&it, &opt) && bson_iter_find(&opt, "skipEmptyExchange"))
            s->skip_empty = bson_iter_as_bool(&opt);
    }
    char user[sizeof s->scram.user];
    const char *why = NULL;
    int rc = auth_scram_parse_user((const char *)payload, len, user, sizeof user, &why);
    if (rc == 0) {
        const auth_userlist *users = mongo_shell_users(f);
        const auth_secret *secret = users ? auth_userlist_find(users, user) : NULL;
        auth_scram_verifier v;
        bool real = verifier_for(c, secret, user, sha1, &v);
        rc = auth_scram_server_init(&s->scram, real ? &v : NULL, user, mongo_shell_auth_seed(f),
                                    true);
        OPENSSL_cleanse(&v, sizeof v);
        if (rc == 0 && !real) {
            /* The fake looks like what a real user of this mechanism gets, salt length
             * included: libmongoc refuses a salt that is not the digest length - 4, which
             * would set an unknown user apart. The extra bytes come from the fake's own
             * seed-derived key, so the salt stays the same at every attempt. */
            auth_scram_verifier *fv = &s->scram.v;
            fv->sha1 = sha1;
            fv->iterations = sha1 ? MONGO_SHA1_ITERATIONS : MONGO_SHA256_ITERATIONS;
            size_t want = sha1 ? MONGO_SHA1_SALT : MONGO_SHA256_SALT;
            if (fv->salt_len < want) {
                memcpy(fv->salt + fv->salt_len, fv->stored_key, want - fv->salt_len);
                fv->salt_len = want;
            }
        }
    }
    if (rc == 0)
        rc = auth_scram_server_first(&s->scram, (const char *)payload, len, out, &why);
    if (rc != 0) {
        OPENSSL_cleanse(s, sizeof *s);
        free(s);
        fail->detail = rc == -ENOMEM ? "out of memory" : why ? why : "malformed client-first";
        return -1;
    }
    c->sasl = s;
    return 0;
}

#define LOG_NAME_MAX 68

/* A user name as the log shows it: a client chose it, so control bytes become '?' (no forged
 * log lines) and a long one is cut. */
static const char *log_name(const char *user, char buf[LOG_NAME_MAX])
{
    size_t i = 0;
    for (; user[i] && i < LOG_NAME_MAX - 4; i++)
        buf[i] = (unsigned char)user[i] < 0x20 || user[i] == 0x7f ? '?' : user[i];
    strcpy(buf + i, user[i] ? "..." : "");
    return buf;
}

static void logged_in(mongo_client *c)
{
    mongo_sasl *s = c->sasl;
    char name[LOG_NAME_MAX];
    free(c->auth_user);
    c->auth_user = strdup(s->scram.user); /* for the log only: NULL is survivable */
    c->authed = true;
    char msg[LOG_NAME_MAX + 64];
    snprintf(msg, sizeof msg, "logged in as \"%s\" (%s)", log_name(s->scram.user, name),
             s->sha1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256");
    mongo_shell_client_note(c, MONGO_NOTE_LOGIN, NULL, msg);
    end_conversation(c);
}

/* saslContinue: the client-final (or the empty message that completes a conversation without
 * skipEmptyExchange). 0 with *done and out set, or -1 with *fail set. */
static int sasl_continue(mongo_client *c, const bson_t *cmd, char out[AUTH_SCRAM_MSG_MAX],
                         bool *done, auth_failure *fail)
{
    bson_iter_t it;
    mongo_sasl *s = c->sasl;
    *fail = (auth_failure){18, "AuthenticationFailed", auth_failed, NULL};
    if (!s) {
        *fail = (auth_failure){17, "ProtocolError", "No SASL session state found",
                               "saslContinue without saslStart"};
        return -1;
    }
    if (!bson_iter_init_find(&it, cmd, "conversationId") || !BSON_ITER_HOLDS_NUMBER(&it) ||
        bson_iter_as_int64(&it) != CONVERSATION_ID) {
        *fail = (auth_failure){17, "ProtocolError", "sasl: Mismatched conversation id",
                               "mismatched conversationId"};
        return -1;
    }
    const uint8_t *payload;
    uint32_t len;
    if (!get_payload(cmd, &payload, &len, fail))
        return -1;
    if (s->await_empty) {
        if (len != 0) {
            fail->detail = "a message after the server-final";
            return -1;
        }
        out[0] = '\0';
        *done = true;
        return 0;
    }
    const char *why = NULL;
    int rc = auth_scram_server_final(&s->scram, (const char *)payload, len, out, &why);
    if (rc != 0) {
        fail->detail = rc == AUTH_FAIL ? "wrong password or unknown user"
                       : why           ? why
                                       : "malformed client-final";
        return -1;
    }
    *done = s->skip_empty;
    s->await_empty = !s->skip_empty;
    return 0;
}

/* The reply to a step of a conversation: {conversationId, done, payload, ok: 1}. */
static void step_doc(bson_t *doc, bool done, const char *payload)
{
    BSON_APPEND_INT32(doc, "conversationId", CONVERSATION_ID);
    BSON_APPEND_BOOL(doc, "done", done);
    bson_append_binary(doc, "payload", -1, BSON_SUBTYPE_BINARY, (const uint8_t *)payload,
                       (uint32_t)strlen(payload));
}

/* Records a failed step: the conversation ends. True when c has failed too often and must
 * close after the reply. */
static bool failed(mongo_client *c, const auth_failure *fail)
{
    char name[LOG_NAME_MAX];
    const char *user = c->sasl ? log_name(c->sasl->scram.user, name) : "";
    mongo_info(c->front, "client %d: authentication failed%s%s%s: %s", c->conn_id,
               *user ? " for \"" : "", user, *user ? "\"" : "",
               fail->detail ? fail->detail : fail->errmsg);
    end_conversation(c);
    if (c->auth_failures < UINT8_MAX)
        c->auth_failures++;
    if (c->auth_failures < MONGO_AUTH_MAX_FAILURES)
        return false;
    mongo_warn(c->front, "client %d: %d failed logins: closing the connection", c->conn_id,
               c->auth_failures);
    return true;
}

bool mongo__auth_command(mongo_client *c, const char *cmd, const bson_t *body, bson_t *reply)
{
    char out[AUTH_SCRAM_MSG_MAX];
    auth_failure fail;
    bool done = false;
    int rc;
    if (strcmp(cmd, "logout") == 0) {
        /* As mongos: the connection needs a new login for anything but the handshake. */
        if (c->authed)
            mongo_info(c->front, "client %d logged out", c->conn_id);
        c->authed = false;
        end_conversation(c);
        bson_init(reply);
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
        return false;
    }
    if (c->auth_failures >= MONGO_AUTH_MAX_FAILURES) {
        /* Reached by failed speculative logins, which a hello reply cannot refuse. */
        fail = (auth_failure){18, "AuthenticationFailed", auth_failed, "too many failed logins"};
        rc = -1;
    } else if (strcmp(cmd, "saslStart") == 0) {
        rc = sasl_start(c, body, out, &fail);
    } else if (strcmp(cmd, "saslContinue") == 0) {
        rc = sasl_continue(c, body, out, &done, &fail);
    } else {
        fail = (auth_failure){334, "MechanismUnavailable",
                              "The authenticate command is not supported: use SCRAM-SHA-256 or "
                              "SCRAM-SHA-1",
                              "authenticate command"};
        rc = -1;
    }
    if (rc != 0) {
        mongo_error_doc(reply, fail.code, fail.code_name, fail.errmsg, NULL);
        return failed(c, &fail);
    }
    bson_init(reply);
    step_doc(reply, done, out);
    BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    if (done)
        logged_in(c);
    return false;
}

/* "db.user" -> the user's secret, or NULL. */
static const auth_secret *mechs_user(mongo_client *c, const bson_t *request)
{
    bson_iter_t it;
    const auth_userlist *users = mongo_shell_users(c->front);
    if (!users || !bson_iter_init_find(&it, request, "saslSupportedMechs") ||
        !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    const char *dot = strchr(bson_iter_utf8(&it, NULL), '.');
    return dot ? auth_userlist_find(users, dot + 1) : NULL;
}

void mongo__auth_hello(mongo_client *c, const bson_t *request, bson_t *reply)
{
    if (!c->need_auth)
        return;
    /* mongod leaves the field out for a user it does not know; an md5 secret offers nothing
     * here, and so looks unknown too. */
    const auth_secret *s = mechs_user(c, request);
    if (s && (s->kind == AUTH_SECRET_PLAIN || s->kind == AUTH_SECRET_SCRAM)) {
        bson_t arr;
        bool sha1 = s->kind == AUTH_SECRET_PLAIN;
        BSON_APPEND_ARRAY_BEGIN(reply, "saslSupportedMechs", &arr);
        if (sha1)
            BSON_APPEND_UTF8(&arr, "0", "SCRAM-SHA-1");
        BSON_APPEND_UTF8(&arr, sha1 ? "1" : "0", "SCRAM-SHA-256");
        bson_append_array_end(reply, &arr);
    }
    bson_iter_t it;
    bson_t spec;
    const uint8_t *data;
    uint32_t len;
    if (c->auth_failures >= MONGO_AUTH_MAX_FAILURES ||
        !bson_iter_init_find(&it, request, "speculativeAuthenticate") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it))
        return;
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&spec, data, len))
        return;
    char out[AUTH_SCRAM_MSG_MAX];
    auth_failure fail;
    mongo_debug(c->front, "client %d: a login inside hello (speculativeAuthenticate)", c->conn_id);
    if (sasl_start(c, &spec, out, &fail) != 0) {
        /* As mongod: the hello succeeds without the field, and the driver logs in the long way.
         * The failure still counts; the hello reply is the answer to it. */
        failed(c, &fail);
        return;
    }
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "speculativeAuthenticate", &sub);
    step_doc(&sub, false, out);
    bson_append_document_end(reply, &sub);
}
