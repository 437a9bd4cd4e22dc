/*
 * scram_client: the client end of SCRAM, as libpq runs it (fe-auth-scram.c), for Sluice logging
 * in to a server with a password or with keys recovered from its own client's proof.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MAX_ITERATIONS 10000000 /* a server asking for more is stalling us */

int auth_scram_client_init_password(auth_scram_client *c, const char *password)
{
    memset(c, 0, sizeof *c);
    c->cbind = 'n';
    char *prep;
    if (auth_saslprep(password, &prep) < 0)
        return -ENOMEM;
    const size_t n = strlen(prep);
    const int rc = n < sizeof c->password ? 0 : -EINVAL;
    if (rc == 0)
        memcpy(c->password, prep, n + 1);
    OPENSSL_cleanse(prep, n);
    free(prep);
    return rc;
}

int auth_scram_client_init_keys(auth_scram_client *c, const uint8_t client_key[AUTH_SHA256_LEN],
                                const uint8_t server_key[AUTH_SHA256_LEN])
{
    memset(c, 0, sizeof *c);
    c->cbind = 'n';
    c->have_key = true;
    memcpy(c->client_key, client_key, AUTH_SHA256_LEN);
    memcpy(c->server_key, server_key, AUTH_SHA256_LEN);
    return 0;
}

int auth_scram_client_bind(auth_scram_client *c, bool plus, const uint8_t *data, size_t len)
{
    if (c->step != 0 || len == 0 || len > AUTH_CBIND_MAX)
        return -EINVAL;
    c->cbind = plus ? 'p' : 'y';
    memcpy(c->cbind_data, data, len);
    c->cbind_len = len;
    return 0;
}

int auth__scram_client_first_nonce(auth_scram_client *c, const char *user, const char *nonce,
                                   char out[AUTH_SCRAM_MSG_MAX])
{
    const size_t n = strlen(nonce);
    if (c->step != 0 || n == 0 || n >= sizeof c->nonce || !auth__scram_printable(nonce, n))
        return -EINVAL;
    /* saslname: ',' and '=' escaped; 3 bytes per character at most, then ",r=", the nonce; the
     * whole message has the gs2 header in front. */
    const char *gs2 = auth__scram_gs2_header(c->cbind);
    const size_t gs2_len = strlen(gs2);
    char *b = c->client_first_bare, *const bend = b + sizeof c->client_first_bare - gs2_len;
    *b++ = 'n', *b++ = '=';
    for (const char *u = user ? user : ""; *u; u++) {
        if (bend - b < 3 + 3 + (ptrdiff_t)n + 1)
            return -EINVAL;
        if (*u == ',' || *u == '=') {
            memcpy(b, *u == ',' ? "=2C" : "=3D", 3);
            b += 3;
        } else {
            *b++ = *u;
        }
    }
    memcpy(b, ",r=", 3);
    memcpy(b + 3, nonce, n + 1);
    memcpy(c->nonce, nonce, n + 1);
    /* fits: the bare message is at most AUTH_SCRAM_MSG_MAX - gs2_len bytes with its NUL */
    memcpy(out, gs2, gs2_len);
    memcpy(out + gs2_len, c->client_first_bare, (size_t)(b + 3 + n - c->client_first_bare) + 1);
    c->step = 1;
    return 0;
}

int auth_scram_client_first(auth_scram_client *c, char out[AUTH_SCRAM_MSG_MAX])
{
    char nonce[AUTH__B64_LEN(18) + 1];
    const int rc = auth__scram_random_nonce(nonce);
    return rc < 0 ? rc : auth__scram_client_first_nonce(c, NULL, nonce, out);
}

static int parse_iterations(const char *val, size_t vlen)
{
    long it = 0;
    if (vlen == 0)
        return -1;
    for (size_t i = 0; i < vlen; i++) {
        if (val[i] < '0' || val[i] > '9' || it > MAX_ITERATIONS)
            return -1;
        it = it * 10 + (val[i] - '0');
    }
    return it >= 1 && it <= MAX_ITERATIONS ? (int)it : -1;
}

/* ClientKey and ServerKey of the password for this salt and iteration count. */
static int password_keys(auth_scram_client *c, const uint8_t *salt, size_t salt_len, int it,
                         uint8_t *client_key, uint8_t *server_key)
{
    const size_t klen = auth__key_len(c->sha1);
    uint8_t salted[AUTH_MAX_KEY];
    int rc = -ENOMEM;
    if (PKCS5_PBKDF2_HMAC(c->password, (int)strlen(c->password), salt, (int)salt_len, it,
                          c->sha1 ? EVP_sha1() : EVP_sha256(), (int)klen, salted) &&
        (rc = auth__hmac(c->sha1, salted, klen, "Client Key", 10, client_key)) == 0)
        rc = auth__hmac(c->sha1, salted, klen, "Server Key", 10, server_key);
    OPENSSL_cleanse(salted, sizeof salted);
    return rc;
}

int auth_scram_client_final(auth_scram_client *c, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why)
{
    if (c->step != 1) {
        *why = "SCRAM message out of order";
        return -EINVAL;
    }
    c->step = 2;
    if (!auth__scram_input_ok(msg, len, why))
        return -EINVAL;
    const char *p = msg, *end = msg + len, *nonce, *salt64, *iter;
    size_t nlen, slen, ilen;
    if (!auth__scram_attr(&p, end, 'r', &nonce, &nlen) ||
        !auth__scram_attr(&p, end, 's', &salt64, &slen) ||
        !auth__scram_attr(&p, end, 'i', &iter, &ilen) || p != end || iter + ilen != end) {
        *why = "malformed SCRAM message (server-first-message is not r=,s=,i=)";
        return -EINVAL;
    }
    const size_t ours = strlen(c->nonce);
    if (nlen <= ours || memcmp(nonce, c->nonce, ours) != 0 || !auth__scram_printable(nonce, nlen)) {
        *why = "invalid SCRAM response (nonce mismatch)";
        return -EINVAL;
    }
    uint8_t salt[AUTH_MAX_SALT];
    const int salt_len = auth__b64_decode(salt64, slen, salt, sizeof salt);
    if (salt_len <= 0) {
        *why = "malformed SCRAM message (invalid salt)";
        return -EINVAL;
    }
    const int it = parse_iterations(iter, ilen);
    if (it < 0) {
        *why = "malformed SCRAM message (invalid iteration count)";
        return -EINVAL;
    }
    const size_t klen = auth__key_len(c->sha1);
    char final[AUTH_SCRAM_MSG_MAX];
    char cbind[AUTH__CBIND_B64_MAX + 1];
    const int flen = auth__scram_cbind_input(c->cbind, c->cbind_data, c->cbind_len, cbind) < 0
                         ? -1
                         : snprintf(final, sizeof final, "c=%s,r=%.*s", cbind, (int)nlen, nonce);
    if (flen < 0 || (size_t)flen + 3 + AUTH__B64_LEN(klen) >= AUTH_SCRAM_MSG_MAX) {
        *why = "SCRAM nonce too long";
        return -EINVAL;
    }

    uint8_t client_key[AUTH_MAX_KEY], server_key[AUTH_MAX_KEY], stored[AUTH_MAX_KEY];
    uint8_t sig[AUTH_MAX_KEY] = {0};
    char am[AUTH_SCRAM_MSG_MAX * 2 + AUTH_SCRAM_INPUT_MAX + 2];
    const int amlen =
        snprintf(am, sizeof am, "%s,%.*s,%s", c->client_first_bare, (int)len, msg, final);
    int rc = 0;
    if (c->have_key) {
        memcpy(client_key, c->client_key, klen);
        memcpy(server_key, c->server_key, klen);
    } else {
        rc = password_keys(c, salt, (size_t)salt_len, it, client_key, server_key);
    }
    if (rc == 0)
        rc = auth__hash(c->sha1, client_key, klen, stored);
    if (rc == 0)
        rc = auth__hmac(c->sha1, stored, klen, am, (size_t)amlen, sig);
    if (rc == 0)
        rc = auth__hmac(c->sha1, server_key, klen, am, (size_t)amlen, c->expect_sig);
    if (rc == 0) {
        uint8_t proof[AUTH_MAX_KEY];
        for (size_t i = 0; i < klen; i++)
            proof[i] = client_key[i] ^ sig[i];
        char p64[AUTH__B64_LEN(AUTH_MAX_KEY) + 1];
        auth__b64_encode(proof, klen, p64, sizeof p64);
        /* fits: checked against flen above */
        memcpy(out, final, (size_t)flen);
        memcpy(out + flen, ",p=", 3);
        memcpy(out + flen + 3, p64, strlen(p64) + 1);
    } else {
        *why = "SCRAM computation failed";
    }
    OPENSSL_cleanse(client_key, sizeof client_key);
    OPENSSL_cleanse(server_key, sizeof server_key);
    return rc;
}

int auth_scram_client_verify(auth_scram_client *c, const char *msg, size_t len, const char **why)
{
    if (c->step != 2) {
        *why = "SCRAM message out of order";
        return -EINVAL;
    }
    c->step = 3;
    if (!auth__scram_input_ok(msg, len, why))
        return -EINVAL;
    if (len >= 2 && msg[0] == 'e' && msg[1] == '=') {
        *why = "error received from server in SCRAM exchange";
        return AUTH_FAIL;
    }
    const size_t klen = auth__key_len(c->sha1);
    const char *p = msg, *val;
    size_t vlen;
    uint8_t sig[AUTH_MAX_KEY];
    if (!auth__scram_attr(&p, msg + len, 'v', &val, &vlen) || p != msg + len ||
        val + vlen != msg + len || auth__b64_decode(val, vlen, sig, klen) != (int)klen) {
        *why = "malformed SCRAM message (invalid server signature)";
        return -EINVAL;
    }
    if (CRYPTO_memcmp(sig, c->expect_sig, klen) != 0) {
        *why = "incorrect server signature";
        return AUTH_FAIL;
    }
    return 0;
}
