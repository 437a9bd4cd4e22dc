/*
 * fuzz_gw_tls: whatever a client sends to a TLS session before and after its handshake, cut at
 * any point. The input is a series of chunks (one length byte, then that many bytes), each fed
 * to gw_tls_unseal as one read would; the session must fail cleanly or go on, never crash,
 * and yield plaintext only once its handshake completed.
 *
 * The context (a key and a self-signed certificate made at the first call) lives for the
 * process: building it per input would spend the time in key generation.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "gateway/tls.h"
#include "tests/fuzz/fuzz.h"

static gw_tls_conf *make_conf(void)
{
    char dir[] = "/tmp/sluice-fuzz-tls-XXXXXX";
    FUZZ_CHECK(mkdtemp(dir));
    char key_path[64], cert_path[64];
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    FUZZ_CHECK(X509_sign(x, k, EVP_sha256()) > 0);
    FILE *f = fopen(key_path, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    f = fopen(cert_path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    gw_tls_settings s = {.key_file = key_path,
                         .cert_file = cert_path,
                         .protocols = "secure",
                         .ciphers = "default",
                         .ecdhcurve = "auto",
                         .dheparams = "auto",
                         .alpn_postgresql = true};
    gw_tls_conf *c = NULL;
    char err[256];
    FUZZ_CHECK(gw_tls_conf_new(&s, &c, err, sizeof err) == 0);
    unlink(key_path);
    unlink(cert_path);
    rmdir(dir);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gw_tls_conf *conf;
    if (!conf)
        conf = make_conf();
    gw_bufpool pool;
    gw_bufpool_init(&pool, 4);
    gw_tls *t = gw_tls_new(conf, size > 0 && data[0] & 1);
    FUZZ_CHECK(t);
    gw_buf plain = {0}, wire = {0};
    size_t pos = 1;
    while (pos < size) {
        size_t n = data[pos++];
        if (n > size - pos)
            n = size - pos;
        bool was_ready = gw_tls_ready(t);
        size_t before = plain.len;
        int rc = gw_tls_unseal(t, data + pos, n, &plain, &wire, &pool);
        pos += n;
        FUZZ_CHECK(plain.len == before || was_ready || gw_tls_ready(t));
        gw_buf_release(&wire, &pool);
        if (rc != 0) {
            FUZZ_CHECK(rc == GW_TLS_EOF || gw_tls_error(t)[0]);
            break;
        }
    }
    if (gw_tls_ready(t)) {
        (void)gw_tls_seal(t, (const uint8_t *)"Z", 1, &wire, &pool);
        gw_tls_close_notify(t, &wire, &pool);
    }
    gw_buf_release(&plain, &pool);
    gw_buf_release(&wire, &pool);
    gw_tls_free(t);
    gw_bufpool_destroy(&pool);
    return 0;
}
