/*
 * secret: classifying a stored secret (plaintext, md5 hash, SCRAM verifier) as PostgreSQL does,
 * and checking a cleartext password against any of them.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#define SCRAM_PREFIX "SCRAM-SHA-256$"

/* PostgreSQL's test: "md5" and exactly 32 lower-case hex digits; anything else is plaintext. */
static bool is_md5(const char *t)
{
    return strlen(t) == AUTH_MD5_LEN && strncmp(t, "md5", 3) == 0 &&
           strspn(t + 3, "0123456789abcdef") == AUTH_MD5_LEN - 3;
}

/* Decodes the base64 field [p, end) into out, which it must fill exactly when want > 0. */
static int field(const char *p, const char *end, uint8_t *out, size_t cap, size_t want)
{
    const int n = auth__b64_decode(p, (size_t)(end - p), out, cap);
    if (n <= 0 || (want && (size_t)n != want))
        return -EINVAL;
    return n;
}

/* "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" */
static int parse_verifier(const char *t, auth_scram_verifier *v, const char **why)
{
    const char *p = t + strlen(SCRAM_PREFIX);
    const char *colon1 = strchr(p, ':');
    const char *dollar = colon1 ? strchr(colon1, '$') : NULL;
    const char *colon2 = dollar ? strchr(dollar, ':') : NULL;
    if (!colon2 || strchr(colon2 + 1, ':') || strchr(colon2 + 1, '$')) {
        *why = "a SCRAM verifier is SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
        return -EINVAL;
    }
    long it = 0;
    for (const char *q = p; q < colon1; q++) {
        if (*q < '0' || *q > '9' || it > INT_MAX / 10) {
            it = 0;
            break;
        }
        it = it * 10 + (*q - '0');
    }
    if (it < 1 || it > INT_MAX) {
        *why = "the SCRAM verifier's iteration count is not a positive integer";
        return -EINVAL;
    }
    memset(v, 0, sizeof *v);
    v->iterations = (int)it;
    const int salt = field(colon1 + 1, dollar, v->salt, sizeof v->salt, 0);
    if (salt < 0) {
        *why = "the SCRAM verifier's salt is not base64 of 1 to 64 bytes";
        return -EINVAL;
    }
    v->salt_len = (size_t)salt;
    if (field(dollar + 1, colon2, v->stored_key, AUTH_SHA256_LEN, AUTH_SHA256_LEN) < 0 ||
        field(colon2 + 1, colon2 + strlen(colon2), v->server_key, AUTH_SHA256_LEN,
              AUTH_SHA256_LEN) < 0) {
        *why = "the SCRAM verifier's keys are not base64 of 32 bytes each";
        return -EINVAL;
    }
    return 0;
}

int auth_secret_parse(const char *text, auth_secret *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (strncmp(text, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0) {
        /* PostgreSQL would take a broken verifier for a plaintext password; a users file
         * deserves a diagnostic instead. */
        const int rc = parse_verifier(text, &out->scram, why);
        if (rc < 0)
            return rc;
        out->kind = AUTH_SECRET_SCRAM;
    } else {
        out->kind = is_md5(text) ? AUTH_SECRET_MD5 : AUTH_SECRET_PLAIN;
    }
    out->text = strdup(text);
    if (!out->text) {
        memset(out, 0, sizeof *out);
        return -ENOMEM;
    }
    return 0;
}

void auth_secret_clear(auth_secret *s)
{
    if (s->text) {
        OPENSSL_cleanse(s->text, strlen(s->text));
        free(s->text);
    }
    OPENSSL_cleanse(s, sizeof *s);
}

int auth_plain_check(const auth_secret *s, const char *user, const char *password)
{
    bool ok = false;
    switch (s->kind) {
    case AUTH_SECRET_PLAIN: {
        /* Digests of both sides, so that the comparison's time says nothing about the length. */
        uint8_t a[AUTH_SHA256_LEN], b[AUTH_SHA256_LEN];
        ok = auth__hash(false, s->text, strlen(s->text), a) == 0 &&
             auth__hash(false, password, strlen(password), b) == 0 &&
             CRYPTO_memcmp(a, b, sizeof a) == 0;
        break;
    }
    case AUTH_SECRET_MD5: {
        char hash[AUTH_MD5_LEN + 1];
        auth_md5_hash(password, user, hash);
        ok = CRYPTO_memcmp(hash, s->text, AUTH_MD5_LEN) == 0;
        OPENSSL_cleanse(hash, sizeof hash);
        break;
    }
    case AUTH_SECRET_SCRAM: {
        auth_scram_verifier v;
        ok = auth_scram_derive(false, user, password, s->scram.salt, s->scram.salt_len,
                               s->scram.iterations, &v) == 0 &&
             CRYPTO_memcmp(v.stored_key, s->scram.stored_key, AUTH_SHA256_LEN) == 0 &&
             CRYPTO_memcmp(v.server_key, s->scram.server_key, AUTH_SHA256_LEN) == 0;
        OPENSSL_cleanse(&v, sizeof v);
        break;
    }
    }
    return ok ? 0 : AUTH_FAIL;
}
