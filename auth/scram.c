/*
 * scram: what both ends of SCRAM share: verifiers from passwords, nonces, and the client-first
 * message's user name, which MongoDB clients log in with.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* MongoDB's SCRAM-SHA-256 salt length (the digest length - 4), which libmongoc insists on;
 * PostgreSQL takes a verifier's salt of any length (its own default is 16), so one verifier
 * line serves both front ends and every driver. */
#define SALT_LEN 28

bool auth__scram_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
            return false;
    return true;
}

int auth__scram_random_nonce(char out[AUTH__B64_LEN(18) + 1])
{
    uint8_t raw[18];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -ENOMEM;
    auth__b64_encode(raw, sizeof raw, out, AUTH__B64_LEN(18) + 1);
    return 0;
}

bool auth__scram_input_ok(const char *msg, size_t len, const char **why)
{
    if (len > AUTH_SCRAM_INPUT_MAX) {
        *why = "SCRAM message too long";
        return false;
    }
    if (memchr(msg, '\0', len)) {
        *why = "malformed SCRAM message (NUL byte)";
        return false;
    }
    return true;
}

bool auth__scram_attr(const char **p, const char *end, char name, const char **val, size_t *vlen)
{
    if (end - *p < 2 || (*p)[0] != name || (*p)[1] != '=')
        return false;
    *val = *p + 2;
    const char *comma = memchr(*val, ',', (size_t)(end - *val));
    *vlen = (size_t)((comma ? comma : end) - *val);
    *p = comma ? comma + 1 : end;
    return true;
}

bool auth__scram_is(const char *val, size_t vlen, const char *want)
{
    return vlen == strlen(want) && memcmp(val, want, vlen) == 0;
}

int auth_scram_derive(bool sha1, const char *user, const char *password, const uint8_t *salt,
                      size_t salt_len, int iterations, auth_scram_verifier *v)
{
    if (sha1) {
        /* MongoDB's SCRAM-SHA-1 password: hex(md5(user ":mongo:" password)), no SASLprep. The
         * md5 hex digest is PostgreSQL's hash after its "md5" prefix, with other inputs. */
        const size_t ulen = user ? strlen(user) : 0, plen = strlen(password);
        char *joined = malloc(ulen + 7 + plen + 1);
        if (!joined)
            return -ENOMEM;
        memcpy(joined, user ? user : "", ulen);
        memcpy(joined + ulen, ":mongo:", 7);
        memcpy(joined + ulen + 7, password, plen + 1);
        char hash[AUTH_MD5_LEN + 1];
        auth_md5_hash(joined, "", hash);
        OPENSSL_cleanse(joined, ulen + 7 + plen);
        free(joined);
        const int rc = auth__scram_keys(true, hash + 3, salt, salt_len, iterations, v);
        OPENSSL_cleanse(hash, sizeof hash);
        return rc;
    }
    char *prep;
    if (auth_saslprep(password, &prep) < 0)
        return -ENOMEM;
    const int rc = auth__scram_keys(false, prep, salt, salt_len, iterations, v);
    OPENSSL_cleanse(prep, strlen(prep));
    free(prep);
    return rc;
}

int auth_scram_make_verifier(const char *password, int iterations, char **out)
{
    *out = NULL;
    if (iterations == 0)
        iterations = 4096;
    uint8_t salt[SALT_LEN];
    if (iterations < 0 || RAND_bytes(salt, sizeof salt) != 1)
        return iterations < 0 ? -EINVAL : -ENOMEM;
    auth_scram_verifier v;
    int rc = auth_scram_derive(false, NULL, password, salt, sizeof salt, iterations, &v);
    if (rc < 0)
        return rc;
    char s64[AUTH__B64_LEN(SALT_LEN) + 1], k1[AUTH__B64_LEN(AUTH_SHA256_LEN) + 1], k2[sizeof k1];
    auth__b64_encode(salt, sizeof salt, s64, sizeof s64);
    auth__b64_encode(v.stored_key, AUTH_SHA256_LEN, k1, sizeof k1);
    auth__b64_encode(v.server_key, AUTH_SHA256_LEN, k2, sizeof k2);
    OPENSSL_cleanse(&v, sizeof v);
    const size_t cap = 64 + sizeof s64 + 2 * sizeof k1;
    if (!(*out = malloc(cap)))
        return -ENOMEM;
    snprintf(*out, cap, "SCRAM-SHA-256$%d:%s$%s:%s", iterations, s64, k1, k2);
    return 0;
}

/* saslname (RFC 5802): "=2C" stands for ',' and "=3D" for '='; any other '=' is an error. */
static int unescape_name(const char *p, size_t n, char *user, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '=') {
            if (n - i < 3)
                return -EINVAL;
            if (p[i + 1] == '2' && p[i + 2] == 'C')
                ch = ',';
            else if (p[i + 1] == '3' && p[i + 2] == 'D')
                ch = '=';
            else
                return -EINVAL;
            i += 2;
        }
        if (o + 1 >= cap)
            return -EINVAL;
        user[o++] = ch;
    }
    if (cap)
        user[o] = '\0';
    return 0;
}

const char *auth__scram_gs2_header(char flag)
{
    return flag == 'p' ? "p=" AUTH__CBIND_TYPE ",," : flag == 'y' ? "y,," : "n,,";
}

int auth__scram_cbind_input(char flag, const uint8_t *data, size_t len,
                            char out[AUTH__CBIND_B64_MAX + 1])
{
    const char *h = auth__scram_gs2_header(flag);
    const size_t hlen = strlen(h);
    uint8_t in[sizeof "p=" AUTH__CBIND_TYPE ",," - 1 + AUTH_CBIND_MAX];
    if (flag != 'p')
        len = 0;
    if (len > AUTH_CBIND_MAX)
        return -EINVAL;
    memcpy(in, h, hlen);
    if (len)
        memcpy(in + hlen, data, len);
    return auth__b64_encode(in, hlen + len, out, AUTH__CBIND_B64_MAX + 1) < 0 ? -EINVAL : 0;
}

int auth__scram_parse_first(const char *msg, size_t len, auth__scram_first *f, const char **why)
{
    memset(f, 0, sizeof *f);
    if (!auth__scram_input_ok(msg, len, why))
        return -EINVAL;
    const char *p = msg, *end = msg + len;
    /* gs2-cbind-flag: "n", "y" or "p=" cb-name (RFC 5802: letters, digits, '.' and '-'). */
    if (len >= 2 && p[0] == 'p' && p[1] == '=') {
        f->cbind = 'p';
        f->cbind_type = p += 2;
        while (p < end && *p != ',')
            p++;
        f->cbind_type_len = (size_t)(p - f->cbind_type);
        if (p == end || f->cbind_type_len == 0 ||
            strspn(f->cbind_type,
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") <
                f->cbind_type_len) {
            *why = "malformed SCRAM message (bad channel-binding type)";
            return -EINVAL;
        }
        p++;
    } else if (len >= 3 && (p[0] == 'n' || p[0] == 'y') && p[1] == ',') {
        f->cbind = p[0];
        p += 2;
    } else {
        *why = "malformed SCRAM message (unexpected channel-binding flag)";
        return -EINVAL;
    }
    if (p < end && *p == 'a') {
        *why = "client uses authorization identity, but it is not supported";
        return -EINVAL;
    }
    if (p == end || *p != ',') {
        *why = "malformed SCRAM message (unexpected attribute in gs2 header)";
        return -EINVAL;
    }
    f->bare = ++p;
    f->bare_len = (size_t)(end - p);
    if (end - p >= 1 && *p == 'm') {
        *why = "client requires an unsupported SCRAM extension";
        return -EINVAL;
    }
    if (end - p < 2 || p[0] != 'n' || p[1] != '=') {
        *why = "malformed SCRAM message (attribute \"n\" expected)";
        return -EINVAL;
    }
    p += 2;
    const char *comma = memchr(p, ',', (size_t)(end - p));
    if (!comma) {
        *why = "malformed SCRAM message (attribute \"r\" expected)";
        return -EINVAL;
    }
    f->user = p;
    f->user_len = (size_t)(comma - p);
    p = comma + 1;
    if (end - p < 2 || p[0] != 'r' || p[1] != '=') {
        *why = "malformed SCRAM message (attribute \"r\" expected)";
        return -EINVAL;
    }
    f->nonce = p + 2;
    f->nonce_len = (size_t)(end - f->nonce);
    if (memchr(f->nonce, ',', f->nonce_len)) {
        /* RFC 5802 allows extensions here; no client sends one and none is known. */
        *why = "malformed SCRAM message (unexpected attribute after the nonce)";
        return -EINVAL;
    }
    if (f->nonce_len == 0 || !auth__scram_printable(f->nonce, f->nonce_len)) {
        *why = "non-printable characters in SCRAM nonce";
        return -EINVAL;
    }
    return 0;
}

int auth_scram_parse_user(const char *msg, size_t len, char *user, size_t cap, const char **why)
{
    auth__scram_first f;
    const int rc = auth__scram_parse_first(msg, len, &f, why);
    if (rc < 0)
        return rc;
    if (f.user_len == 0 || unescape_name(f.user, f.user_len, user, cap) < 0) {
        *why = "malformed SCRAM message (bad user name)";
        return -EINVAL;
    }
    return 0;
}
