/*
 * digest: the hashes, HMACs and PBKDF2 under SCRAM, all from libcrypto.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const EVP_MD *md_of(bool sha1)
{
    return sha1 ? EVP_sha1() : EVP_sha256();
}

int auth__hash(bool sha1, const void *in, size_t n, uint8_t *out)
{
    unsigned int len = 0;
    if (!EVP_Digest(in, n, out, &len, md_of(sha1), NULL) || len != auth__key_len(sha1))
        return -ENOMEM;
    return 0;
}

int auth__hmac(bool sha1, const uint8_t *key, size_t key_len, const void *in, size_t n,
               uint8_t *out)
{
    unsigned int len = 0;
    if (key_len > INT_MAX || !HMAC(md_of(sha1), key, (int)key_len, in, n, out, &len) ||
        len != auth__key_len(sha1))
        return -ENOMEM;
    return 0;
}

int auth__scram_keys(bool sha1, const char *password, const uint8_t *salt, size_t salt_len,
                     int iterations, auth_scram_verifier *v)
{
    if (salt_len == 0 || salt_len > AUTH_MAX_SALT || iterations < 1)
        return -EINVAL;
    const size_t klen = auth__key_len(sha1);
    const size_t plen = strlen(password);
    if (plen > INT_MAX)
        return -EINVAL;
    uint8_t salted[AUTH_MAX_KEY], client_key[AUTH_MAX_KEY];
    int rc = -ENOMEM;
    if (!PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)salt_len, iterations, md_of(sha1),
                           (int)klen, salted))
        goto out;
    memset(v, 0, sizeof *v);
    v->sha1 = sha1;
    v->iterations = iterations;
    memcpy(v->salt, salt, salt_len);
    v->salt_len = salt_len;
    if ((rc = auth__hmac(sha1, salted, klen, "Client Key", 10, client_key)) < 0 ||
        (rc = auth__hash(sha1, client_key, klen, v->stored_key)) < 0 ||
        (rc = auth__hmac(sha1, salted, klen, "Server Key", 10, v->server_key)) < 0)
        goto out;
out:
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return rc;
}
