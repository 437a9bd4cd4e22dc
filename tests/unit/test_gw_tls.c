/*
 * Unit tests of gw_tls without sockets: a server session fed by hand against an OpenSSL client
 * on memory BIOs, with a key, certificates and a CA made in memory and written to temporary
 * files.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "gateway/tls.h"

static gw_bufpool pool;
static char dir[] = "/tmp/sluice-tls-unit-XXXXXX";
static EVP_PKEY *ca_key;
static X509 *ca_cert;

static char *path_of(const char *name)
{
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

/* A certificate for cn signed by the CA (or self-signed when ca is NULL: the CA itself). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, bool ca)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)random());
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca ? n : X509_get_subject_name(ca_cert));
    if (ca) {
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "CA:TRUE");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    cr_assert(X509_sign(x, ca ? key : ca_key, EVP_sha256()) > 0);
    return x;
}

static void write_pem(const char *name, EVP_PKEY *key, X509 *cert)
{
    FILE *f = fopen(path_of(name), "w");
    cr_assert_not_null(f);
    if (key)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (cert)
        PEM_write_X509(f, cert);
    fclose(f);
}

static void setup(void)
{
    gw_bufpool_init(&pool, 16);
    cr_assert_not_null(mkdtemp(dir));
    ca_key = EVP_EC_gen("P-256");
    ca_cert = make_cert(ca_key, "test CA", true);
    write_pem("ca.crt", NULL, ca_cert);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *c = make_cert(k, "localhost", false);
    write_pem("server.key", k, NULL);
    write_pem("server.crt", NULL, c);
    X509_free(c);
    EVP_PKEY *k2 = EVP_EC_gen("P-256");
    write_pem("other.key", k2, NULL);
    EVP_PKEY_free(k2);
    c = make_cert(k, "alice", false); /* a client certificate (the same key will do) */
    write_pem("alice.pem", k, c);
    X509_free(c);
    EVP_PKEY_free(k);
}

static void teardown(void)
{
    const char *names[] = {"ca.crt", "server.key", "server.crt", "other.key", "alice.pem"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(path_of(names[i]));
    rmdir(dir);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    gw_bufpool_destroy(&pool);
}

TestSuite(gw_tls, .init = setup, .fini = teardown);

static gw_tls_conf *conf_with(const char *key, bool verify, char *err)
{
    gw_tls_settings s = {.key_file = path_of(key),
                         .cert_file = path_of("server.crt"),
                         .ca_file = path_of("ca.crt"),
                         .protocols = "secure",
                         .ciphers = "default",
                         .ecdhcurve = "auto",
                         .dheparams = "auto",
                         .verify_peer = verify,
                         .verify_optional = true,
                         .alpn_postgresql = true};
    gw_tls_conf *c = NULL;
    int rc = gw_tls_conf_new(&s, &c, err, 256);
    cr_assert_eq(rc, c ? 0 : -1);
    return c;
}

/* The client end: an OpenSSL client on two memory BIOs. */
typedef struct peer {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out; /* in: what the server sent; out: what the client sends */
} peer;

static void peer_init(peer *p, const char *alpn, int max_version, const char *cert)
{
    p->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(p->ctx, SSL_VERIFY_NONE, NULL);
    if (max_version)
        SSL_CTX_set_max_proto_version(p->ctx, max_version);
    if (cert) {
        cr_assert_eq(SSL_CTX_use_certificate_file(p->ctx, path_of(cert), SSL_FILETYPE_PEM), 1);
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(p->ctx, path_of(cert), SSL_FILETYPE_PEM), 1);
    }
    p->ssl = SSL_new(p->ctx);
    if (alpn)
        SSL_set_alpn_protos(p->ssl, (const unsigned char *)alpn, (unsigned)strlen(alpn));
    p->in = BIO_new(BIO_s_mem());
    p->out = BIO_new(BIO_s_mem());
    SSL_set_bio(p->ssl, p->in, p->out);
    SSL_set_connect_state(p->ssl);
}

static void peer_free(peer *p)
{
    SSL_free(p->ssl);
    SSL_CTX_free(p->ctx);
}

/* Moves the client's output into the server, chunk bytes per call (0: all at once); then the
 * server's output to the client. Returns the last gw_tls_unseal result. */
static int pump(peer *p, gw_tls *t, gw_buf *plain, size_t chunk)
{
    uint8_t buf[65536];
    int rc = 0;
    int n;
    while ((n = BIO_read(p->out, buf, sizeof buf)) > 0) {
        for (size_t off = 0; off < (size_t)n && rc == 0;) {
            size_t len = chunk && (size_t)n - off > chunk ? chunk : (size_t)n - off;
            gw_buf wire = {0};
            rc = gw_tls_unseal(t, buf + off, len, plain, &wire, &pool);
            if (wire.len)
                BIO_write(p->in, wire.data, (int)wire.len);
            gw_buf_release(&wire, &pool);
            off += len;
        }
    }
    return rc;
}

static int handshake(peer *p, gw_tls *t, gw_buf *plain, size_t chunk)
{
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++) {
        int r = SSL_do_handshake(p->ssl);
        rc = pump(p, t, plain, chunk);
        if (r == 1 && gw_tls_ready(t))
            break;
    }
    return rc;
}

Test(gw_tls, handshake_and_data_both_ways_even_byte_by_byte)
{
    char err[256];
    gw_tls_conf *c = conf_with("server.key", false, err);
    cr_assert_not_null(c, "%s", err);
    for (size_t chunk = 0; chunk <= 1; chunk++) {
        peer p;
        peer_init(&p, "\x0apostgresql", 0, NULL);
        gw_tls *t = gw_tls_new(c, false);
        gw_buf plain = {0};
        cr_assert_eq(handshake(&p, t, &plain, chunk), 0, "%s", gw_tls_error(t));
        cr_assert(gw_tls_ready(t));
        cr_assert(gw_tls_alpn_ok(t));
        cr_assert_str_eq(gw_tls_version(t), "TLSv1.3");
        /* Client to server: 100 kB across several records. */
        static uint8_t big[100000];
        memset(big, 'a', sizeof big);
        cr_assert_eq(SSL_write(p.ssl, big, sizeof big), (int)sizeof big);
        cr_assert_eq(pump(&p, t, &plain, chunk ? 7 : 0), 0);
        cr_assert_eq(plain.len, sizeof big);
        cr_assert_eq(memcmp(plain.data, big, sizeof big), 0);
        gw_buf_release(&plain, &pool);
        /* Server to client. */
        gw_buf wire = {0};
        cr_assert_eq(gw_tls_seal(t, (const uint8_t *)"hello", 5, &wire, &pool), 0);
        BIO_write(p.in, wire.data, (int)wire.len);
        gw_buf_release(&wire, &pool);
        char got[8] = {0};
        cr_assert_eq(SSL_read(p.ssl, got, sizeof got), 5);
        cr_assert_str_eq(got, "hello");
        cr_assert_eq(gw_tls_peer_cn(t, got, sizeof got), 0, "no client certificate");
        /* close_notify ends the stream. */
        SSL_shutdown(p.ssl);
        cr_assert_eq(pump(&p, t, &plain, 0), GW_TLS_EOF);
        gw_buf_release(&plain, &pool);
        gw_tls_free(t);
        peer_free(&p);
    }
    gw_tls_conf_release(c);
}

/* A context on a self-signed certificate of key signed with md (NULL: Ed25519 takes none). */
static gw_tls_conf *self_signed(EVP_PKEY *key, const EVP_MD *md, X509 **cert)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    cr_assert(X509_sign(x, key, md) > 0);
    write_pem("self.pem", key, x);
    gw_tls_settings s = {.key_file = path_of("self.pem"), .cert_file = path_of("self.pem")};
    gw_tls_conf *c = NULL;
    char err[256];
    cr_assert_eq(gw_tls_conf_new(&s, &c, err, sizeof err), 0, "%s", err);
    unlink(path_of("self.pem"));
    *cert = x;
    return c;
}

/* tls-server-end-point is what the client computes from the certificate it received: its hash
 * with the signature's digest, SHA-256 for SHA-1; none for Ed25519. */
Test(gw_tls, end_point_is_the_certificate_hash_rfc5929)
{
    static const struct {
        const char *alg;
        int md_nid, want_nid; /* want_nid NID_undef: no binding data */
    } cases[] = {{"P-256", NID_sha256, NID_sha256},
                 {"P-384", NID_sha384, NID_sha384},
                 {"P-256", NID_sha512, NID_sha512},
                 {"P-256", NID_sha1, NID_sha256},
                 {"ED25519", NID_undef, NID_undef}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        EVP_PKEY *k = strcmp(cases[i].alg, "ED25519") == 0
                          ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
                          : EVP_EC_gen(cases[i].alg);
        const EVP_MD *md =
            cases[i].md_nid == NID_undef ? NULL : EVP_get_digestbynid(cases[i].md_nid);
        X509 *cert;
        gw_tls_conf *c = self_signed(k, md, &cert);
        const uint8_t *data;
        size_t len = gw_tls_conf_end_point(c, &data);
        if (cases[i].want_nid == NID_undef) {
            cr_assert_eq(len, 0, "case %zu", i);
        } else {
            uint8_t want[EVP_MAX_MD_SIZE];
            unsigned wlen = 0;
            cr_assert_eq(X509_digest(cert, EVP_get_digestbynid(cases[i].want_nid), want, &wlen), 1);
            cr_assert_eq(len, wlen, "case %zu", i);
            cr_assert_eq(memcmp(data, want, len), 0, "case %zu", i);
        }
        /* A session says the same, once its handshake is done; the client got that certificate. */
        gw_tls *t = gw_tls_new(c, false);
        cr_assert_eq(gw_tls_end_point(t, &data), 0, "not before the handshake");
        if (cases[i].want_nid != NID_undef) {
            peer p;
            peer_init(&p, NULL, 0, NULL);
            gw_buf plain = {0};
            cr_assert_eq(handshake(&p, t, &plain, 0), 0, "%s", gw_tls_error(t));
            cr_assert_eq(X509_cmp(SSL_get0_peer_certificate(p.ssl), cert), 0);
            cr_assert_eq(gw_tls_end_point(t, &data), len);
            gw_buf_release(&plain, &pool);
            peer_free(&p);
        }
        gw_tls_free(t);
        gw_tls_conf_release(c);
        X509_free(cert);
        EVP_PKEY_free(k);
    }
}

Test(gw_tls, garbage_and_old_versions_fail_cleanly)
{
    char err[256];
    gw_tls_conf *c = conf_with("server.key", false, err);
    gw_tls *t = gw_tls_new(c, false);
    gw_buf plain = {0}, wire = {0};
    static const uint8_t junk[] = "\x16\x03\x01\x00\x05garbage and more garbage";
    cr_assert_lt(gw_tls_unseal(t, junk, sizeof junk, &plain, &wire, &pool), 0);
    cr_assert_gt(strlen(gw_tls_error(t)), 0);
    cr_assert_eq(plain.len, 0);
    gw_buf_release(&plain, &pool);
    gw_buf_release(&wire, &pool);
    gw_tls_free(t);

    peer p;
    peer_init(&p, NULL, TLS1_1_VERSION, NULL);
    SSL_CTX_set_security_level(p.ctx, 0);
    SSL_set_security_level(p.ssl, 0);
    SSL_set_min_proto_version(p.ssl, TLS1_VERSION);
    t = gw_tls_new(c, false);
    cr_assert_lt(handshake(&p, t, &plain, 0), 0, "TLS 1.1 is below the default minimum");
    gw_tls_free(t);
    peer_free(&p);
    gw_tls_conf_release(c);
}

Test(gw_tls, renegotiation_is_refused)
{
    char err[256];
    gw_tls_conf *c = conf_with("server.key", false, err);
    peer p;
    peer_init(&p, NULL, TLS1_2_VERSION, NULL);
    gw_tls *t = gw_tls_new(c, false);
    gw_buf plain = {0};
    cr_assert_eq(handshake(&p, t, &plain, 0), 0);
    cr_assert_str_eq(gw_tls_version(t), "TLSv1.2");
    cr_assert_eq(SSL_renegotiate(p.ssl), 1);
    SSL_do_handshake(p.ssl);
    /* The server answers a no_renegotiation alert (or fails): never a second handshake. */
    int rc = pump(&p, t, &plain, 0);
    char buf[16];
    int r = SSL_read(p.ssl, buf, sizeof buf);
    cr_assert(rc < 0 || r <= 0, "the renegotiation did not complete");
    cr_assert_eq(plain.len, 0);
    gw_buf_release(&plain, &pool);
    gw_tls_free(t);
    peer_free(&p);
    gw_tls_conf_release(c);
}

Test(gw_tls, client_certificate_cn_and_verification)
{
    char err[256];
    gw_tls_conf *c = conf_with("server.key", true, err);
    cr_assert_not_null(c, "%s", err);
    peer p;
    peer_init(&p, NULL, 0, "alice.pem");
    gw_tls *t = gw_tls_new(c, false);
    gw_buf plain = {0};
    cr_assert_eq(handshake(&p, t, &plain, 0), 0, "%s", gw_tls_error(t));
    char cn[64];
    cr_assert_eq(gw_tls_peer_cn(t, cn, sizeof cn), 1);
    cr_assert_str_eq(cn, "alice");
    cr_assert_eq(gw_tls_peer_cn(t, cn, 3), -1, "a CN longer than the room is unusable");
    gw_tls_free(t);
    peer_free(&p);

    /* verify_peer: no certificate, no session. */
    peer_init(&p, NULL, 0, NULL);
    t = gw_tls_new(c, false);
    int rc = handshake(&p, t, &plain, 0);
    char buf[4];
    if (rc == 0) /* TLS 1.3: the server's verdict comes after the client's Finished */
        rc = gw_tls_ready(t) ? 0 : -1;
    cr_assert(rc < 0 || SSL_read(p.ssl, buf, sizeof buf) <= 0);
    cr_assert_eq(gw_tls_peer_cn(t, cn, sizeof cn), 0);
    gw_buf_release(&plain, &pool);
    gw_tls_free(t);
    peer_free(&p);
    gw_tls_conf_release(c);
}

Test(gw_tls, contexts_refuse_bad_files_with_a_reason)
{
    char err[256];
    cr_assert_null(conf_with("other.key", false, err), "a key that is not the certificate's");
    cr_assert(strstr(err, "mismatch") || strstr(err, "does not match"), "%s", err);
    cr_assert_null(conf_with("missing.key", false, err));
    cr_assert(strstr(err, "cannot load private key"), "%s", err);
    gw_tls_settings s = {.key_file = path_of("server.key"),
                         .cert_file = path_of("server.crt"),
                         .protocols = "tlsv1.4"};
    gw_tls_conf *c = (gw_tls_conf *)1;
    cr_assert_eq(gw_tls_conf_new(&s, &c, err, sizeof err), -1);
    cr_assert_null(c);
    cr_assert(strstr(err, "client_tls_protocols"), "%s", err);
    s.protocols = "secure";
    s.verify_peer = true;
    cr_assert_eq(gw_tls_conf_new(&s, &c, err, sizeof err), -1, "verifying needs a CA file");
}

Test(gw_tls_protocols, parse)
{
    int lo, hi;
    cr_assert_eq(gw_tls_parse_protocols("secure", &lo, &hi), 0);
    cr_assert(lo == TLS1_2_VERSION && hi == TLS1_3_VERSION);
    cr_assert_eq(gw_tls_parse_protocols("tlsv1.3", &lo, &hi), 0);
    cr_assert(lo == TLS1_3_VERSION && hi == TLS1_3_VERSION);
    cr_assert_eq(gw_tls_parse_protocols("tlsv1.1, TLSv1.2", &lo, &hi), 0);
    cr_assert(lo == TLS1_1_VERSION && hi == TLS1_2_VERSION);
    cr_assert_eq(gw_tls_parse_protocols("all", &lo, &hi), 0);
    cr_assert_eq(lo, TLS1_VERSION);
    cr_assert_eq(gw_tls_parse_protocols("sslv3", &lo, &hi), -1);
    cr_assert_eq(gw_tls_parse_protocols(",", &lo, &hi), -1);
}

Test(gw_tls, alpn_is_only_enforced_when_asked)
{
    /* A MongoDB line's context: a client offering some other protocol through ALPN is not
     * refused (the PostgreSQL rule does not apply there). */
    gw_tls_settings s = {.key_file = path_of("server.key"),
                         .cert_file = path_of("server.crt"),
                         .protocols = "secure",
                         .ciphers = "default"};
    gw_tls_conf *c = NULL;
    char err[256];
    cr_assert_eq(gw_tls_conf_new(&s, &c, err, sizeof err), 0, "%s", err);
    peer p;
    peer_init(&p, "\x02h2", 0, NULL);
    gw_tls *t = gw_tls_new(c, true);
    gw_buf plain = {0};
    cr_assert_eq(handshake(&p, t, &plain, 0), 0, "%s", gw_tls_error(t));
    cr_assert(gw_tls_ready(t));
    cr_assert_not(gw_tls_alpn_ok(t));
    gw_buf_release(&plain, &pool);
    gw_tls_free(t);
    peer_free(&p);
    gw_tls_conf_release(c);
}

/* ---- client side ---- */

/* Runs a handshake between two gw_tls sessions. Returns the client's last result, or the
 * server's when it failed first. */
static int duel(gw_tls *cl, gw_tls *sv)
{
    gw_buf to_sv = {0}, to_cl = {0}, plain = {0};
    int rc = gw_tls_unseal(cl, NULL, 0, &plain, &to_sv, &pool); /* the ClientHello */
    for (int i = 0; i < 10 && rc == 0 && !(gw_tls_ready(cl) && gw_tls_ready(sv)); i++) {
        rc = gw_tls_unseal(sv, to_sv.data, to_sv.len, &plain, &to_cl, &pool);
        gw_buf_release(&to_sv, &pool);
        if (rc == 0 || to_cl.len)
            rc = gw_tls_unseal(cl, to_cl.data, to_cl.len, &plain, &to_sv, &pool);
        gw_buf_release(&to_cl, &pool);
    }
    if (rc == 0 && to_sv.len) /* the client's last flight */
        rc = gw_tls_unseal(sv, to_sv.data, to_sv.len, &plain, &to_cl, &pool);
    gw_buf_release(&to_sv, &pool);
    gw_buf_release(&to_cl, &pool);
    gw_buf_release(&plain, &pool);
    return rc;
}

static gw_tls_conf *client_conf(const char *ca, const char *cert, bool verify)
{
    gw_tls_client_settings s = {.ca_file = ca ? path_of(ca) : NULL,
                                .cert_file = cert ? path_of(cert) : NULL,
                                .key_file = cert ? path_of(cert) : NULL,
                                .default_ca = true,
                                .verify = verify};
    gw_tls_conf *c = NULL;
    char err[256];
    cr_assert_eq(gw_tls_client_conf_new(&s, &c, err, sizeof err), 0, "%s", err);
    return c;
}

Test(gw_tls, client_verifies_the_server_and_its_name)
{
    char err[256];
    gw_tls_conf *sc = conf_with("server.key", true, err);
    cr_assert_not_null(sc, "%s", err);
    gw_tls_conf *cc = client_conf("ca.crt", "alice.pem", true);
    static const struct {
        const char *host;
        bool verify_host, ok;
    } cases[] = {{"localhost", true, true},
                 {"wrong.example", true, false},
                 {"127.0.0.1", true, false},
                 {"wrong.example", false, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_tls *cl = gw_tls_client_new(cc, cases[i].host, cases[i].verify_host);
        gw_tls *sv = gw_tls_new(sc, true);
        int rc = duel(cl, sv);
        if (cases[i].ok) {
            cr_assert_eq(rc, 0, "%s: %s", cases[i].host, gw_tls_error(cl));
            cr_assert(gw_tls_ready(cl) && gw_tls_ready(sv));
            char cn[16];
            cr_assert_eq(gw_tls_peer_cn(sv, cn, sizeof cn), 1, "the client's certificate");
            cr_assert_str_eq(cn, "alice");
            gw_buf wire = {0}, back = {0}, plain = {0};
            cr_assert_eq(gw_tls_seal(cl, (const uint8_t *)"ping", 4, &wire, &pool), 0);
            cr_assert_eq(gw_tls_unseal(sv, wire.data, wire.len, &plain, &back, &pool), 0);
            cr_assert(plain.len == 4 && memcmp(plain.data, "ping", 4) == 0);
            gw_buf_release(&wire, &pool);
            gw_buf_release(&back, &pool);
            gw_buf_release(&plain, &pool);
        } else {
            cr_assert_lt(rc, 0, "%s must be refused", cases[i].host);
            cr_assert(strstr(gw_tls_error(cl), "mismatch"), "%s", gw_tls_error(cl));
        }
        gw_tls_free(cl);
        gw_tls_free(sv);
    }
    gw_tls_conf_release(cc);
    /* A CA that did not sign the server's certificate (its own, alone, as the CA file). */
    cc = client_conf("server.crt", NULL, true);
    gw_tls *cl = gw_tls_client_new(cc, "localhost", true);
    gw_tls *sv = gw_tls_new(sc, true);
    cr_assert_lt(duel(cl, sv), 0);
    cr_assert(strstr(gw_tls_error(cl), "certificate"), "%s", gw_tls_error(cl));
    gw_tls_free(cl);
    gw_tls_free(sv);
    gw_tls_conf_release(cc);
    gw_tls_conf_release(sc);
}

/* gw_tls_adopt: the client end of a finished handshake (as libpq leaves it) taken over. */

/* Moves the bytes waiting in a memory BIO into b: what the old owner's socket still holds. */
static void drain_bio(BIO *bio, gw_buf *b)
{
    uint8_t buf[4096];
    int n;
    while ((n = BIO_read(bio, buf, sizeof buf)) > 0)
        cr_assert_eq(gw_buf_append(b, &pool, buf, (size_t)n), 0);
}

/* A server session and a client peer, handshake done; the client end is what gets adopted. */
static gw_tls *adopt_setup(peer *p, gw_tls_conf **c, int max_version)
{
    char err[256];
    *c = conf_with("server.key", false, err);
    cr_assert_not_null(*c, "%s", err);
    peer_init(p, NULL, max_version, NULL);
    gw_tls *server = gw_tls_new(*c, false);
    gw_buf plain = {0};
    cr_assert_eq(handshake(p, server, &plain, 0), 0, "%s", gw_tls_error(server));
    cr_assert_eq(SSL_do_handshake(p->ssl), 1);
    cr_assert_eq(plain.len, 0);
    gw_buf_release(&plain, &pool);
    return server;
}

Test(gw_tls, adopt_keeps_decrypted_and_unread_bytes_and_carries_on)
{
    peer p;
    gw_tls_conf *c;
    gw_tls *server = adopt_setup(&p, &c, 0);
    cr_assert_null(gw_tls_adopt(NULL));

    /* The server sends two records; the old owner read five bytes of the first, and the second
     * is still in its socket. */
    gw_buf wire = {0}, rest = {0}, plain = {0};
    cr_assert_eq(gw_tls_seal(server, (const uint8_t *)"first-record", 12, &wire, &pool), 0);
    BIO_write(p.in, wire.data, (int)wire.len);
    gw_buf_release(&wire, &pool);
    cr_assert_eq(gw_tls_seal(server, (const uint8_t *)"second-record", 13, &wire, &pool), 0);
    BIO_write(p.in, wire.data, (int)wire.len);
    gw_buf_release(&wire, &pool);
    char got[8] = {0};
    cr_assert_eq(SSL_read(p.ssl, got, 5), 5);
    cr_assert_str_eq(got, "first");
    cr_assert_gt(SSL_pending(p.ssl), 0);
    drain_bio(p.in, &rest);
    cr_assert_gt(rest.len, 0);

    gw_tls *t = gw_tls_adopt(p.ssl); /* p.in and p.out are freed from here on */
    cr_assert_not_null(t);
    cr_assert(gw_tls_ready(t));
    cr_assert_eq(gw_tls_unseal(t, NULL, 0, &plain, &wire, &pool), 0);
    cr_assert_eq(plain.len, 7);
    cr_assert_eq(memcmp(plain.data, "-record", 7), 0, "decrypted, unread plaintext is kept");
    cr_assert_eq(gw_tls_unseal(t, rest.data, rest.len, &plain, &wire, &pool), 0);
    cr_assert_eq(plain.len, 20);
    cr_assert_eq(memcmp(plain.data + 7, "second-record", 13), 0);
    cr_assert_eq(wire.len, 0);
    gw_buf_release(&plain, &pool);
    gw_buf_release(&rest, &pool);

    /* Onwards in both directions. */
    cr_assert_eq(gw_tls_seal(t, (const uint8_t *)"to the server", 13, &wire, &pool), 0);
    gw_buf wire2 = {0};
    cr_assert_eq(gw_tls_unseal(server, wire.data, wire.len, &plain, &wire2, &pool), 0);
    cr_assert_eq(plain.len, 13);
    cr_assert_eq(memcmp(plain.data, "to the server", 13), 0);
    gw_buf_release(&plain, &pool);
    gw_buf_release(&wire, &pool);
    gw_buf_release(&wire2, &pool);

    /* Freed first, as the relay does; then the old owner shuts down and frees its reference
     * (PQfinish): nothing is written, nothing is freed twice (ASan checks). */
    gw_tls_free(t);
    cr_assert_leq(SSL_write(p.ssl, "X\0\0\0\4", 5), 0, "the old owner cannot write any more");
    ERR_clear_error();
    (void)SSL_shutdown(p.ssl);
    ERR_clear_error();
    peer_free(&p);
    gw_tls_free(server);
    gw_tls_conf_release(c);
}

Test(gw_tls, adopt_completes_a_record_the_old_owner_began)
{
    peer p;
    gw_tls_conf *c;
    gw_tls *server = adopt_setup(&p, &c, TLS1_2_VERSION);
    gw_buf wire = {0}, plain = {0};
    cr_assert_eq(gw_tls_seal(server, (const uint8_t *)"split across owners", 19, &wire, &pool), 0);
    size_t half = wire.len / 2;
    BIO_write(p.in, wire.data, (int)half);
    char got[32];
    cr_assert_leq(SSL_read(p.ssl, got, sizeof got), 0);
    cr_assert_eq(SSL_get_error(p.ssl, -1), SSL_ERROR_WANT_READ);
    cr_assert_eq(BIO_pending(p.in), 0, "the first half is inside the session");

    gw_tls *t = gw_tls_adopt(p.ssl);
    cr_assert_not_null(t);
    cr_assert_str_eq(gw_tls_version(t), "TLSv1.2");
    gw_buf out = {0};
    cr_assert_eq(gw_tls_unseal(t, wire.data + half, wire.len - half, &plain, &out, &pool), 0);
    cr_assert_eq(plain.len, 19);
    cr_assert_eq(memcmp(plain.data, "split across owners", 19), 0);
    cr_assert_eq(gw_tls_cipher_allowed(t, "default"), 1);
    cr_assert_eq(gw_tls_cipher_allowed(t, "ECDHE-ECDSA-CHACHA20-POLY1305"),
                 strcmp(gw_tls_cipher(t), "ECDHE-ECDSA-CHACHA20-POLY1305") == 0);
    cr_assert_eq(gw_tls_cipher_allowed(t, "NO-SUCH-CIPHER"), -1);
    gw_buf_release(&plain, &pool);
    gw_buf_release(&wire, &pool);
    gw_buf_release(&out, &pool);

    /* Garbage where the next record should be: an error, with the record layer's reason. */
    static const uint8_t junk[] = "Z\0\0\0\5I junk outside any record";
    cr_assert_lt(gw_tls_unseal(t, junk, sizeof junk, &plain, &out, &pool), 0);
    cr_assert_gt(strlen(gw_tls_error(t)), 0);
    cr_assert_eq(plain.len, 0);
    gw_buf_release(&plain, &pool);
    gw_buf_release(&out, &pool);

    /* The old owner frees its reference first this time. */
    peer_free(&p);
    gw_tls_free(t);
    gw_tls_free(server);
    gw_tls_conf_release(c);
}

Test(gw_tls, adopt_refuses_what_it_cannot_carry_on)
{
    char err[256];
    gw_tls_conf *c = conf_with("server.key", false, err);
    peer p;
    peer_init(&p, NULL, 0, NULL);
    cr_assert_null(gw_tls_adopt(p.ssl), "a handshake not yet done");
    gw_tls *server = gw_tls_new(c, false);
    gw_buf plain = {0};
    cr_assert_eq(handshake(&p, server, &plain, 0), 0);
    cr_assert_eq(SSL_do_handshake(p.ssl), 1);
    gw_buf_release(&plain, &pool);
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    SSL *srv = SSL_new(sctx);
    SSL_set_accept_state(srv);
    cr_assert_null(gw_tls_adopt(srv), "not a client-side session");
    SSL_free(srv);
    SSL_CTX_free(sctx);
    peer_free(&p);
    gw_tls_free(server);
    gw_tls_conf_release(c);
}

Test(gw_tls_protocols, libpq_names)
{
    int lo, hi;
    cr_assert_eq(gw_tls_parse_protocols("secure", &lo, &hi), 0);
    cr_assert_str_eq(gw_tls_protocol_name(lo), "TLSv1.2");
    cr_assert_str_eq(gw_tls_protocol_name(hi), "TLSv1.3");
    cr_assert_eq(gw_tls_parse_protocols("tlsv1.0", &lo, &hi), 0);
    cr_assert_str_eq(gw_tls_protocol_name(lo), "TLSv1");
    cr_assert_null(gw_tls_protocol_name(0));
    cr_assert_eq(gw_tls_cipher_list_ok("default"), 1);
    cr_assert_eq(gw_tls_cipher_list_ok(""), 1);
    cr_assert_eq(gw_tls_cipher_list_ok("NO-SUCH-CIPHER"), -1);
}

/* gw_tls_client_*: Sluice as the client of a server session, both ends gw_tls. */

/* Runs a handshake between two gw_tls sessions; returns the client's last result (the
 * server's failure, if any, reaches the client as an alert). */
static int client_handshake(gw_tls *cl, gw_tls *srv)
{
    gw_buf to_srv = {0}, to_cl = {0}, plain = {0};
    int rc = gw_tls_unseal(cl, NULL, 0, &plain, &to_srv, &pool); /* the ClientHello */
    for (int i = 0; i < 10 && rc == 0 && !(gw_tls_ready(cl) && gw_tls_ready(srv)); i++) {
        gw_buf in = to_srv;
        to_srv = (gw_buf){0};
        int r = gw_tls_unseal(srv, in.data, in.len, &plain, &to_cl, &pool);
        gw_buf_release(&in, &pool);
        in = to_cl;
        to_cl = (gw_buf){0};
        rc = gw_tls_unseal(cl, in.data, in.len, &plain, &to_srv, &pool);
        gw_buf_release(&in, &pool);
        if (r != 0 && rc == 0)
            rc = r;
    }
    cr_assert_eq(plain.len, 0);
    gw_buf_release(&plain, &pool);
    gw_buf_release(&to_srv, &pool);
    gw_buf_release(&to_cl, &pool);
    return rc;
}

static int client_case(const char *ca, bool verify, const char *host, bool check_name,
                       const char *ciphers, int max_version)
{
    char err[256];
    gw_tls_conf *sc = conf_with("server.key", false, err);
    gw_tls_client_settings st = {.ca_file = ca ? path_of(ca) : NULL,
                                 .protocols = max_version ? "tlsv1.2" : "secure",
                                 .ciphers = ciphers,
                                 .verify = verify};
    gw_tls_conf *cc = NULL;
    cr_assert_eq(gw_tls_client_conf_new(&st, &cc, err, sizeof err), 0, "%s", err);
    gw_tls *cl = gw_tls_client_new(cc, host, check_name);
    gw_tls *srv = gw_tls_new(sc, false);
    cr_assert_not_null(cl);
    int rc = client_handshake(cl, srv);
    if (rc == 0) {
        cr_assert(gw_tls_ready(cl));
        gw_buf wire = {0}, back = {0}, plain = {0};
        cr_assert_eq(gw_tls_seal(cl, (const uint8_t *)"ping", 4, &wire, &pool), 0);
        cr_assert_eq(gw_tls_unseal(srv, wire.data, wire.len, &plain, &back, &pool), 0);
        cr_assert_eq(plain.len, 4);
        gw_buf_release(&plain, &pool);
        gw_buf_release(&wire, &pool);
        gw_buf_release(&back, &pool);
    }
    gw_tls_free(cl);
    gw_tls_free(srv);
    gw_tls_conf_release(cc);
    gw_tls_conf_release(sc);
    return rc;
}

Test(gw_tls, client_sessions_verify_the_ca_and_the_name)
{
    /* server.crt is for CN localhost (no SAN: OpenSSL falls back to the CN). */
    cr_assert_eq(client_case("ca.crt", true, "localhost", true, "default", 0), 0);
    cr_assert_eq(client_case(NULL, false, "127.0.0.1", false, "default", 0), 0, "require");
    cr_assert_lt(client_case("ca.crt", true, "wrong.example", true, "default", 0), 0);
    cr_assert_lt(client_case("ca.crt", true, "127.0.0.1", true, "default", 0), 0,
                 "an address the certificate does not name");
    cr_assert_eq(client_case("ca.crt", true, "wrong.example", false, "default", 0), 0,
                 "verify-ca: the name is not checked");
    /* A CA that did not sign the server: the server's own certificate as the only anchor is
     * no CA (it is not self-signed). */
    cr_assert_lt(client_case("server.crt", true, "localhost", true, "default", 0), 0);
    /* The cipher list is what is offered: TLS 1.2 with one cipher. */
    cr_assert_eq(client_case(NULL, false, "localhost", false, "ECDHE-ECDSA-AES128-GCM-SHA256",
                             TLS1_2_VERSION),
                 0);

    char err[256];
    gw_tls_conf *cc = NULL;
    gw_tls_client_settings bad = {.protocols = "secure", .verify = true};
    cr_assert_eq(gw_tls_client_conf_new(&bad, &cc, err, sizeof err), -1);
    cr_assert(strstr(err, "CA file"), "%s", err);
    gw_tls_client_settings bad2 = {.protocols = "sslv3"};
    cr_assert_eq(gw_tls_client_conf_new(&bad2, &cc, err, sizeof err), -1);
    cr_assert(strstr(err, "server_tls_protocols"), "%s", err);
    cr_assert_null(cc);
}
