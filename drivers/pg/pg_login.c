/*
 * pg_login: what a pool logs in to its servers with, and Sluice's own login for what libpq
 * cannot do.
 *
 * The password comes from the [databases] line, else the users file, else a client's own login
 * (PgBouncer's order). A plaintext password goes to libpq like the line's would. Two
 * credentials libpq 15 cannot use:
 *   - PostgreSQL's md5 hash ("md5..." in the users file): the md5 challenge is answered from
 *     the hash itself (md5 passthrough);
 *   - a SCRAM verifier: no password exists anywhere, but a client's correct proof reveals its
 *     ClientKey (proof XOR HMAC(StoredKey, AuthMessage)), and ClientKey with the verifier's
 *     ServerKey is all a SCRAM client needs (SCRAM passthrough). It works when the server's
 *     verifier is the one Sluice has (the same salt and iterations): copy it from pg_authid.
 * libpq offers no way to answer an authentication request itself, so for these Sluice runs the
 * startup exchange on a socket the shell connects (pg_dial.c): an SSLRequest first when the
 * sslmode asks for TLS (the shell then runs the handshake), StartupMessage, the server's
 * authentication requests, then ParameterStatus, BackendKeyData and ReadyForQuery, after which
 * the server is used like any other. Cancels of such a server are sent by Sluice too (it has
 * the BackendKeyData, libpq has nothing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/auth.h"
#include "auth/scram.h"
#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_wire.h"

/* Login messages are small; a larger one means the stream is not a PostgreSQL server's. */
#define LOGIN_MSG_MAX (64u * 1024u)

/* The own login's steps, in order. */
typedef enum login_step {
    LOGIN_SSL,    /* SSLRequest sent; awaiting the server's one-byte answer */
    LOGIN_TLS,    /* the server said 'S': the shell's TLS handshake is under way */
    LOGIN_AUTH,   /* startup sent; awaiting an authentication request or AuthenticationOk */
    LOGIN_SASL,   /* SCRAM client-first sent; awaiting SASLContinue */
    LOGIN_FINAL,  /* SCRAM client-final sent; awaiting SASLFinal */
    LOGIN_PARAMS, /* authenticated; collecting ParameterStatus/BackendKeyData until ReadyForQuery */
} login_step;

struct pg_login {
    login_step step;
    auth_scram_client scram;
};

/* The [databases] line's value for keyword kw, or NULL. */
static const char *pool_kw(const pg_pool *p, const char *kw)
{
    for (size_t i = 0; p->kw && p->kw[i]; i++)
        if (strcmp(p->kw[i], kw) == 0)
            return p->val[i];
    return NULL;
}

void pg_pool_cred_clear(pg_pool *p)
{
    if (p->cred.password) {
        OPENSSL_cleanse(p->cred.password, strlen(p->cred.password));
        free(p->cred.password);
    }
    OPENSSL_cleanse(&p->cred, sizeof p->cred);
}

static int set_password(pg_pool *p, const char *pw)
{
    char *copy = strdup(pw);
    if (!copy)
        return -1;
    pg_pool_cred_clear(p);
    p->cred.kind = PG_CRED_PASSWORD;
    p->cred.password = copy;
    return 0;
}

void pg_pool_cred_from_file(pg_pool *p, const gw_ctx *ctx)
{
    p->line_password = pool_kw(p, "password") != NULL;
    const char *user = pool_kw(p, "user");
    const auth_secret *s =
        ctx->cfg->users && user ? auth_userlist_find(ctx->cfg->users, user) : NULL;
    if (p->line_password || !s)
        return;
    switch (s->kind) {
    case AUTH_SECRET_PLAIN:
        if (p->cred.kind != PG_CRED_PASSWORD || strcmp(p->cred.password, s->text) != 0)
            set_password(p, s->text);
        break;
    case AUTH_SECRET_MD5:
        if (p->cred.kind == PG_CRED_PASSWORD)
            break; /* a client's own password is better than a hash */
        pg_pool_cred_clear(p);
        p->cred.kind = PG_CRED_MD5;
        snprintf(p->cred.md5, sizeof p->cred.md5, "%s", s->text);
        break;
    case AUTH_SECRET_SCRAM:
        /* Usable once a client proves its ClientKey (pg_pool_cred_learn). */
        if (p->cred.kind == PG_CRED_NONE)
            p->cred.verifier_known = true;
        break;
    }
}

void pg_pool_cred_learn(pg_pool *p, const pg_client_cred *cr)
{
    const char *user = pool_kw(p, "user");
    /* A forced user logs in with its own secret, never with what a client proved about itself. */
    if (p->line_password || !user || strcmp(user, p->user) != 0)
        return;
    pg_cred_kind before = p->cred.kind;
    const auth_secret *s = cr->have_secret ? &cr->secret : NULL;
    const char *password = cr->password;
    if (!password && s && s->kind == AUTH_SECRET_PLAIN)
        password = s->text;
    if (password) {
        if (before != PG_CRED_PASSWORD || strcmp(p->cred.password, password) != 0)
            set_password(p, password);
    } else if (before == PG_CRED_PASSWORD) {
        /* a plaintext password beats anything derived from a secret */
    } else if (s && s->kind == AUTH_SECRET_SCRAM && cr->have_client_key) {
        pg_pool_cred_clear(p);
        p->cred.kind = PG_CRED_SCRAM;
        memcpy(p->cred.client_key, cr->client_key, sizeof p->cred.client_key);
        memcpy(p->cred.server_key, s->scram.server_key, sizeof p->cred.server_key);
    } else if (s && s->kind == AUTH_SECRET_MD5 && before != PG_CRED_SCRAM) {
        pg_pool_cred_clear(p);
        p->cred.kind = PG_CRED_MD5;
        snprintf(p->cred.md5, sizeof p->cred.md5, "%s", s->text);
    }
    /* Attempts that failed for want of this credential are not held back by the retry delay. */
    if (before != p->cred.kind && p->last_fail) {
        p->last_fail = 0;
        pg_pool_maybe_connect(p);
    }
}

bool pg_login_wanted(const pg_pool *p)
{
    return !p->line_password && (p->cred.kind == PG_CRED_MD5 || p->cred.kind == PG_CRED_SCRAM);
}

const char *pg_pool_cred_password(const pg_pool *p)
{
    return !p->line_password && p->cred.kind == PG_CRED_PASSWORD ? p->cred.password : NULL;
}

void pg_login_free(pg_server *s)
{
    if (s->login) {
        OPENSSL_cleanse(s->login, sizeof *s->login);
        free(s->login);
        s->login = NULL;
    }
}

/* The startup packet: protocol 3.0, user, database, and what else the line sets for the
 * session (options, application_name), as libpq would send them. */
static int build_startup(pg_server *s)
{
    pg_pool *p = s->pool;
    gw_buf *b = &s->conn.out;
    gw_bufpool *bp = s->conn.gw->bufs;
    size_t start = b->len;
    uint8_t hdr[8];
    pg_put_u32(hdr, 0);
    pg_put_u32(hdr + 4, PG_PROTO_30);
    int rc = pg_msg_put(b, bp, hdr, sizeof hdr);
    static const char *const pass[][2] = {
        {"user", "user"},
        {"database", "dbname"},
        {"options", "options"},
        {"application_name", "application_name"},
        {"replication", "replication"},
    };
    for (size_t i = 0; rc == 0 && i < sizeof pass / sizeof pass[0]; i++) {
        const char *v = pool_kw(p, pass[i][1]);
        if (!v && strcmp(pass[i][0], "application_name") == 0)
            v = pool_kw(p, "fallback_application_name");
        if (v && *v) {
            rc = pg_msg_put_str(b, bp, pass[i][0]);
            rc = rc ? rc : pg_msg_put_str(b, bp, v);
        }
    }
    rc = rc ? rc : pg_msg_put(b, bp, "", 1);
    if (rc != 0) {
        b->len = start;
        return rc;
    }
    pg_put_u32(b->data + start, (uint32_t)(b->len - start));
    return 0;
}

void pg_login_begin(pg_server *s)
{
    if (pg_conn_closing(&s->conn))
        return;
    s->login = calloc(1, sizeof *s->login);
    if (!s->login) {
        pg_server_connect_failed(s, "out of memory");
        return;
    }
    s->own_login = true;
    gw_debug(pg_ctx(&s->conn), "server %u: Sluice logs in to %s/%s itself (%s passthrough)", s->id,
             s->pool->dbname, s->pool->user, s->pool->cred.kind == PG_CRED_MD5 ? "md5" : "SCRAM");
    /* TLS first when the sslmode wants it and the connection can have it (libpq never asks on
     * a Unix socket either); allow, like libpq, tries cleartext. */
    const char *mode = pool_kw(s->pool, "sslmode");
    bool try_tls = mode && strcmp(mode, "disable") != 0 && strcmp(mode, "allow") != 0 &&
                   pg_shell_server_tls_capable(s);
    s->login->step = try_tls ? LOGIN_SSL : LOGIN_AUTH;
    int rc;
    if (try_tls) {
        uint8_t req[8];
        pg_put_u32(req, 8);
        pg_put_u32(req + 4, PG_CODE_SSL);
        rc = pg_msg_put(&s->conn.out, s->conn.gw->bufs, req, sizeof req);
    } else {
        rc = build_startup(s);
    }
    if (rc != 0) {
        pg_server_connect_failed(s, "out of memory");
        return;
    }
    pg_conn_mark(&s->conn);
}

/* Whether the line's sslmode (or server_tls_sslmode) refuses a cleartext connection. */
static bool tls_required(const pg_pool *p)
{
    const char *mode = pool_kw(p, "sslmode");
    return mode && (strcmp(mode, "require") == 0 || strncmp(mode, "verify-", 7) == 0);
}

/* The server's answer to the SSLRequest (the first byte of input). Returns 0 to go on, -1 when
 * the server was closed. */
static int on_ssl_answer(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    uint8_t answer = s->conn.in.data[0];
    /* Nothing may follow the answer before the handshake: bytes that did were sent in
     * cleartext by someone who wants them read as if they came through TLS (CVE-2021-23222). */
    if (s->conn.in.len > 1) {
        pg_server_connect_failed(s, "the server sent unencrypted data after its SSL answer");
        return -1;
    }
    gw_buf_consume(&s->conn.in, gw->bufs, 1);
    if (answer == 'S') {
        s->login->step = LOGIN_TLS;
        return pg_shell_server_start_tls(s) == 0 ? 0 : -1;
    }
    if (answer != 'N') {
        pg_server_connect_failed(s, answer == 'E' ? "the server refused the SSLRequest"
                                                  : "unexpected answer to the SSLRequest");
        return -1;
    }
    if (tls_required(s->pool)) {
        pg_server_connect_failed(s, "server does not support SSL, but SSL was required");
        return -1;
    }
    s->login->step = LOGIN_AUTH;
    if (build_startup(s) != 0) {
        pg_server_connect_failed(s, "out of memory");
        return -1;
    }
    pg_conn_mark(&s->conn);
    return 0;
}

void pg_login_tls_ready(pg_server *s)
{
    if (pg_conn_closing(&s->conn))
        return;
    if (!s->login || s->login->step != LOGIN_TLS) {
        pg_server_connect_failed(s, "TLS handshake completed at an unexpected time");
        return;
    }
    s->login->step = LOGIN_AUTH;
    if (build_startup(s) != 0) {
        pg_server_connect_failed(s, "out of memory");
        return;
    }
    pg_conn_mark(&s->conn);
}

/* A failed login: the server's refusal in the shape the pool records (pg_pqerr.h), so clients
 * get the server's SQLSTATE and words as with libpq. */
static void fail_from_server(pg_server *s, const uint8_t *body, size_t len)
{
    const char *sev = pg_error_field(body, len, 'V');
    const char *code = pg_error_field(body, len, 'C');
    const char *msg = pg_error_field(body, len, 'M');
    char text[512];
    snprintf(text, sizeof text, "%s:  %s: %s\n", sev ? sev : "FATAL", code ? code : "08006",
             msg ? msg : "the server refused the login");
    pg_server_connect_failed(s, text);
}

/* A password-type message ('p') with body bytes. */
static int send_p(pg_server *s, const void *body, size_t len)
{
    size_t start;
    gw_bufpool *bp = s->conn.gw->bufs;
    int rc = pg_msg_begin(&s->conn.out, bp, 'p', &start);
    rc = rc ? rc : pg_msg_put(&s->conn.out, bp, body, len);
    rc = pg_msg_finish(&s->conn.out, start, rc);
    pg_conn_mark(&s->conn);
    return rc;
}

/* The server's authentication request (an 'R' message). Returns 0 to go on, or a reason the
 * login cannot continue (the server is closed by the caller). */
static const char *on_auth_request(pg_server *s, pg_reader *r)
{
    pg_login *l = s->login;
    pg_pool_cred *cr = &s->pool->cred;
    uint32_t code = pg_read_u32(r);
    if (r->err)
        return "malformed authentication request from the server";
    switch (code) {
    case 0: /* AuthenticationOk */
        if (l->step == LOGIN_SASL || (l->step == LOGIN_FINAL))
            return "the server ended the SCRAM exchange before it proved itself";
        l->step = LOGIN_PARAMS;
        return NULL;
    case 5: { /* AuthenticationMD5Password */
        const uint8_t *salt = r->p + r->pos;
        if (l->step != LOGIN_AUTH || r->len - r->pos != 4)
            return "malformed md5 request from the server";
        if (cr->kind != PG_CRED_MD5)
            return "the server asks for md5, but only a SCRAM verifier is known for this user";
        char resp[AUTH_MD5_LEN + 1];
        auth_md5_response(cr->md5, salt, resp);
        return send_p(s, resp, strlen(resp) + 1) ? "out of memory" : NULL;
    }
    case 10: { /* AuthenticationSASL: a list of mechanisms */
        if (l->step != LOGIN_AUTH)
            return "unexpected SASL request from the server";
        bool scram = false;
        for (;;) {
            size_t n;
            const char *mech = pg_read_str(r, &n);
            if (r->err || n == 0)
                break;
            scram |= strcmp(mech, "SCRAM-SHA-256") == 0;
        }
        if (!scram)
            return "the server offers no SASL mechanism Sluice supports";
        if (cr->kind != PG_CRED_SCRAM)
            return "the server asks for SCRAM, but only an md5 hash is known for this user";
        char first[AUTH_SCRAM_MSG_MAX];
        if (auth_scram_client_init_keys(&l->scram, cr->client_key, cr->server_key) != 0 ||
            auth_scram_client_first(&l->scram, first) != 0)
            return "SCRAM client could not start";
        /* SASLInitialResponse: mechanism, then the length-prefixed client-first. */
        static const char mech[] = "SCRAM-SHA-256";
        size_t fl = strlen(first);
        uint8_t body[sizeof mech + 4 + AUTH_SCRAM_MSG_MAX];
        memcpy(body, mech, sizeof mech);
        pg_put_u32(body + sizeof mech, (uint32_t)fl);
        memcpy(body + sizeof mech + 4, first, fl);
        l->step = LOGIN_SASL;
        return send_p(s, body, sizeof mech + 4 + fl) ? "out of memory" : NULL;
    }
    case 11: { /* AuthenticationSASLContinue: server-first */
        if (l->step != LOGIN_SASL)
            return "unexpected SASLContinue from the server";
        const char *why = "malformed SCRAM challenge";
        char final[AUTH_SCRAM_MSG_MAX];
        if (auth_scram_client_final(&l->scram, (const char *)r->p + r->pos, r->len - r->pos, final,
                                    &why) != 0)
            return why;
        l->step = LOGIN_FINAL;
        return send_p(s, final, strlen(final)) ? "out of memory" : NULL;
    }
    case 12: { /* AuthenticationSASLFinal: server-final */
        const char *why = "the server's SCRAM signature is wrong";
        if (l->step != LOGIN_FINAL ||
            auth_scram_client_verify(&l->scram, (const char *)r->p + r->pos, r->len - r->pos,
                                     &why) != 0)
            return l->step != LOGIN_FINAL ? "unexpected SASLFinal from the server" : why;
        l->step = LOGIN_AUTH; /* AuthenticationOk follows */
        return NULL;
    }
    case 3: /* cleartext: never sent, since no plaintext password is known on this path */
        return "the server asks for a cleartext password, which is not known for this user";
    default:
        return "the server asks for an authentication method Sluice cannot answer";
    }
}

/* One whole login message. Returns 0 to go on, 1 once the server is connected, -1 when the
 * server was closed. */
static int login_msg(pg_server *s, uint8_t t, const uint8_t *body, size_t len)
{
    pg_reader r = pg_reader_make(body, len);
    const char *bad = NULL;
    switch (t) {
    case 'R':
        bad = on_auth_request(s, &r);
        break;
    case 'E':
        fail_from_server(s, body, len);
        return -1;
    case 'N': /* a notice during the login: nobody to give it to */
    case 'v': /* NegotiateProtocolVersion: the server knows fewer options; none were sent */
        break;
    case 'S': {
        if (s->login->step != LOGIN_PARAMS) {
            bad = "parameter status before authentication";
            break;
        }
        const char *k = pg_read_str(&r, NULL);
        const char *v = pg_read_str(&r, NULL);
        if (r.err)
            bad = "malformed parameter status from the server";
        else if (pg_params_set(&s->params, k, v) != 0)
            bad = "out of memory";
        break;
    }
    case 'K':
        s->backend_pid = pg_read_u32(&r);
        s->backend_key = pg_read_u32(&r);
        if (r.err || s->login->step != LOGIN_PARAMS)
            bad = "malformed backend key data from the server";
        break;
    case 'Z':
        if (s->login->step != LOGIN_PARAMS) {
            bad = "ready for query before authentication";
            break;
        }
        pg_login_free(s);
        pg_server_connected(s, (int)s->backend_pid);
        return 1;
    default:
        bad = "unexpected message from the server during the login";
        break;
    }
    if (bad) {
        pg_server_connect_failed(s, bad);
        return -1;
    }
    return 0;
}

void pg_login_process(pg_server *s)
{
    pg_gateway *gw = s->conn.gw;
    size_t pos = 0;
    int rc = 0;
    if (s->login->step == LOGIN_SSL && s->conn.in.len > 0 && on_ssl_answer(s) != 0)
        return;
    if (s->login->step == LOGIN_SSL || s->login->step == LOGIN_TLS) {
        /* Before the handshake completed, plaintext can only be forged. */
        if (s->login->step == LOGIN_TLS && s->conn.in.len > 0)
            pg_server_connect_failed(s, "the server sent data before the TLS handshake ended");
        return;
    }
    while (rc == 0 && s->conn.in.len - pos >= 5) {
        const uint8_t *p = s->conn.in.data + pos;
        uint32_t mlen = pg_get_u32(p + 1);
        if (mlen < 4 || mlen > LOGIN_MSG_MAX) {
            pg_server_connect_failed(s, "invalid message length from the server during login");
            return;
        }
        if (s->conn.in.len - pos < (size_t)mlen + 1)
            break;
        pos += (size_t)mlen + 1;
        rc = login_msg(s, p[0], p + 5, mlen - 4);
    }
    if (rc < 0)
        return;
    gw_buf_consume(&s->conn.in, gw->bufs, pos);
    /* Connected: what arrived behind ReadyForQuery (nothing, normally) is the relay's. */
    if (rc == 1 && s->conn.in.len > 0)
        pg_conn_mark_process(&s->conn);
}
