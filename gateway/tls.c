/*
 * gw_tls: OpenSSL driven through a BIO that reads from the bytes being fed and writes into the
 * caller's wire buffer (see tls.h). No call here can block: the BIO answers "retry" when the fed
 * bytes run out, which OpenSSL reports as SSL_ERROR_WANT_READ, and its writes always succeed
 * (they only append to memory). A partial record is copied into OpenSSL's own record buffer,
 * so every fed byte is consumed in the call.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "gateway/tls.h"

struct gw_tls_conf {
    SSL_CTX *ctx;
    BIO_METHOD *bio; /* the feeding BIO's methods; lives as long as any session of the conf */
    unsigned refs;
    /* tls-server-end-point of the certificate (SCRAM channel binding); len 0: undefined */
    uint8_t end_point[EVP_MAX_MD_SIZE];
    unsigned end_point_len;
};

struct gw_tls {
    SSL *ssl;
    gw_tls_conf *conf;
    /* Valid only during gw_tls_unseal / gw_tls_seal: what the BIO reads from and writes to. */
    const uint8_t *in;
    size_t in_len;
    gw_buf *wire;
    gw_bufpool *pool;
    unsigned long err;  /* OpenSSL's error code of the last failure, 0 if none */
    const char *reason; /* or a reason of our own */
    bool direct;
    /* Adopted (gw_tls_adopt): another owner made the session and still holds a reference; the
     * session's BIO uses these methods, which this session owns (conf is NULL). */
    BIO_METHOD *own_bio;
    gw_tls_bufs bufs; /* the transport's, see gw_tls_bufs_of */
};

/* ---- The feeding BIO ---- */

static int bio_read(BIO *b, char *out, int len)
{
    gw_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t || t->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static int bio_write(BIO *b, const char *data, int len)
{
    gw_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t || !t->wire || gw_buf_append(t->wire, t->pool, data, (size_t)len) != 0)
        return -1; /* SSL_ERROR_SYSCALL: out of memory */
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *feed_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice feed");
    if (!m)
        return NULL;
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
}

/* ---- Contexts ---- */

int gw_tls_parse_protocols(const char *s, int *min, int *max)
{
    static const struct {
        const char *name;
        int v;
    } names[] = {{"tlsv1.0", TLS1_VERSION},
                 {"tlsv1.1", TLS1_1_VERSION},
                 {"tlsv1.2", TLS1_2_VERSION},
                 {"tlsv1.3", TLS1_3_VERSION}};
    if (!s || !*s || strcmp(s, "secure") == 0) {
        *min = TLS1_2_VERSION;
        *max = TLS1_3_VERSION;
        return 0;
    }
    if (strcmp(s, "all") == 0 || strcmp(s, "legacy") == 0) {
        *min = TLS1_VERSION;
        *max = TLS1_3_VERSION;
        return 0;
    }
    /* A comma- or space-separated list; OpenSSL takes a range, so the range it spans. */
    int lo = 0, hi = 0;
    const char *p = s;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == ':')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ", :");
        int v = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == len && strncasecmp(p, names[i].name, len) == 0)
                v = names[i].v;
        if (!v)
            return -1;
        if (!lo || v < lo)
            lo = v;
        if (v > hi)
            hi = v;
        p += len;
    }
    if (!lo)
        return -1;
    *min = lo;
    *max = hi;
    return 0;
}

const char *gw_tls_protocol_name(int v)
{
    switch (v) {
    case TLS1_VERSION:
        return "TLSv1";
    case TLS1_1_VERSION:
        return "TLSv1.1";
    case TLS1_2_VERSION:
        return "TLSv1.2";
    case TLS1_3_VERSION:
        return "TLSv1.3";
    default:
        return NULL;
    }
}

/* ALPN: only "postgresql" is spoken. A client that offers ALPN without it is refused, as
 * PostgreSQL 17 does; one that offers no ALPN never comes here. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    static const unsigned char pg[] = "postgresql";
    for (unsigned i = 0; i < inlen;) {
        unsigned len = in[i];
        if (i + 1 + len > inlen)
            break;
        if (len == sizeof pg - 1 && memcmp(in + i + 1, pg, len) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* PgBouncer's (libtls's) cipher list names in OpenSSL's syntax; other values are OpenSSL lists
 * already. NULL: OpenSSL's default. Only TLS 1.2 is affected (1.3 suites are all AEAD). */
static const char *cipher_list(const char *v)
{
    if (!v || !*v)
        return NULL;
    if (strcmp(v, "default") == 0 || strcmp(v, "secure") == 0)
        return "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20";
    if (strcmp(v, "compat") == 0 || strcmp(v, "legacy") == 0 || strcmp(v, "normal") == 0 ||
        strcmp(v, "fast") == 0)
        return "HIGH:!aNULL";
    if (strcmp(v, "insecure") == 0 || strcmp(v, "all") == 0)
        return "ALL:!aNULL";
    return v;
}

/* Writes "what 'path': OpenSSL's reason" to err; returns -1. */
static int fail(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    if (path)
        snprintf(err, errlen, "%s '%s'%s%s", what, path, why ? ": " : "", why ? why : "");
    else
        snprintf(err, errlen, "%s%s%s", what, why ? ": " : "", why ? why : "");
    ERR_clear_error();
    return -1;
}

/* RFC 5929 section 4.1: the certificate hashed with the digest of its own signature, SHA-256
 * in place of MD5 or SHA-1. A signature with no single digest (Ed25519, Ed448) leaves it
 * undefined: len 0, and -PLUS is not offered. Once per context: every login would ask. */
static void end_point_hash(gw_tls_conf *c)
{
    X509 *cert = SSL_CTX_get0_certificate(c->ctx);
    int md_nid = NID_undef;
    c->end_point_len = 0;
    if (!cert || !X509_get_signature_info(cert, &md_nid, NULL, NULL, NULL))
        return;
    if (md_nid == NID_md5 || md_nid == NID_sha1)
        md_nid = NID_sha256;
    const EVP_MD *md = md_nid == NID_undef ? NULL : EVP_get_digestbynid(md_nid);
    if (!md || X509_digest(cert, md, c->end_point, &c->end_point_len) != 1)
        c->end_point_len = 0;
    ERR_clear_error();
}

/* x's certificate (chain) and the key that goes with it (both may be one file). 0 or -1. */
static int load_cert_key(SSL_CTX *x, const char *cert, const char *key, char *err, size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(x, cert) != 1)
        return fail(err, errlen, "cannot load certificate", cert);
    if (SSL_CTX_use_PrivateKey_file(x, key, SSL_FILETYPE_PEM) != 1)
        return fail(err, errlen, "cannot load private key", key);
    if (SSL_CTX_check_private_key(x) != 1)
        return fail(err, errlen, "the private key does not match the certificate", key);
    return 0;
}

/* The context and feeding BIO every conf has; 0 or -1 with err set (c released by the caller). */
static int conf_init(gw_tls_conf *c, const SSL_METHOD *method, char *err, size_t errlen)
{
    c->refs = 1;
    c->ctx = SSL_CTX_new(method);
    c->bio = feed_method();
    if (!c->ctx || !c->bio)
        return fail(err, errlen, "cannot create a TLS context", NULL);
    return 0;
}

int gw_tls_conf_new(const gw_tls_settings *s, gw_tls_conf **out, char *err, size_t errlen)
{
    *out = NULL;
    ERR_clear_error();
    int min, max;
    if (gw_tls_parse_protocols(s->protocols, &min, &max) != 0) {
        snprintf(err, errlen, "client_tls_protocols: unknown value '%s'", s->protocols);
        return -1;
    }
    gw_tls_conf *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (conf_init(c, TLS_server_method(), err, errlen) != 0)
        goto bad;
    SSL_CTX *x = c->ctx;
    /* No renegotiation (a client could make the server redo expensive work at will), no
     * compression (CRIME), no session tickets or cache (every pooler login is new anyway, and a
     * ticket costs bytes per connection). Buffers are released while idle. */
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(x, 0);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
    if (!SSL_CTX_set_min_proto_version(x, min) || !SSL_CTX_set_max_proto_version(x, max)) {
        fail(err, errlen, "client_tls_protocols: not supported by this OpenSSL", NULL);
        goto bad;
    }
    const char *ciphers = cipher_list(s->ciphers);
    if (ciphers && !SSL_CTX_set_cipher_list(x, ciphers)) {
        fail(err, errlen, "client_tls_ciphers: no usable cipher in the list", NULL);
        goto bad;
    }
    if (s->ecdhcurve && *s->ecdhcurve && strcmp(s->ecdhcurve, "auto") != 0 &&
        strcmp(s->ecdhcurve, "none") != 0 && !SSL_CTX_set1_groups_list(x, s->ecdhcurve)) {
        fail(err, errlen, "client_tls_ecdhcurve: unknown curve", NULL);
        goto bad;
    }
    if (s->dheparams && strcmp(s->dheparams, "none") != 0) {
        if (strcmp(s->dheparams, "auto") != 0 && strcmp(s->dheparams, "legacy") != 0) {
            snprintf(err, errlen, "client_tls_dheparams: expected none, auto or legacy, got '%s'",
                     s->dheparams);
            goto bad;
        }
        SSL_CTX_set_dh_auto(x, 1);
    }
    if (!s->cert_file || !*s->cert_file || !s->key_file || !*s->key_file) {
        snprintf(err, errlen, "client_tls_key_file and client_tls_cert_file are both needed");
        goto bad;
    }
    if (load_cert_key(x, s->cert_file, s->key_file, err, errlen) != 0)
        goto bad;
    if (s->ca_file && *s->ca_file) {
        if (SSL_CTX_load_verify_locations(x, s->ca_file, NULL) != 1) {
            fail(err, errlen, "cannot load CA file", s->ca_file);
            goto bad;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(x, names);
    } else if (s->verify_peer) {
        snprintf(err, errlen, "verifying client certificates needs client_tls_ca_file");
        goto bad;
    }
    if (s->verify_peer)
        SSL_CTX_set_verify(x, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    else if (s->verify_optional && s->ca_file && *s->ca_file)
        SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
    if (s->alpn_postgresql)
        SSL_CTX_set_alpn_select_cb(x, alpn_select, NULL);
    end_point_hash(c);
    *out = c;
    return 0;
bad:
    gw_tls_conf_release(c);
    ERR_clear_error();
    return -1;
}

/* Atomic: a client session may be freed on another thread than the one that made it. */
void gw_tls_conf_ref(gw_tls_conf *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void gw_tls_conf_release(gw_tls_conf *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    SSL_CTX_free(c->ctx);
    BIO_meth_free(c->bio);
    free(c);
}

size_t gw_tls_conf_end_point(const gw_tls_conf *c, const uint8_t **data)
{
    *data = c->end_point;
    return c->end_point_len;
}

/* ---- Sessions ---- */

/* A session on conf with its feeding BIO, neither side's state set yet. */
static gw_tls *session_new(gw_tls_conf *conf)
{
    gw_tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ssl = SSL_new(conf->ctx);
    BIO *b = BIO_new(conf->bio);
    if (!t->ssl || !b) {
        BIO_free(b);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b); /* one BIO both ways; SSL_free frees it */
    t->conf = conf;
    gw_tls_conf_ref(conf);
    return t;
}

gw_tls *gw_tls_new(gw_tls_conf *conf, bool direct)
{
    gw_tls *t = session_new(conf);
    if (!t)
        return NULL;
    SSL_set_accept_state(t->ssl);
    t->direct = direct;
    return t;
}

gw_tls *gw_tls_adopt(void *session)
{
    SSL *ssl = session;
    if (!ssl || !SSL_is_init_finished(ssl) || SSL_is_server(ssl))
        return NULL;
    gw_tls *t = calloc(1, sizeof *t);
    BIO_METHOD *m = t ? feed_method() : NULL;
    BIO *b = m ? BIO_new(m) : NULL;
    if (!b || !SSL_up_ref(ssl)) {
        BIO_free(b);
        BIO_meth_free(m);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    t->ssl = ssl;
    t->own_bio = m;
    BIO_set_data(b, t);
    /* The previous owner's BIOs read and wrote its socket directly (no buffer of their own:
     * without read-ahead OpenSSL asks them for exactly the bytes it needs, and keeps a record
     * begun but not complete in its own buffer). Replacing them (SSL_set_bio frees them) lets
     * the session carry on from the next byte of the stream. */
    SSL_set_bio(ssl, b, b);
    /* Refused as on the client side: a server asking to renegotiate gets an alert. Record
     * buffers are kept (no SSL_MODE_RELEASE_BUFFERS): server connections are few and busy, and
     * releasing them costs a free and a malloc per record. */
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    ERR_clear_error(); /* nothing the previous owner left may read as this session's failure */
    return t;
}

gw_tls_bufs *gw_tls_bufs_of(gw_tls *t)
{
    return &t->bufs;
}

void gw_tls_free(gw_tls *t)
{
    if (!t)
        return;
    if (t->own_bio) {
        /* The previous owner still holds the session and will shut it down and free it: mark it
         * shut down both ways, so its SSL_shutdown returns at once and its SSL_write fails, and
         * take the BIO away (freed here with its methods), so nothing it does reaches this
         * session's memory or the socket. */
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_set_bio(t->ssl, NULL, NULL);
        SSL_free(t->ssl);
        BIO_meth_free(t->own_bio);
        free(t);
        return;
    }
    SSL_free(t->ssl);
    gw_tls_conf_release(t->conf);
    free(t);
}

/* 1 when list (client_tls_ciphers' syntax) holds cur, or holds any cipher when cur is NULL;
 * 0 when not; -1 when the list names none. */
static int list_has(const char *list, const SSL_CIPHER *cur)
{
    const char *ciphers = cipher_list(list);
    if (!ciphers)
        return 1;
    SSL_CTX *x = SSL_CTX_new(TLS_client_method());
    int rc = -1;
    if (x && SSL_CTX_set_cipher_list(x, ciphers)) {
        STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(x);
        rc = cur ? 0 : 1;
        for (int i = 0; cur && i < sk_SSL_CIPHER_num(sk); i++)
            if (SSL_CIPHER_get_id(sk_SSL_CIPHER_value(sk, i)) == SSL_CIPHER_get_id(cur))
                rc = 1;
    }
    SSL_CTX_free(x);
    ERR_clear_error();
    return rc;
}

int gw_tls_cipher_list_ok(const char *list)
{
    return list_has(list, NULL);
}

int gw_tls_cipher_allowed(const gw_tls *t, const char *list)
{
    const SSL_CIPHER *cur = SSL_get_current_cipher(t->ssl);
    if (!cur || SSL_version(t->ssl) >= TLS1_3_VERSION)
        return 1;
    return list_has(list, cur);
}

const char *gw_tls_cipher(const gw_tls *t)
{
    return SSL_get_cipher_name(t->ssl);
}

static void bind_io(gw_tls *t, const uint8_t *data, size_t n, gw_buf *wire, gw_bufpool *pool)
{
    t->in = data;
    t->in_len = n;
    t->wire = wire;
    t->pool = pool;
}

/* Records why ret from an SSL call failed; returns the errno-style error. */
static int failed(gw_tls *t, int ret)
{
    int e = SSL_get_error(t->ssl, ret);
    t->err = ERR_peek_last_error();
    t->reason = NULL;
    /* An adopted session's handshake was its previous owner's, which may have accepted an
     * unverified certificate (sslmode require): its verify result explains nothing here. */
    if (!t->own_bio && !SSL_is_init_finished(t->ssl)) {
        long v = SSL_get_verify_result(t->ssl);
        if (v != X509_V_OK)
            t->reason = X509_verify_cert_error_string(v);
    }
    if (!t->err && !t->reason)
        t->reason = e == SSL_ERROR_SYSCALL ? "out of memory or truncated stream" : "TLS error";
    ERR_clear_error();
    return e == SSL_ERROR_SYSCALL && !t->err ? -ENOMEM : -EPROTO;
}

int gw_tls_unseal(gw_tls *t, const uint8_t *data, size_t n, gw_buf *plain, gw_buf *wire,
                  gw_bufpool *pool)
{
    bind_io(t, data, n, wire, pool);
    int rc = 0;
    for (;;) {
        if (!SSL_is_init_finished(t->ssl)) {
            int r = SSL_do_handshake(t->ssl);
            if (r == 1)
                continue;
            if (SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_READ)
                break;
            rc = failed(t, r);
            break;
        }
        if (gw_buf_reserve(plain, pool, 4096) != 0) {
            rc = -ENOMEM;
            break;
        }
        size_t room = plain->cap - plain->len;
        int r = SSL_read(t->ssl, plain->data + plain->len, room > INT_MAX ? INT_MAX : (int)room);
        if (r > 0) {
            plain->len += (size_t)r;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            rc = GW_TLS_EOF;
            break;
        }
        rc = failed(t, r);
        break;
    }
    bind_io(t, NULL, 0, NULL, NULL);
    return rc;
}

int gw_tls_seal(gw_tls *t, const uint8_t *data, size_t n, gw_buf *wire, gw_bufpool *pool)
{
    bind_io(t, NULL, 0, wire, pool);
    int rc = 0;
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int r = SSL_write(t->ssl, data, chunk);
        if (r <= 0) {
            rc = failed(t, r);
            break;
        }
        data += r;
        n -= (size_t)r;
    }
    bind_io(t, NULL, 0, NULL, NULL);
    return rc;
}

void gw_tls_close_notify(gw_tls *t, gw_buf *wire, gw_bufpool *pool)
{
    if (!SSL_is_init_finished(t->ssl))
        return;
    bind_io(t, NULL, 0, wire, pool);
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
    bind_io(t, NULL, 0, NULL, NULL);
}

bool gw_tls_ready(const gw_tls *t)
{
    return SSL_is_init_finished(t->ssl);
}

const char *gw_tls_error(const gw_tls *t)
{
    if (t->reason)
        return t->reason;
    const char *r = t->err ? ERR_reason_error_string(t->err) : NULL;
    return r ? r : "TLS error";
}

bool gw_tls_alpn_ok(const gw_tls *t)
{
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    return len == 10 && memcmp(p, "postgresql", 10) == 0;
}

int gw_tls_peer_cn(const gw_tls *t, char *out, size_t cap)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    if (!cert || SSL_get_verify_result(t->ssl) != X509_V_OK)
        return 0;
    X509_NAME *name = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0)
        return -1;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    const unsigned char *d = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    if (len <= 0 || (size_t)len >= cap || memchr(d, 0, (size_t)len))
        return -1;
    memcpy(out, d, (size_t)len);
    out[len] = 0;
    return 1;
}

size_t gw_tls_end_point(const gw_tls *t, const uint8_t **data)
{
    if (!SSL_is_init_finished(t->ssl)) {
        *data = NULL;
        return 0;
    }
    return gw_tls_conf_end_point(t->conf, data);
}

const char *gw_tls_version(const gw_tls *t)
{
    return SSL_get_version(t->ssl);
}

/* ---- Client side ---- */

int gw_tls_client_conf_new(const gw_tls_client_settings *s, gw_tls_conf **out, char *err,
                           size_t errlen)
{
    *out = NULL;
    ERR_clear_error();
    int min, max;
    if (gw_tls_parse_protocols(s->protocols, &min, &max) != 0) {
        snprintf(err, errlen, "server_tls_protocols: unknown value '%s'", s->protocols);
        return -1;
    }
    gw_tls_conf *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (conf_init(c, TLS_client_method(), err, errlen) != 0)
        goto bad;
    SSL_CTX *x = c->ctx;
    /* As the server side: no renegotiation, no compression; no session resumption either (libpq
     * does none, and a server connection lives long). Record buffers are kept, as for adopted
     * sessions (gw_tls_adopt): server connections are few and busy. */
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    const char *ciphers = cipher_list(s->ciphers);
    if (!SSL_CTX_set_min_proto_version(x, min) || !SSL_CTX_set_max_proto_version(x, max) ||
        (ciphers && !SSL_CTX_set_cipher_list(x, ciphers))) {
        fail(err, errlen, "server_tls_protocols or server_tls_ciphers: not usable", NULL);
        goto bad;
    }
    if (s->cert_file && *s->cert_file && s->key_file && *s->key_file &&
        load_cert_key(x, s->cert_file, s->key_file, err, errlen) != 0)
        goto bad;
    bool ca = s->ca_file && *s->ca_file;
    if (ca && SSL_CTX_load_verify_locations(x, s->ca_file, NULL) != 1) {
        fail(err, errlen, "cannot load CA file", s->ca_file);
        goto bad;
    }
    if (!ca && s->default_ca && SSL_CTX_set_default_verify_paths(x) != 1) {
        fail(err, errlen, "cannot load the system's CA certificates", NULL);
        goto bad;
    }
    if (s->verify && !ca && !s->default_ca) {
        snprintf(err, errlen, "verifying the server's certificate needs a CA file");
        goto bad;
    }
    SSL_CTX_set_verify(x, s->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    *out = c;
    return 0;
bad:
    gw_tls_conf_release(c);
    ERR_clear_error();
    return -1;
}

gw_tls *gw_tls_client_new(gw_tls_conf *conf, const char *host, bool verify_host)
{
    gw_tls *t = session_new(conf);
    if (!t)
        return NULL;
    SSL_set_connect_state(t->ssl);
    /* An address literal gets no SNI (RFC 6066) and is checked against the IP SANs. */
    bool named = host && *host;
    ASN1_OCTET_STRING *ip = named ? a2i_IPADDRESS(host) : NULL;
    bool ok = true;
    if (named && !ip)
        ok = SSL_set_tlsext_host_name(t->ssl, host) == 1;
    if (ok && verify_host && named) {
        X509_VERIFY_PARAM *p = SSL_get0_param(t->ssl);
        X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(p, host) == 1
                : X509_VERIFY_PARAM_set1_host(p, host, 0) == 1;
    }
    ASN1_OCTET_STRING_free(ip);
    if (!ok) {
        gw_tls_free(t);
        ERR_clear_error();
        return NULL;
    }
    return t;
}
