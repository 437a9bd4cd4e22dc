/*
 * scram_server: the server end of SCRAM, as PostgreSQL's backend runs it (auth-scram.c), for
 * clients logging in to Sluice.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>

/* Same inputs, same fake verifier: an unknown user's salt does not change between attempts, so
 * a client cannot tell it from a real one (PostgreSQL's scram_mock_salt). */
static int fake_verifier(const uint8_t seed[32], const char *user, auth_scram_verifier *v)
{
    uint8_t mac[AUTH_SHA256_LEN];
    int rc = auth__hmac(false, seed, 32, user, strlen(user), mac);
    memset(v, 0, sizeof *v);
    v->iterations = 4096;
    v->salt_len = 16;
    memcpy(v->salt, mac, v->salt_len);
    if (rc == 0)
        rc = auth__hmac(false, mac, sizeof mac, "StoredKey", 9, v->stored_key);
    if (rc == 0)
        rc = auth__hmac(false, mac, sizeof mac, "ServerKey", 9, v->server_key);
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}

int auth_scram_server_init(auth_scram_server *s, const auth_scram_verifier *v, const char *user,
                           const uint8_t fake_seed[32], bool mongo)
{
    memset(s, 0, sizeof *s);
    s->mongo = mongo;
    if (user && strlen(user) >= sizeof s->user)
        return -EINVAL;
    if (user)
        strcpy(s->user, user);
    if (v) {
        if (v->iterations < 1 || v->salt_len == 0 || v->salt_len > AUTH_MAX_SALT)
            return -EINVAL;
        s->v = *v;
        return 0;
    }
    s->fake = true;
    return fake_verifier(fake_seed, user ? user : "", &s->v);
}

int auth_scram_server_bind(auth_scram_server *s, bool plus, const uint8_t *data, size_t len,
                           const char **why)
{
    if (len > AUTH_CBIND_MAX || (plus && len == 0)) {
        *why = "channel binding data unavailable";
        return -EINVAL;
    }
    s->plus = plus;
    s->cbind_len = len;
    if (len)
        memcpy(s->cbind_data, data, len);
    return 0;
}

/* The gs2 flag against the mechanism and the connection, in PostgreSQL's order and words. */
static int check_cbind_flag(const auth_scram_server *s, const auth__scram_first *f,
                            const char **why)
{
    if (f->cbind != 'p' && s->plus) {
        *why = "malformed SCRAM message (The client selected SCRAM-SHA-256-PLUS, but the SCRAM "
               "message does not include channel binding data.)";
        return -EINVAL;
    }
    if (f->cbind == 'y' && s->cbind_len) {
        /* RFC 5802: the client could bind, and believes we cannot although we offered -PLUS:
         * the offer was tampered with on the way. */
        *why = "SCRAM channel binding negotiation error";
        return -EACCES;
    }
    if (f->cbind == 'p' && !s->plus) {
        *why = "malformed SCRAM message (The client selected SCRAM-SHA-256 without channel "
               "binding, but the SCRAM message includes channel binding data.)";
        return -EINVAL;
    }
    if (f->cbind == 'p' && !auth__scram_is(f->cbind_type, f->cbind_type_len, AUTH__CBIND_TYPE)) {
        *why = "unsupported SCRAM channel-binding type";
        return -EINVAL;
    }
    return 0;
}

/* saslname unescaping, as auth_scram_parse_user does it, into s->user. */
static int mongo_user(auth_scram_server *s, const char *msg, size_t len, const char **why)
{
    char name[sizeof s->user];
    const int rc = auth_scram_parse_user(msg, len, name, sizeof name, why);
    if (rc < 0)
        return rc;
    if (s->user[0] && strcmp(name, s->user) != 0) {
        *why = "SCRAM user name differs from the user being authenticated";
        return -EINVAL;
    }
    strcpy(s->user, name);
    return 0;
}

int auth__scram_server_first_nonce(auth_scram_server *s, const char *msg, size_t len,
                                   const char *server_nonce, char out[AUTH_SCRAM_MSG_MAX],
                                   const char **why)
{
    if (s->step != 0) {
        *why = "SCRAM message out of order";
        return -EINVAL;
    }
    auth__scram_first f;
    int rc = auth__scram_parse_first(msg, len, &f, why);
    if (rc < 0 || (rc = check_cbind_flag(s, &f, why)) < 0 ||
        (s->mongo && (rc = mongo_user(s, msg, len, why)) < 0))
        return rc;
    const size_t snlen = strlen(server_nonce);
    if (f.nonce_len + snlen >= sizeof s->nonce) {
        *why = "SCRAM nonce too long";
        return -EINVAL;
    }
    memcpy(s->nonce, f.nonce, f.nonce_len);
    memcpy(s->nonce + f.nonce_len, server_nonce, snlen + 1);
    memcpy(s->client_first_bare, f.bare, f.bare_len);
    s->client_first_bare[f.bare_len] = '\0';
    s->cbind = f.cbind;

    char salt[AUTH__B64_LEN(AUTH_MAX_SALT) + 1];
    auth__b64_encode(s->v.salt, s->v.salt_len, salt, sizeof salt);
    const int n = snprintf(s->server_first, sizeof s->server_first, "r=%s,s=%s,i=%d", s->nonce,
                           salt, s->v.iterations);
    if (n < 0 || (size_t)n >= sizeof s->server_first) {
        *why = "SCRAM nonce too long";
        return -EINVAL;
    }
    memcpy(out, s->server_first, (size_t)n + 1);
    s->step = 1;
    return 0;
}

int auth_scram_server_first(auth_scram_server *s, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why)
{
    char nonce[AUTH__B64_LEN(18) + 1];
    if (auth__scram_random_nonce(nonce) < 0) {
        *why = "could not generate random nonce";
        return -ENOMEM;
    }
    return auth__scram_server_first_nonce(s, msg, len, nonce, out, why);
}

int auth_scram_server_final(auth_scram_server *s, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why)
{
    if (s->step != 1) {
        *why = "SCRAM message out of order";
        return -EINVAL;
    }
    s->step = 2; /* whatever happens next, the exchange is over */
    if (!auth__scram_input_ok(msg, len, why))
        return -EINVAL;
    const char *p = msg, *end = msg + len, *val;
    size_t vlen;
    /* c= is the gs2 header again, with our binding data after it when the client binds:
     * "biws" for "n,,", "eSws" for "y,,". */
    char want[AUTH__CBIND_B64_MAX + 1];
    if (auth__scram_cbind_input(s->cbind, s->cbind_data, s->cbind_len, want) < 0 ||
        !auth__scram_attr(&p, end, 'c', &val, &vlen)) {
        *why = "unexpected SCRAM channel-binding attribute in client-final-message";
        return -EINVAL;
    }
    if (s->cbind == 'p') {
        if (vlen != strlen(want) || CRYPTO_memcmp(val, want, vlen) != 0) {
            *why = "SCRAM channel binding check failed";
            return -EACCES;
        }
    } else if (!auth__scram_is(val, vlen, want)) {
        *why = "unexpected SCRAM channel-binding attribute in client-final-message";
        return -EINVAL;
    }
    if (!auth__scram_attr(&p, end, 'r', &val, &vlen) || !auth__scram_is(val, vlen, s->nonce)) {
        *why = "SCRAM nonce does not match";
        return -EINVAL;
    }
    const char *without_proof_end = p - 1;
    uint8_t proof[AUTH_MAX_KEY];
    const size_t klen = auth__key_len(s->v.sha1);
    /* A fake exchange does not know which mechanism the client picked (MongoDB offers
     * SCRAM-SHA-1 too): a proof of either length fails at the proof, not before it. */
    int plen = -1;
    if (p == end || !auth__scram_attr(&p, end, 'p', &val, &vlen) || p != end ||
        ((plen = auth__b64_decode(val, vlen, proof, sizeof proof)) != (int)klen &&
         !(s->fake && plen == AUTH_SHA1_LEN))) {
        *why = "malformed SCRAM message (malformed proof in client-final-message)";
        return -EINVAL;
    }

    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    char am[AUTH_SCRAM_INPUT_MAX * 2 + AUTH_SCRAM_MSG_MAX + 2];
    const int amlen = snprintf(am, sizeof am, "%s,%s,%.*s", s->client_first_bare, s->server_first,
                               (int)(without_proof_end - msg), msg);
    uint8_t sig[AUTH_MAX_KEY] = {0}, key[AUTH_MAX_KEY], stored[AUTH_MAX_KEY];
    int rc = amlen < 0 || (size_t)amlen >= sizeof am ? -EINVAL : 0;
    if (rc == 0)
        rc = auth__hmac(s->v.sha1, s->v.stored_key, klen, am, (size_t)amlen, sig);
    for (size_t i = 0; i < klen; i++)
        key[i] = proof[i] ^ sig[i];
    if (rc == 0)
        rc = auth__hash(s->v.sha1, key, klen, stored);
    if (rc < 0) {
        *why = "SCRAM computation failed";
    } else if (CRYPTO_memcmp(stored, s->v.stored_key, klen) != 0 || s->fake) {
        *why = "password authentication failed";
        rc = AUTH_FAIL;
    } else if ((rc = auth__hmac(s->v.sha1, s->v.server_key, klen, am, (size_t)amlen, sig)) < 0) {
        *why = "SCRAM computation failed";
    } else {
        memcpy(s->client_key, key, klen);
        memcpy(out, "v=", 2);
        auth__b64_encode(sig, klen, out + 2, AUTH_SCRAM_MSG_MAX - 2);
    }
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}
