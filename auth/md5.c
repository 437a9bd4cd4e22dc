/*
 * md5: PostgreSQL's md5 password hash and its salted challenge (AUTH_REQ_MD5).
 */
#include "auth/auth_int.h"

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

/* out = hex(md5(a || b)): 32 digits and a NUL. */
static void md5_hex(const void *a, size_t alen, const void *b, size_t blen, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t d[16] = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* A failure leaves d zeroed: a hash that matches no client's response. */
    if (ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) && EVP_DigestUpdate(ctx, a, alen) &&
        EVP_DigestUpdate(ctx, b, blen))
        EVP_DigestFinal_ex(ctx, d, NULL);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[32] = '\0';
}

void auth_md5_hash(const char *password, const char *user, char out[AUTH_MD5_LEN + 1])
{
    memcpy(out, "md5", 3);
    md5_hex(password, strlen(password), user, strlen(user), out + 3);
}

void auth_md5_response(const char *md5_hash, const uint8_t salt[4], char out[AUTH_MD5_LEN + 1])
{
    memcpy(out, "md5", 3);
    md5_hex(md5_hash + 3, 32, salt, 4, out + 3);
}

int auth_md5_check(const auth_secret *s, const char *user, const uint8_t salt[4],
                   const char *response)
{
    char hash[AUTH_MD5_LEN + 1], expect[AUTH_MD5_LEN + 1];
    switch (s->kind) {
    case AUTH_SECRET_PLAIN:
        auth_md5_hash(s->text, user, hash);
        break;
    case AUTH_SECRET_MD5:
        memcpy(hash, s->text, sizeof hash);
        break;
    default:
        return AUTH_FAIL;
    }
    auth_md5_response(hash, salt, expect);
    const bool ok = strnlen(response, AUTH_MD5_LEN + 1) == AUTH_MD5_LEN &&
                    CRYPTO_memcmp(expect, response, AUTH_MD5_LEN) == 0;
    OPENSSL_cleanse(hash, sizeof hash);
    return ok ? 0 : AUTH_FAIL;
}
