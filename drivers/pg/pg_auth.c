/*
 * pg_auth: a PostgreSQL client's login exchange, with PostgreSQL's and PgBouncer's semantics.
 *
 * auth_type (or, with hba, the method of the first matching auth_hba_file line) picks the
 * check: cleartext password, md5 challenge, or SCRAM-SHA-256. As in PostgreSQL, md5 becomes
 * SCRAM for a user whose stored secret is a SCRAM verifier. An unknown user, or one whose secret
 * cannot serve the method (an md5 hash under SCRAM), goes through the same exchange and gets the
 * same 28P01 at its end as a wrong password: SCRAM runs against a fake verifier derived from
 * ctx->auth_seed, md5 gets a random salt. A client sees nothing that tells the two apart.
 *
 * Over TLS, SCRAM-SHA-256-PLUS is offered too (before SCRAM-SHA-256, as PostgreSQL lists them):
 * the exchange is then bound to Sluice's certificate (tls-server-end-point), so a client's proof
 * cannot be relayed by a man in the middle holding another certificate.
 *
 * The exchange lives in c->login->auth only while the client is in PG_CL_AUTH; what the client
 * proved itself with is kept in c->login->cred until its pool has learned it (pg_pool_cred_learn)
 * for the server login, then wiped: a logged-in client holds no secret.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scram.h"
#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_wire.h"
#include "gateway/creds.h"

/* The exchange's states; auth_set is the one place that changes them. */
typedef enum pg_auth_state {
    PG_AUTH_START,      /* transient: allocated, no request sent yet */
    PG_AUTH_LOOKUP,     /* the user is not in auth_file: waiting for the shell's auth_query
                         * answer (pg_auth_lookup_done); a client message now is out of order */
    PG_AUTH_PASSWORD,   /* AuthenticationCleartextPassword sent; expects a PasswordMessage */
    PG_AUTH_MD5,        /* AuthenticationMD5Password sent; expects the md5 PasswordMessage */
    PG_AUTH_SASL_FIRST, /* AuthenticationSASL sent; expects SASLInitialResponse (client-first) */
    PG_AUTH_SASL_FINAL, /* SASLContinue (server-first) sent; expects SASLResponse (client-final) */
    PG_AUTH_DONE,       /* transient: the exchange ended (either way) and is freed next */
} pg_auth_state;

static const char *const auth_state_names[] = {"start",      "lookup",     "password", "md5",
                                               "sasl_first", "sasl_final", "done"};

#define AS(st) (1u << PG_AUTH_##st)
/* The states each state may be entered from. */
static const unsigned auth_from[] = {
    [PG_AUTH_START] = 0,
    [PG_AUTH_LOOKUP] = AS(START),
    [PG_AUTH_PASSWORD] = AS(START) | AS(LOOKUP),
    [PG_AUTH_MD5] = AS(START) | AS(LOOKUP),
    [PG_AUTH_SASL_FIRST] = AS(START) | AS(LOOKUP),
    [PG_AUTH_SASL_FINAL] = AS(SASL_FIRST),
    [PG_AUTH_DONE] =
        AS(START) | AS(LOOKUP) | AS(PASSWORD) | AS(MD5) | AS(SASL_FIRST) | AS(SASL_FINAL),
};
#undef AS

struct pg_auth {
    pg_auth_state state;
    auth_method method;  /* the check: AUTH_M_PASSWORD, AUTH_M_MD5 or AUTH_M_SCRAM */
    bool found;          /* the user's secret is known: c->login->cred->secret */
    char *dbname, *user; /* as the startup packet named them; owned */
    uint8_t salt[4];     /* of the md5 challenge */
    auth_scram_server scram;
};

#define SCRAM_SALT_LEN   16
#define SCRAM_ITERATIONS 4096

static void auth_set(pg_client *c, pg_auth_state st)
{
    struct pg_auth *a = c->login->auth;
    if (!(auth_from[st] & (1u << a->state))) {
        gw_error(pg_ctx(&c->conn), "client: impossible login state change %s -> %s",
                 auth_state_names[a->state], auth_state_names[st]);
        gw__assert_fail("legal login state change", __FILE__, __LINE__);
    }
    a->state = st;
}

static void free_exchange(struct pg_auth *a)
{
    free(a->dbname);
    free(a->user);
    OPENSSL_cleanse(a, sizeof *a); /* the salted keys and any ClientKey */
    free(a);
}

void pg_auth_client_gone(pg_client *c)
{
    struct pg_auth *a = c->login ? c->login->auth : NULL;
    if (!a)
        return;
    if (a->state == PG_AUTH_LOOKUP)
        pg_shell_auth_lookup_cancel(c);
    c->login->auth = NULL;
    free_exchange(a);
}

void pg_auth_cred_wipe(pg_client *c)
{
    pg_client_cred *cr = c->login ? c->login->cred : NULL;
    if (!cr)
        return;
    c->login->cred = NULL;
    if (cr->password) {
        OPENSSL_cleanse(cr->password, strlen(cr->password));
        free(cr->password);
    }
    if (cr->have_secret) {
        if (cr->secret.text)
            OPENSSL_cleanse(cr->secret.text, strlen(cr->secret.text));
        OPENSSL_cleanse(&cr->secret.scram, sizeof cr->secret.scram);
        auth_secret_clear(&cr->secret);
    }
    OPENSSL_cleanse(cr, sizeof *cr);
    free(cr);
}

const char *pg_auth_user(const pg_client *c)
{
    return c->login && c->login->auth ? c->login->auth->user : NULL;
}

const char *pg_auth_dbname(const pg_client *c)
{
    return c->login && c->login->auth ? c->login->auth->dbname : NULL;
}

/* Wrong password, unknown user, or a secret that cannot serve the method: one answer for all,
 * the reason only in the log. */
static void fail(pg_client *c, const char *reason)
{
    const char *user = c->login->auth->user;
    pg_client_log(c, CFG_LOG_INFO, "password authentication failed for user \"%s\": %s", user,
                  reason);
    pg_client_fatal(c, PG_END_AUTH_FAILED, "28P01",
                    "password authentication failed for user \"%s\"", user);
}

static void protocol_error(pg_client *c, const char *what, const char *why)
{
    pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "%s%s%s", what, why ? ": " : "", why ? why : "");
}

/* The exchange succeeded: it is freed and the client joins its pool. */
static void succeed(pg_client *c)
{
    struct pg_auth *a = c->login->auth;
    auth_set(c, PG_AUTH_DONE);
    char *dbname = a->dbname, *user = a->user;
    a->dbname = a->user = NULL;
    c->login->auth = NULL;
    free_exchange(a);
    gw_debug(pg_ctx(&c->conn), "client: user \"%s\" authenticated", user);
    pg_client_login(c, dbname, user);
    pg_auth_cred_wipe(c); /* the pool has learned what it needs */
    free(dbname);
    free(user);
}

static int send_request(pg_client *c, uint32_t code, const void *data, size_t len)
{
    pg_gateway *gw = c->conn.gw;
    const uint8_t *cbind;
    int rc = code == PG_AUTH_REQ_SASL
                 ? pg_build_auth_sasl(&c->conn.out, gw->bufs,
                                      pg_shell_client_tls_end_point(c, &cbind) > 0)
                 : pg_build_auth_request(&c->conn.out, gw->bufs, code, data, len);
    if (rc != 0) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return -1;
    }
    pg_conn_mark(&c->conn);
    return 0;
}

/* The verifier the SCRAM exchange runs against: the stored one, one derived from a stored
 * plaintext password (once, then kept: gateway/creds.c says why), or NULL for the fake one. */
static int scram_verifier(pg_client *c, auth_scram_verifier *tmp, const auth_scram_verifier **v)
{
    struct pg_auth *a = c->login->auth;
    const auth_secret *s = &c->login->cred->secret;
    *v = NULL;
    if (!a->found)
        return 0;
    if (s->kind == AUTH_SECRET_SCRAM) {
        *v = &s->scram;
        return 0;
    }
    if (s->kind != AUTH_SECRET_PLAIN) {
        gw_info(pg_ctx(&c->conn), "client: user \"%s\" has an md5 secret, which cannot serve SCRAM",
                a->user);
        return 0;
    }
    pg_gateway *gw = c->conn.gw;
    if (!gw->creds && !(gw->creds = gw_creds_new()))
        return -ENOMEM;
    /* The fake verifier's salt length and iterations: the two look alike to a client. */
    int rc =
        gw_creds_get(gw->creds, a->user, s->text, false, SCRAM_SALT_LEN, SCRAM_ITERATIONS, tmp);
    if (rc == 0)
        *v = tmp;
    return rc;
}

/* The user's secret is settled (found or not): send the method's request. */
static void challenge(pg_client *c)
{
    struct pg_auth *a = c->login->auth;
    auth_method m = a->method;
    /* PostgreSQL's rule: md5 with a SCRAM verifier on file means SCRAM. */
    if (m == AUTH_M_MD5 && a->found && c->login->cred->secret.kind == AUTH_SECRET_SCRAM)
        m = AUTH_M_SCRAM;
    a->method = m;
    if (m == AUTH_M_PASSWORD) {
        if (send_request(c, PG_AUTH_REQ_PASSWORD, NULL, 0) == 0)
            auth_set(c, PG_AUTH_PASSWORD);
        return;
    }
    if (m == AUTH_M_MD5) {
        if (RAND_bytes(a->salt, sizeof a->salt) != 1) {
            pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
            return;
        }
        if (send_request(c, PG_AUTH_REQ_MD5, a->salt, sizeof a->salt) == 0)
            auth_set(c, PG_AUTH_MD5);
        return;
    }
    auth_scram_verifier tmp;
    const auth_scram_verifier *v;
    int rc = scram_verifier(c, &tmp, &v);
    if (rc == 0)
        rc = auth_scram_server_init(&a->scram, v, a->user, pg_ctx(&c->conn)->auth_seed, false);
    OPENSSL_cleanse(&tmp, sizeof tmp);
    if (rc != 0) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return;
    }
    if (send_request(c, PG_AUTH_REQ_SASL, NULL, 0) == 0)
        auth_set(c, PG_AUTH_SASL_FIRST);
}

/* Keeps a copy of the stored secret text in c->login->cred-> 0, -EINVAL (unusable), or -ENOMEM. */
static int keep_secret(pg_client *c, const char *text)
{
    const char *why = NULL;
    int rc = auth_secret_parse(text, &c->login->cred->secret, &why);
    if (rc == 0) {
        c->login->cred->have_secret = true;
        c->login->auth->found = true;
    } else if (rc == -EINVAL) {
        gw_warn(pg_ctx(&c->conn), "client: the stored secret of user \"%s\" is unusable: %s",
                c->login->auth->user, why ? why : "malformed");
    }
    return rc;
}

/* The client's address text for hba messages ("[local]" for a Unix socket), and *addr for
 * matching (NULL for a Unix socket). -1 when the shell cannot tell. */
static int peer(pg_client *c, struct sockaddr_storage *ss, const struct sockaddr **addr, char *text,
                size_t cap)
{
    int rc = pg_shell_client_peer(c, ss);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        *addr = NULL;
        snprintf(text, cap, "[local]");
        return 0;
    }
    *addr = (const struct sockaddr *)ss;
    const void *a = ss->ss_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)ss)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)ss)->sin_addr;
    if (!inet_ntop(ss->ss_family, a, text, (socklen_t)cap))
        snprintf(text, cap, "?");
    return 0;
}

/* auth_type hba: the method of the first matching line, or the client is refused (0 with *m,
 * or -1 after closing it). */
static int hba_method(pg_client *c, const char *dbname, const char *user, auth_method *m)
{
    const cfg *conf = pg_ctx(&c->conn)->cfg;
    struct sockaddr_storage ss;
    bool tls = pg_shell_client_tls(c);
    auth_hba_client hc = {.tls = tls, .database = dbname, .user = user};
    char host[INET6_ADDRSTRLEN + 8];
    if (peer(c, &ss, &hc.addr, host, sizeof host) != 0) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                        "could not determine the client's address");
        return -1;
    }
    int line = 0;
    if (!conf->hba || auth_hba_match(conf->hba, &hc, m, &line) != 0) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                        "no pg_hba.conf entry for host \"%s\", user \"%s\", database \"%s\", %s",
                        host, user, dbname, tls ? "SSL encryption" : "no encryption");
        return -1;
    }
    gw_debug(pg_ctx(&c->conn), "client: user \"%s\" from %s matches hba line %d", user, host, line);
    if (*m == AUTH_M_REJECT) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                        "pg_hba.conf rejects connection for host \"%s\", user \"%s\", database "
                        "\"%s\", %s",
                        host, user, dbname, tls ? "SSL encryption" : "no encryption");
        return -1;
    }
    return 0;
}

/* The method auth_type (or hba) asks of this client: 0 with *m, or -1 after closing it. */
static int pick_method(pg_client *c, const char *dbname, const char *user, auth_method *m)
{
    const cfg *conf = pg_ctx(&c->conn)->cfg;
    switch (conf->auth_type) {
    case CFG_AUTH_TRUST:
        *m = AUTH_M_TRUST;
        break;
    case CFG_AUTH_PLAIN:
        *m = AUTH_M_PASSWORD;
        break;
    case CFG_AUTH_MD5:
        *m = AUTH_M_MD5;
        break;
    case CFG_AUTH_SCRAM:
        *m = AUTH_M_SCRAM;
        break;
    case CFG_AUTH_CERT:
        *m = AUTH_M_CERT;
        break;
    case CFG_AUTH_HBA:
        if (hba_method(c, dbname, user, m) != 0)
            return -1;
        break;
    }
    if (*m == AUTH_M_CERT && !pg_shell_client_tls(c)) {
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                        "certificate authentication requires an SSL connection");
        return -1;
    }
    if (*m == AUTH_M_PASSWORD && !conf->auth_plain_without_tls && !pg_shell_client_tls(c)) {
        /* Refused before the client sends its password: it must not cross the network in
         * clear. A Unix socket does not leave the machine. */
        struct sockaddr_storage ss;
        int rc = pg_shell_client_peer(c, &ss);
        if (rc != 0) {
            pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                            "cleartext password authentication is allowed only over a Unix "
                            "socket or TLS (see auth_plain_without_tls)");
            return -1;
        }
    }
    return 0;
}

void pg_auth_begin(pg_client *c, const char *dbname, const char *user)
{
    gw_ctx *ctx = pg_ctx(&c->conn);
    const cfg *conf = ctx->cfg;
    auth_method m = AUTH_M_REJECT;
    if (pick_method(c, dbname, user, &m) != 0)
        return;
    if (m == AUTH_M_CERT) {
        /* The certificate verified against client_tls_ca_file during the handshake; its CN
         * must be the user (PostgreSQL's cert method without a user name map). */
        char cn[256];
        int r = pg_shell_client_cert_cn(c, cn, sizeof cn);
        if (r == 0) {
            pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                            "connection requires a valid client certificate");
            return;
        }
        if (r < 0 || strcmp(cn, user) != 0) {
            gw_info(ctx, "client: certificate CN \"%s\" does not match user \"%s\"",
                    r < 0 ? "(unusable)" : cn, user);
            pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                            "certificate authentication failed for user \"%s\"", user);
            return;
        }
        m = AUTH_M_TRUST;
    }
    if (m == AUTH_M_TRUST) {
        pg_client_login(c, dbname, user);
        return;
    }
    struct pg_auth *a = calloc(1, sizeof *a);
    if (!a || !(a->dbname = strdup(dbname)) || !(a->user = strdup(user)) ||
        !(c->login->cred = calloc(1, sizeof *c->login->cred))) {
        if (a)
            free_exchange(a);
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return;
    }
    a->method = m;
    c->login->auth = a;
    pg_client_set_state(c, PG_CL_AUTH);

    const auth_secret *s = conf->users ? auth_userlist_find(conf->users, user) : NULL;
    if (s) {
        if (keep_secret(c, s->text) == -ENOMEM) {
            pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
            return;
        }
        challenge(c);
        return;
    }
    const cfg_database *db = cfg_find_database(conf, dbname);
    if (cfg_db_auth_user(conf, db) && cfg_db_auth_query(conf, db)) {
        auth_set(c, PG_AUTH_LOOKUP);
        if (pg_shell_auth_lookup(c) == 0)
            return; /* pg_auth_lookup_done continues */
        gw_warn(ctx, "client: user \"%s\" could not be looked up with auth_query", user);
    }
    challenge(c); /* an unknown user: the exchange runs and fails at its end */
}

void pg_auth_lookup_done(pg_client *c, const char *secret, const char *error)
{
    struct pg_auth *a = c->login->auth;
    gw_assert(c->state == PG_CL_AUTH && a && a->state == PG_AUTH_LOOKUP);
    /* The answer is in: closing now must not cancel a lookup that is over. */
    if (error) {
        auth_set(c, PG_AUTH_DONE);
        gw_warn(pg_ctx(&c->conn), "client: auth_query for user \"%s\" failed: %s", a->user, error);
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000",
                        "authentication lookup failed for user \"%s\"", a->user);
        return;
    }
    if (secret && keep_secret(c, secret) == -ENOMEM) {
        auth_set(c, PG_AUTH_DONE);
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return;
    }
    challenge(c);
    pg_conn_mark_process(&c->conn);
}

/* A PasswordMessage: cleartext or md5, checked against the secret (when there is one). */
static void on_password(pg_client *c, const uint8_t *body, size_t len)
{
    struct pg_auth *a = c->login->auth;
    const char *pw, *why;
    if (pg_parse_password(body, len, &pw, &why) != 0) {
        protocol_error(c, why, NULL);
        return;
    }
    if (!a->found) {
        fail(c, a->state == PG_AUTH_MD5 ? "no such user (md5)" : "no such user");
        return;
    }
    int rc = a->state == PG_AUTH_MD5 ? auth_md5_check(&c->login->cred->secret, a->user, a->salt, pw)
                                     : auth_plain_check(&c->login->cred->secret, a->user, pw);
    if (rc != 0) {
        fail(c, rc == AUTH_FAIL ? "wrong password" : "the check failed");
        return;
    }
    if (a->state == PG_AUTH_PASSWORD && !(c->login->cred->password = strdup(pw))) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return;
    }
    succeed(c);
}

/* Ends the client when a SCRAM step failed for memory, channel binding (28000) or a malformed
 * message (08P01, as PostgreSQL answers). why is the auth library's text, already PostgreSQL's
 * message ("malformed SCRAM message (...)"), so it goes out as is. Returns rc. */
static int scram_step_failed(pg_client *c, int rc, const char *why)
{
    if (rc == -ENOMEM) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
    } else if (rc == -EACCES) {
        gw_info(pg_ctx(&c->conn), "client: SCRAM channel binding refused for user \"%s\": %s",
                c->login->auth->user, why);
        pg_client_fatal(c, PG_END_LOGIN_REFUSED, "28000", "%s", why);
    } else if (rc != 0) {
        protocol_error(c, why ? why : "malformed SCRAM message", NULL);
    }
    return rc;
}

static void on_sasl_first(pg_client *c, const uint8_t *body, size_t len)
{
    struct pg_auth *a = c->login->auth;
    const char *mech, *why;
    const uint8_t *data;
    size_t n;
    if (pg_parse_sasl_initial(body, len, &mech, &data, &n, &why) != 0) {
        protocol_error(c, why, NULL);
        return;
    }
    /* -PLUS only where it was offered: over TLS, with a certificate that defines the data. */
    const uint8_t *cbind;
    const size_t cbind_len = pg_shell_client_tls_end_point(c, &cbind);
    const bool plus = cbind_len > 0 && strcmp(mech, "SCRAM-SHA-256-PLUS") == 0;
    if (!plus && strcmp(mech, "SCRAM-SHA-256") != 0) {
        protocol_error(c, "client selected an invalid SASL authentication mechanism", NULL);
        return;
    }
    if (!data || n > AUTH_SCRAM_INPUT_MAX) {
        protocol_error(c, "malformed SCRAM message", data ? "too long" : "no initial response");
        return;
    }
    char msg[AUTH_SCRAM_MSG_MAX];
    why = NULL;
    int rc = auth_scram_server_bind(&a->scram, plus, cbind, cbind_len, &why);
    if (rc == 0)
        rc = auth_scram_server_first(&a->scram, (const char *)data, n, msg, &why);
    if (scram_step_failed(c, rc, why) != 0)
        return;
    if (send_request(c, PG_AUTH_REQ_SASL_CONTINUE, msg, strlen(msg)) == 0)
        auth_set(c, PG_AUTH_SASL_FINAL);
}

static void on_sasl_final(pg_client *c, const uint8_t *body, size_t len)
{
    struct pg_auth *a = c->login->auth;
    if (len > AUTH_SCRAM_INPUT_MAX) {
        protocol_error(c, "malformed SCRAM message", "too long");
        return;
    }
    char msg[AUTH_SCRAM_MSG_MAX];
    const char *why = NULL;
    int rc = auth_scram_server_final(&a->scram, (const char *)body, len, msg, &why);
    if (rc == AUTH_FAIL) {
        fail(c, a->scram.fake ? "no such user, or no SCRAM secret" : "wrong password (SCRAM)");
        return;
    }
    if (scram_step_failed(c, rc, why) != 0)
        return;
    memcpy(c->login->cred->client_key, a->scram.client_key, sizeof c->login->cred->client_key);
    c->login->cred->have_client_key = true;
    if (send_request(c, PG_AUTH_REQ_SASL_FINAL, msg, strlen(msg)) == 0)
        succeed(c);
}

void pg_auth_input(pg_client *c, uint8_t t, const uint8_t *body, size_t len)
{
    struct pg_auth *a = c->login->auth;
    gw_assert(a);
    if (t == 'X') {
        pg_client_close(c, PG_END_CLIENT_LEFT, "client terminated the session during login");
        return;
    }
    if (t != 'p' || a->state == PG_AUTH_LOOKUP) {
        bool sasl = a->state == PG_AUTH_SASL_FIRST || a->state == PG_AUTH_SASL_FINAL;
        pg_client_fatal(c, PG_END_PROTOCOL, "08P01", "expected %s response, got message type %d",
                        sasl ? "SASL" : "password", t);
        return;
    }
    switch (a->state) {
    case PG_AUTH_PASSWORD:
    case PG_AUTH_MD5:
        on_password(c, body, len);
        return;
    case PG_AUTH_SASL_FIRST:
        on_sasl_first(c, body, len);
        return;
    case PG_AUTH_SASL_FINAL:
        on_sasl_final(c, body, len);
        return;
    case PG_AUTH_START:
    case PG_AUTH_LOOKUP:
    case PG_AUTH_DONE:
        break;
    }
    gw__assert_fail("a client message in a login state that takes none", __FILE__, __LINE__);
}
