/*
 * Unit tests of auth/: secrets, md5, SASLprep, the users file and SCRAM (known answers from
 * RFC 5802, RFC 7677, MongoDB's auth spec and a verifier PostgreSQL 15 computed).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth_int.h"

static const uint8_t seed[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* ---- md5 ---- */

Test(auth_md5, hash_and_response)
{
    char h[AUTH_MD5_LEN + 1], r[AUTH_MD5_LEN + 1];
    auth_md5_hash("secret", "postgres", h);
    cr_assert_str_eq(h, "md553f48b7c4b76a86ce72276c5755f217d");
    const uint8_t salt[4] = {1, 2, 3, 4};
    auth_md5_response(h, salt, r);
    cr_assert_str_eq(r, "md5bb41a296aab6baccb36ff243a562abff");
}

Test(auth_md5, check_against_each_kind)
{
    const uint8_t salt[4] = {1, 2, 3, 4};
    auth_secret plain, md5, scram;
    const char *why = NULL;
    cr_assert_eq(auth_secret_parse("secret", &plain, &why), 0);
    cr_assert_eq(auth_secret_parse("md553f48b7c4b76a86ce72276c5755f217d", &md5, &why), 0);
    cr_assert_eq(md5.kind, AUTH_SECRET_MD5);
    char *v;
    cr_assert_eq(auth_scram_make_verifier("secret", 0, &v), 0);
    cr_assert_eq(auth_secret_parse(v, &scram, &why), 0);
    free(v);
    const char *good = "md5bb41a296aab6baccb36ff243a562abff";
    cr_assert_eq(auth_md5_check(&plain, "postgres", salt, good), 0);
    cr_assert_eq(auth_md5_check(&md5, "postgres", salt, good), 0);
    cr_assert_eq(auth_md5_check(&md5, "other", salt, good), 0, "the hash already holds the user");
    cr_assert_eq(auth_md5_check(&plain, "other", salt, good), AUTH_FAIL);
    cr_assert_eq(auth_md5_check(&scram, "postgres", salt, good), AUTH_FAIL);
    cr_assert_eq(auth_md5_check(&md5, "postgres", salt, "md5bb41a296aab6baccb36ff243a562abf"),
                 AUTH_FAIL);
    cr_assert_eq(auth_md5_check(&md5, "postgres", salt, "md5bb41a296aab6baccb36ff243a562abffx"),
                 AUTH_FAIL);
    cr_assert_eq(auth_md5_check(&md5, "postgres", salt, ""), AUTH_FAIL);
    const uint8_t other[4] = {1, 2, 3, 5};
    cr_assert_eq(auth_md5_check(&md5, "postgres", other, good), AUTH_FAIL);
    auth_secret_clear(&plain);
    auth_secret_clear(&md5);
    auth_secret_clear(&scram);
}

/* ---- secrets ---- */

/* Computed by PostgreSQL 15 (password_encryption = scram-sha-256) for 'sluice-kat-pw' and for
 * E'I\u00ADX' (a soft hyphen, which SASLprep maps to nothing). */
#define PG_VERIFIER_KAT                                                                            \
    "SCRAM-SHA-256$4096:Gxr/yO84zXqGcIQzchISjg==$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0zW7H3c=:"    \
    "9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs="
#define PG_VERIFIER_SOFT_HYPHEN                                                                    \
    "SCRAM-SHA-256$4096:z3n1HzlyTJr8GMrqNJQugg==$RKjS8mJDxBPF/eZI8+1yzpYZKaKB7s+Takcp6rjSpEI=:"    \
    "pTcDdIdF5GjUvQKMrVtg6Tb8CWF2yJe6mv6j8Z4+Hko="

Test(auth_secret, classify)
{
    auth_secret s;
    const char *why = NULL;
    cr_assert_eq(auth_secret_parse(PG_VERIFIER_KAT, &s, &why), 0);
    cr_assert_eq(s.kind, AUTH_SECRET_SCRAM);
    cr_assert_eq(s.scram.iterations, 4096);
    cr_assert_eq(s.scram.salt_len, 16);
    cr_assert_str_eq(s.text, PG_VERIFIER_KAT);
    auth_secret_clear(&s);
    /* PostgreSQL's md5 test: lower-case hex only, exact length; else plaintext */
    cr_assert_eq(auth_secret_parse("md553F48B7C4B76A86CE72276C5755F217D", &s, &why), 0);
    cr_assert_eq(s.kind, AUTH_SECRET_PLAIN);
    auth_secret_clear(&s);
    cr_assert_eq(auth_secret_parse("md553f48b7c4b76a86ce72276c5755f217", &s, &why), 0);
    cr_assert_eq(s.kind, AUTH_SECRET_PLAIN);
    auth_secret_clear(&s);
    cr_assert_eq(auth_secret_parse("", &s, &why), 0);
    cr_assert_eq(s.kind, AUTH_SECRET_PLAIN);
    auth_secret_clear(&s);
}

Test(auth_secret, malformed_verifiers)
{
    static const char *bad[] = {
        "SCRAM-SHA-256$",
        "SCRAM-SHA-256$4096:Gxr/yO84zXqGcIQzchISjg==",
        "SCRAM-SHA-256$0:Gxr/yO84zXqGcIQzchISjg==$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0zW7H3c=:"
        "9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs=",
        "SCRAM-SHA-256$-1:Gxr/yO84zXqGcIQzchISjg==$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0zW7H3c=:"
        "9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs=",
        "SCRAM-SHA-256$99999999999:Gxr/yO84zXqGcIQzchISjg==$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0"
        "zW7H3c=:9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs=",
        "SCRAM-SHA-256$4096:$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0zW7H3c=:"
        "9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs=",
        "SCRAM-SHA-256$4096:Gxr/yO84zXqGcIQzchISj===$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0zW7H3c=:"
        "9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs=",
        /* a key of 31 bytes */
        "SCRAM-SHA-256$4096:Gxr/yO84zXqGcIQzchISjg==$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0zW7Hw==:"
        "9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs=",
        "SCRAM-SHA-256$4096:Gxr/yO84zXqGcIQzchISjg==$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0zW7H3c=:"
        "9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs=:x",
        "SCRAM-SHA-256$4096:Gxr/yO84zXqGcIQzchISjg==$dNLFqlqwrcxBKdcpcgk46lKL5GBvGry2iM0r0zW7H3c=:"
        "9eMllRbS0fj4D2zPMEAUybVWHxxGFN3z/+uH10qZOzs= ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        auth_secret s;
        const char *why = NULL;
        cr_assert_eq(auth_secret_parse(bad[i], &s, &why), -EINVAL, "%s", bad[i]);
        cr_assert_not_null(why);
        auth_secret_clear(&s);
    }
}

Test(auth_secret, plain_check_against_each_kind)
{
    auth_secret s;
    const char *why = NULL;
    cr_assert_eq(auth_secret_parse(PG_VERIFIER_KAT, &s, &why), 0);
    cr_assert_eq(auth_plain_check(&s, "kat", "sluice-kat-pw"), 0);
    cr_assert_eq(auth_plain_check(&s, "kat", "sluice-kat-pX"), AUTH_FAIL);
    auth_secret_clear(&s);
    cr_assert_eq(auth_secret_parse("md553f48b7c4b76a86ce72276c5755f217d", &s, &why), 0);
    cr_assert_eq(auth_plain_check(&s, "postgres", "secret"), 0);
    cr_assert_eq(auth_plain_check(&s, "postgres", "secreT"), AUTH_FAIL);
    cr_assert_eq(auth_plain_check(&s, "other", "secret"), AUTH_FAIL);
    auth_secret_clear(&s);
    cr_assert_eq(auth_secret_parse("secret", &s, &why), 0);
    cr_assert_eq(auth_plain_check(&s, "postgres", "secret"), 0);
    cr_assert_eq(auth_plain_check(&s, "postgres", "secret2"), AUTH_FAIL);
    cr_assert_eq(auth_plain_check(&s, "postgres", ""), AUTH_FAIL);
    auth_secret_clear(&s);
}

/* ---- SASLprep ---- */

static void prep_is(const char *in, const char *want)
{
    char *out;
    cr_assert_eq(auth_saslprep(in, &out), 0);
    cr_assert_str_eq(out, want);
    free(out);
}

Test(auth_saslprep, postgres_rule)
{
    prep_is("pencil", "pencil");
    prep_is("I\xC2\xADX", "IX"); /* soft hyphen: mapped to nothing */
    prep_is("a\xC2\xA0"
            "b",
            "a b");                  /* no-break space: mapped to space */
    prep_is("\xE2\x85\xA8", "IX");   /* Roman numeral nine: NFKC */
    prep_is("\xC2\xAD", "\xC2\xAD"); /* maps to nothing at all: raw */
    prep_is("a\xff"
            "b",
            "a\xff"
            "b");                            /* invalid UTF-8: raw */
    prep_is("\xC0\xAF", "\xC0\xAF");         /* overlong: raw */
    prep_is("\xED\xA0\x80", "\xED\xA0\x80"); /* surrogate: raw */
    prep_is("a\x07"
            "b",
            "a\x07"
            "b");                            /* ASCII control: unchanged, as PostgreSQL */
    prep_is("\xC3\xA9\x07", "\xC3\xA9\x07"); /* non-ASCII with a prohibited char: raw */
    prep_is("", "");
}

Test(auth_saslprep, postgres_verifier_of_soft_hyphen)
{
    auth_secret s;
    const char *why = NULL;
    cr_assert_eq(auth_secret_parse(PG_VERIFIER_SOFT_HYPHEN, &s, &why), 0);
    cr_assert_eq(auth_plain_check(&s, "kat2", "I\xC2\xADX"), 0);
    cr_assert_eq(auth_plain_check(&s, "kat2", "IX"), 0);
    cr_assert_eq(auth_plain_check(&s, "kat2", "I-X"), AUTH_FAIL);
    auth_secret_clear(&s);
}

/* ---- base64 ---- */

Test(auth_b64, strict)
{
    uint8_t out[8];
    cr_assert_eq(auth__b64_decode("YQ==", 4, out, sizeof out), 1);
    cr_assert_eq(out[0], 'a');
    cr_assert_eq(auth__b64_decode("YWI=", 4, out, sizeof out), 2);
    cr_assert_eq(auth__b64_decode("YWJj", 4, out, sizeof out), 3);
    cr_assert_eq(auth__b64_decode("", 0, out, sizeof out), 0);
    cr_assert_eq(auth__b64_decode("YQ=", 3, out, sizeof out), -EINVAL);
    cr_assert_eq(auth__b64_decode("Y===", 4, out, sizeof out), -EINVAL);
    cr_assert_eq(auth__b64_decode("YR==", 4, out, sizeof out), -EINVAL); /* non-zero pad bits */
    cr_assert_eq(auth__b64_decode("YQ==YQ==", 8, out, sizeof out), -EINVAL);
    cr_assert_eq(auth__b64_decode("Y Q=", 4, out, sizeof out), -EINVAL);
    cr_assert_eq(auth__b64_decode("YWJjZGVmZ2hp", 12, out, sizeof out), -EINVAL); /* 9 > 8 */
    char enc[9];
    cr_assert_eq(auth__b64_encode((const uint8_t *)"ab", 2, enc, sizeof enc), 4);
    cr_assert_str_eq(enc, "YWI=");
    cr_assert_eq(auth__b64_encode((const uint8_t *)"abcdefg", 7, enc, sizeof enc), -EINVAL);
}

/* ---- SCRAM known answers ---- */

typedef struct kat {
    bool sha1;
    const char *password; /* fed to PBKDF2 as is */
    const char *cnonce, *snonce;
    const char *client_first, *server_first, *client_final, *server_final;
    size_t cbind_len; /* bound with -PLUS to the data 00 01 02 ..; 0: not bound */
} kat;

static void cbind_data(uint8_t d[32])
{
    for (int i = 0; i < 32; i++)
        d[i] = (uint8_t)i;
}

#define RFC7677_CNONCE       "rOprNGfwEbeRWgbNEkqO"
#define RFC7677_SNONCE       "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC7677_SERVER_FIRST "r=" RFC7677_CNONCE RFC7677_SNONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"

/* RFC 7677 section 3 */
static const kat rfc7677 = {
    .sha1 = false,
    .password = "pencil",
    .cnonce = RFC7677_CNONCE,
    .snonce = RFC7677_SNONCE,
    .client_first = "n,,n=user,r=" RFC7677_CNONCE,
    .server_first = RFC7677_SERVER_FIRST,
    .client_final = "c=biws,r=" RFC7677_CNONCE RFC7677_SNONCE ","
                    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    .server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

/* RFC 5802 section 5 */
static const kat rfc5802 = {
    .sha1 = true,
    .password = "pencil",
    .cnonce = "fyko+d2lbbFgONRv9qkxdawL",
    .snonce = "3rfcNHYJY1ZVvWVs7j",
    .client_first = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    .server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    .client_final = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                    "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    .server_final = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

/* MongoDB's auth spec, SCRAM-SHA-1: the password is hex(md5("user:mongo:pencil")). */
static const kat mongo_sha1 = {
    .sha1 = true,
    .password = "1c33006ec1ffd90f9cadcbcc0e118200",
    .cnonce = "fyko+d2lbbFgONRv9qkxdawL",
    .snonce = "Ho+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE",
    .client_first = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    .server_first = "r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,"
                    "s=rQ9ZY3MntBeuP3E1TDVC4w==,i=10000",
    .client_final = "c=biws,r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,"
                    "p=MC2T8BvbmWRckDw8oWl5IVghwCY=",
    .server_final = "v=UMWeI25JD1yNYZRMpZ4VHvhZ9e0=",
};

static void salt_of(const kat *k, uint8_t *salt, size_t *len, int *it)
{
    const char *s = strstr(k->server_first, ",s=") + 3, *e = strstr(s, ",i=");
    const int n = auth__b64_decode(s, (size_t)(e - s), salt, AUTH_MAX_SALT);
    cr_assert_gt(n, 0);
    *len = (size_t)n;
    *it = atoi(e + 3);
}

static void server_kat(const kat *k, bool mongo)
{
    uint8_t salt[AUTH_MAX_SALT];
    size_t salt_len;
    int it;
    salt_of(k, salt, &salt_len, &it);
    auth_scram_verifier v;
    cr_assert_eq(auth__scram_keys(k->sha1, k->password, salt, salt_len, it, &v), 0);
    auth_scram_server s;
    cr_assert_eq(auth_scram_server_init(&s, &v, mongo ? "user" : NULL, seed, mongo), 0);
    char out[AUTH_SCRAM_MSG_MAX];
    const char *why = NULL;
    uint8_t d[32];
    cbind_data(d);
    cr_assert_eq(auth_scram_server_bind(&s, k->cbind_len > 0, d, k->cbind_len, &why), 0);
    cr_assert_eq(auth__scram_server_first_nonce(&s, k->client_first, strlen(k->client_first),
                                                k->snonce, out, &why),
                 0, "%s", why);
    cr_assert_str_eq(out, k->server_first);
    cr_assert_eq(auth_scram_server_final(&s, k->client_final, strlen(k->client_final), out, &why),
                 0, "%s", why);
    cr_assert_str_eq(out, k->server_final);
    if (mongo)
        cr_assert_str_eq(s.user, "user");
}

static void client_kat(const kat *k)
{
    auth_scram_client c;
    cr_assert_eq(auth_scram_client_init_password(&c, k->password), 0);
    c.sha1 = k->sha1;
    uint8_t d[32];
    cbind_data(d);
    cr_assert(!k->cbind_len || auth_scram_client_bind(&c, true, d, k->cbind_len) == 0);
    char out[AUTH_SCRAM_MSG_MAX];
    const char *why = NULL;
    cr_assert_eq(auth__scram_client_first_nonce(&c, "user", k->cnonce, out), 0);
    cr_assert_str_eq(out, k->client_first);
    cr_assert_eq(auth_scram_client_final(&c, k->server_first, strlen(k->server_first), out, &why),
                 0, "%s", why);
    cr_assert_str_eq(out, k->client_final);
    cr_assert_eq(auth_scram_client_verify(&c, k->server_final, strlen(k->server_final), &why), 0,
                 "%s", why);
}

Test(auth_scram, rfc7677_server)
{
    server_kat(&rfc7677, false);
}
Test(auth_scram, rfc7677_client)
{
    client_kat(&rfc7677);
}
Test(auth_scram, rfc5802_sha1_server)
{
    server_kat(&rfc5802, true);
}
Test(auth_scram, rfc5802_sha1_client)
{
    client_kat(&rfc5802);
}
Test(auth_scram, mongo_sha1_spec_both_ends)
{
    server_kat(&mongo_sha1, true);
    client_kat(&mongo_sha1);
}

/* ---- SCRAM-SHA-256-PLUS: channel binding (tls-server-end-point) ---- */

/* RFC 7677's exchange bound to the binding data 00 01 .. 1f (as a certificate hash would be);
 * the messages were computed independently from the RFC's formulas. */
static const kat rfc7677_plus = {
    .sha1 = false,
    .password = "pencil",
    .cnonce = RFC7677_CNONCE,
    .snonce = RFC7677_SNONCE,
    .client_first = "p=tls-server-end-point,,n=user,r=" RFC7677_CNONCE,
    .server_first = RFC7677_SERVER_FIRST,
    .client_final =
        "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,"
        "r=" RFC7677_CNONCE RFC7677_SNONCE ",p=nY1Wus9a+gM2DrbQ1msXFgyhW6KM5ktOxWiU+/P/EGY=",
    .server_final = "v=RwppMGddhz/J0lFYaRReBjXcQeNUFP5Qc76Lo5Exrig=",
    .cbind_len = 32,
};

/* A server for rfc7677_plus's verifier: bound with plus and data (len 0: none). */
static void plus_server(auth_scram_server *s, bool plus, size_t len)
{
    uint8_t salt[AUTH_MAX_SALT], d[32];
    size_t salt_len;
    int it;
    salt_of(&rfc7677_plus, salt, &salt_len, &it);
    static auth_scram_verifier v;
    cr_assert_eq(auth__scram_keys(false, "pencil", salt, salt_len, it, &v), 0);
    cr_assert_eq(auth_scram_server_init(s, &v, NULL, seed, false), 0);
    cbind_data(d);
    const char *why = NULL;
    cr_assert_eq(auth_scram_server_bind(s, plus, len ? d : NULL, len, &why), 0, "%s", why);
}

/* Server verdict on client-first then (if it passed) client-final; *why says why not. */
static int plus_verdict(bool plus, size_t len, const char *first, const char *final,
                        const char **why)
{
    auth_scram_server s;
    plus_server(&s, plus, len);
    char out[AUTH_SCRAM_MSG_MAX];
    *why = NULL;
    int rc =
        auth__scram_server_first_nonce(&s, first, strlen(first), rfc7677_plus.snonce, out, why);
    if (rc == 0)
        rc = auth_scram_server_final(&s, final, strlen(final), out, why);
    cr_assert(rc == 0 || *why);
    return rc;
}

Test(auth_scram, plus_known_answer_both_ends)
{
    server_kat(&rfc7677_plus, false);
    client_kat(&rfc7677_plus);
}

Test(auth_scram, plus_refusals_in_postgres_order)
{
    const kat *k = &rfc7677_plus;
    const char *why;
    /* -PLUS with no binding data to check against: the caller never offers it, and bind says no */
    auth_scram_server s;
    cr_assert_eq(auth_scram_server_init(&s, NULL, "u", seed, false), 0);
    cr_assert_eq(auth_scram_server_bind(&s, true, NULL, 0, &why), -EINVAL);
    uint8_t big[AUTH_CBIND_MAX + 1] = {0};
    cr_assert_eq(auth_scram_server_bind(&s, false, big, sizeof big, &why), -EINVAL);

    /* -PLUS, but the client says n or y: malformed (08P01 upstream) */
    cr_assert_eq(plus_verdict(true, 32, rfc7677.client_first, "", &why), -EINVAL);
    cr_assert(strstr(why, "does not include channel binding data"), "%s", why);
    cr_assert_eq(plus_verdict(true, 32, "y,,n=user,r=rOprNGfwEbeRWgbNEkqO", "", &why), -EINVAL);
    cr_assert(strstr(why, "does not include channel binding data"), "%s", why);
    /* plain SCRAM over a connection that could bind: "y" is a downgrade (RFC 5802 section 6) */
    cr_assert_eq(plus_verdict(false, 32, "y,,n=user,r=rOprNGfwEbeRWgbNEkqO", "", &why), -EACCES);
    cr_assert_str_eq(why, "SCRAM channel binding negotiation error");
    /* ... while without binding data (no TLS) "y" is honest and goes on */
    cr_assert_eq(plus_verdict(false, 0, "y,,n=user,r=rOprNGfwEbeRWgbNEkqO", "c=eSws", &why),
                 -EINVAL);
    cr_assert(strstr(why, "nonce"), "passed the flag, stopped at the nonce: %s", why);
    /* "p" under plain SCRAM, with or without TLS */
    cr_assert_eq(plus_verdict(false, 32, k->client_first, "", &why), -EINVAL);
    cr_assert(strstr(why, "includes channel binding data"), "%s", why);
    cr_assert_eq(plus_verdict(false, 0, k->client_first, "", &why), -EINVAL);
    /* other binding types, and malformed ones */
    cr_assert_eq(plus_verdict(true, 32, "p=tls-unique,,n=,r=abc", "", &why), -EINVAL);
    cr_assert_str_eq(why, "unsupported SCRAM channel-binding type");
    static const char *bad[] = {"p=,,n=,r=abc",
                                "p=tls server,,n=,r=abc",
                                "p=tls-server-end-point",
                                "p=tls-server-end-point,",
                                "p=tls-server-end-point,a=x,n=,r=abc",
                                "p",
                                "p=x\x01,,n=,r=abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(plus_verdict(true, 32, bad[i], "", &why), -EINVAL, "%s", bad[i]);
}

Test(auth_scram, plus_final_must_carry_our_binding_data)
{
    const kat *k = &rfc7677_plus;
    const char *why;
    cr_assert_eq(plus_verdict(true, 32, k->client_first, k->client_final, &why), 0, "%s", why);
    /* the right proof for other binding data (the client saw another certificate): refused
     * before the proof counts, 28000 upstream */
    cr_assert_eq(plus_verdict(true, 31, k->client_first, k->client_final, &why), -EACCES);
    cr_assert_str_eq(why, "SCRAM channel binding check failed");
    char m[AUTH_SCRAM_MSG_MAX];
    const char *rest = strstr(k->client_final, ",r=");
    static const char *wrong[] = {
        "biws",                             /* n,, */
        "eSws",                             /* y,, */
        "cD10bHMtc2VydmVyLWVuZC1wb2ludCws", /* no data */
        "cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh4=", /* 1 bit */
        "cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8fAA==",
        "",
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        snprintf(m, sizeof m, "c=%s%s", wrong[i], rest);
        cr_assert_eq(plus_verdict(true, 32, k->client_first, m, &why), -EACCES, "%s", wrong[i]);
    }
    snprintf(m, sizeof m, "r=x%s", rest);
    cr_assert_eq(plus_verdict(true, 32, k->client_first, m, &why), -EINVAL, "no c=");
    /* an unknown user's exchange fails at the binding the same way */
    auth_scram_server s;
    cr_assert_eq(auth_scram_server_init(&s, NULL, "ghost", seed, false), 0);
    uint8_t d[32];
    cbind_data(d);
    cr_assert_eq(auth_scram_server_bind(&s, true, d, 31, &why), 0);
    char out[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth__scram_server_first_nonce(&s, k->client_first, strlen(k->client_first),
                                                k->snonce, out, &why),
                 0);
    cr_assert_eq(auth_scram_server_final(&s, k->client_final, strlen(k->client_final), out, &why),
                 -EACCES);
}

Test(auth_scram, client_binding_flags)
{
    auth_scram_client c;
    uint8_t d[AUTH_CBIND_MAX + 1] = {0};
    char out[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_scram_client_init_password(&c, "pw"), 0);
    cr_assert_eq(auth_scram_client_bind(&c, true, d, 0), -EINVAL);
    cr_assert_eq(auth_scram_client_bind(&c, true, d, sizeof d), -EINVAL);
    cr_assert_eq(auth_scram_client_bind(&c, false, d, 32), 0);
    cr_assert_eq(auth_scram_client_first(&c, out), 0);
    cr_assert(strncmp(out, "y,,n=,r=", 8) == 0, "%s", out);
    cr_assert_eq(auth_scram_client_bind(&c, true, d, 32), -EINVAL, "too late");
    cr_assert_eq(auth_scram_client_init_password(&c, "pw"), 0);
    cr_assert_eq(auth_scram_client_first(&c, out), 0);
    cr_assert(strncmp(out, "n,,n=,r=", 8) == 0, "no binding by default: %s", out);
}

Test(auth_scram, mongo_sha1_derive)
{
    uint8_t salt[AUTH_MAX_SALT];
    size_t salt_len;
    int it;
    salt_of(&mongo_sha1, salt, &salt_len, &it);
    auth_scram_verifier a, b;
    cr_assert_eq(auth_scram_derive(true, "user", "pencil", salt, salt_len, it, &a), 0);
    cr_assert_eq(auth__scram_keys(true, mongo_sha1.password, salt, salt_len, it, &b), 0);
    cr_assert(a.sha1);
    cr_assert_eq(memcmp(a.stored_key, b.stored_key, AUTH_SHA1_LEN), 0);
    cr_assert_eq(memcmp(a.server_key, b.server_key, AUTH_SHA1_LEN), 0);
}

Test(auth_scram, mongo_sha256_saslprep_derive)
{
    /* MongoDB's SCRAM-SHA-256 SASLprep's the password like PostgreSQL (the spec's "IX" case) */
    uint8_t salt[4] = {1, 2, 3, 4};
    auth_scram_verifier a, b;
    cr_assert_eq(auth_scram_derive(false, "user", "I\xC2\xADX", salt, 4, 4096, &a), 0);
    cr_assert_eq(auth_scram_derive(false, "other", "IX", salt, 4, 4096, &b), 0);
    cr_assert_eq(memcmp(a.stored_key, b.stored_key, AUTH_SHA256_LEN), 0);
}

/* ---- SCRAM round trips ---- */

/* client-first .. server-final between c and s; returns the server's verdict. */
static int exchange(auth_scram_client *c, auth_scram_server *s)
{
    char a[AUTH_SCRAM_MSG_MAX], b[AUTH_SCRAM_MSG_MAX];
    const char *why = NULL;
    cr_assert_eq(auth_scram_client_first(c, a), 0);
    cr_assert_eq(auth_scram_server_first(s, a, strlen(a), b, &why), 0, "%s", why);
    cr_assert_eq(strlen(s->nonce), strlen(a) - strlen("n,,n=,r=") + 24, "18 bytes base64'd");
    cr_assert_eq(auth_scram_client_final(c, b, strlen(b), a, &why), 0, "%s", why);
    const int rc = auth_scram_server_final(s, a, strlen(a), b, &why);
    if (rc == 0)
        cr_assert_eq(auth_scram_client_verify(c, b, strlen(b), &why), 0, "%s", why);
    return rc;
}

Test(auth_scram, round_trip_password_then_passthrough)
{
    char *text;
    cr_assert_eq(auth_scram_make_verifier("s3cr\xC3\xA9t", 0, &text), 0);
    auth_secret sec;
    const char *why = NULL;
    cr_assert_eq(auth_secret_parse(text, &sec, &why), 0);
    free(text);
    cr_assert_eq(sec.scram.iterations, 4096);

    auth_scram_client c;
    auth_scram_server s;
    cr_assert_eq(auth_scram_client_init_password(&c, "s3cr\xC3\xA9t"), 0);
    cr_assert_eq(auth_scram_server_init(&s, &sec.scram, "alice", seed, false), 0);
    cr_assert_eq(exchange(&c, &s), 0);

    /* The ClientKey the server recovered logs in to a second server with the same verifier. */
    auth_scram_client c2;
    auth_scram_server s2;
    cr_assert_eq(auth_scram_client_init_keys(&c2, s.client_key, sec.scram.server_key), 0);
    cr_assert_eq(auth_scram_server_init(&s2, &sec.scram, "alice", seed, false), 0);
    cr_assert_eq(exchange(&c2, &s2), 0);

    /* wrong password: AUTH_FAIL at the proof */
    cr_assert_eq(auth_scram_client_init_password(&c, "s3cret"), 0);
    cr_assert_eq(auth_scram_server_init(&s, &sec.scram, "alice", seed, false), 0);
    cr_assert_eq(exchange(&c, &s), AUTH_FAIL);
    auth_secret_clear(&sec);
}

Test(auth_scram, postgres_verifier_round_trip)
{
    auth_secret sec;
    const char *why = NULL;
    cr_assert_eq(auth_secret_parse(PG_VERIFIER_KAT, &sec, &why), 0);
    auth_scram_client c;
    auth_scram_server s;
    cr_assert_eq(auth_scram_client_init_password(&c, "sluice-kat-pw"), 0);
    cr_assert_eq(auth_scram_server_init(&s, &sec.scram, "kat", seed, false), 0);
    cr_assert_eq(exchange(&c, &s), 0);
    auth_secret_clear(&sec);
}

Test(auth_scram, unknown_user_fails_at_the_proof_with_a_stable_salt)
{
    auth_scram_server s1, s2, s3;
    cr_assert_eq(auth_scram_server_init(&s1, NULL, "ghost", seed, false), 0);
    cr_assert_eq(auth_scram_server_init(&s2, NULL, "ghost", seed, false), 0);
    cr_assert_eq(auth_scram_server_init(&s3, NULL, "ghost2", seed, false), 0);
    cr_assert(s1.fake);
    cr_assert_eq(s1.v.iterations, 4096);
    cr_assert_eq(s1.v.salt_len, 16);
    cr_assert_eq(memcmp(s1.v.salt, s2.v.salt, 16), 0);
    cr_assert_neq(memcmp(s1.v.salt, s3.v.salt, 16), 0);
    uint8_t mac[32];
    cr_assert_eq(auth__hmac(false, seed, 32, "ghost", 5, mac), 0);
    cr_assert_eq(memcmp(s1.v.salt, mac, 16), 0, "salt = HMAC-SHA256(seed, user)[0:16]");
    auth_scram_client c;
    cr_assert_eq(auth_scram_client_init_password(&c, "anything"), 0);
    cr_assert_eq(exchange(&c, &s1), AUTH_FAIL);
}

/* ---- SCRAM: hostile peers ---- */

static int server_first_of(auth_scram_server *s, const char *msg, size_t len, const char **why)
{
    char out[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_scram_server_init(s, NULL, "u", seed, false), 0);
    return auth_scram_server_first(s, msg, len, out, why);
}

Test(auth_scram, server_refuses_bad_client_first)
{
    static const char *bad[] = {
        "",
        "n",
        "n,",
        "p=tls-server-end-point,,n=,r=abc", /* channel binding: no -PLUS picked */
        "n,a=admin,n=,r=abc",               /* authzid */
        "n,,m=ext,n=,r=abc",                /* mandatory extension */
        "n,,r=abc",                         /* no n= */
        "n,,n=,",                           /* no r= */
        "n,,n=",                            /* nothing after the name */
        "n,,n=,r=",                         /* empty nonce */
        "n,,n=,r=ab c",                     /* non-printable nonce */
        "n,,n=,r=ab\x7f",                   /* non-printable nonce */
        "n,,n=,r=abc,x=ext",                /* extra attribute */
        "x,,n=,r=abc",                      /* unknown flag */
        "n,,n=,R=abc",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        auth_scram_server s;
        const char *why = NULL;
        cr_assert_eq(server_first_of(&s, bad[i], strlen(bad[i]), &why), -EINVAL, "%s", bad[i]);
        cr_assert_not_null(why);
    }
    /* NUL inside, over the input limit, a nonce too long for the server's buffer */
    auth_scram_server s;
    const char *why = NULL;
    cr_assert_eq(server_first_of(&s, "n,,n=,r=a\0b", 11, &why), -EINVAL);
    static char big[AUTH_SCRAM_INPUT_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "n,,n=,r=", 8);
    cr_assert_eq(server_first_of(&s, big, AUTH_SCRAM_INPUT_MAX + 1, &why), -EINVAL);
    cr_assert_eq(server_first_of(&s, big, 8 + 104, &why), -EINVAL);
    cr_assert_eq(server_first_of(&s, big, 8 + 103, &why), 0, "%s", why);
    /* y,, (a client able to bind that thinks we cannot) is fine */
    cr_assert_eq(server_first_of(&s, "y,,n=,r=abc", 11, &why), 0);
    cr_assert_eq(s.cbind, 'y');
}

/* A server after a correct client-first, and a client-final made by a real client. */
static void started(auth_scram_server *s, auth_scram_client *c, auth_secret *sec, char *final)
{
    char *text;
    const char *why = NULL;
    cr_assert_eq(auth_scram_make_verifier("pw", 1, &text), 0);
    cr_assert_eq(auth_secret_parse(text, sec, &why), 0);
    free(text);
    char a[AUTH_SCRAM_MSG_MAX], b[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_scram_client_init_password(c, "pw"), 0);
    cr_assert_eq(auth_scram_server_init(s, &sec->scram, "u", seed, false), 0);
    cr_assert_eq(auth_scram_client_first(c, a), 0);
    cr_assert_eq(auth_scram_server_first(s, a, strlen(a), b, &why), 0);
    cr_assert_eq(auth_scram_client_final(c, b, strlen(b), final, &why), 0);
}

/* The server's verdict on client-final `msg` (NULL: the real one). */
static int final_verdict(const char *msg)
{
    auth_scram_server s;
    auth_scram_client c;
    auth_secret sec;
    char real[AUTH_SCRAM_MSG_MAX], out[AUTH_SCRAM_MSG_MAX];
    started(&s, &c, &sec, real);
    const char *why = NULL;
    char m[AUTH_SCRAM_INPUT_MAX + 8];
    /* "%N%" in msg stands for the server's full nonce */
    const char *at = msg ? strstr(msg, "%N%") : NULL;
    if (!msg)
        strcpy(m, real);
    else if (at)
        snprintf(m, sizeof m, "%.*s%s%s", (int)(at - msg), msg, s.nonce, at + 3);
    else
        strcpy(m, msg);
    const int rc = auth_scram_server_final(&s, m, strlen(m), out, &why);
    cr_assert(rc == 0 || why);
    cr_assert_eq(auth_scram_server_final(&s, m, strlen(m), out, &why), -EINVAL, "done is done");
    auth_secret_clear(&sec);
    return rc;
}

Test(auth_scram, server_refuses_bad_client_final)
{
    cr_assert_eq(final_verdict(NULL), 0);
    const char *proof = ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    char m[256];
    snprintf(m, sizeof m, "c=biws,r=%%N%%%s", proof);
    cr_assert_eq(final_verdict(m), AUTH_FAIL, "wrong proof");
    snprintf(m, sizeof m, "c=eSws,r=%%N%%%s", proof);
    cr_assert_eq(final_verdict(m), -EINVAL, "y,, after n,,");
    snprintf(m, sizeof m, "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=%%N%%%s", proof);
    cr_assert_eq(final_verdict(m), -EINVAL, "channel binding data");
    snprintf(m, sizeof m, "c=biws,r=%%N%%x%s", proof);
    cr_assert_eq(final_verdict(m), -EINVAL, "nonce extended");
    snprintf(m, sizeof m, "c=biws,r=abc%s", proof);
    cr_assert_eq(final_verdict(m), -EINVAL, "other nonce");
    snprintf(m, sizeof m, "r=%%N%%,c=biws%s", proof);
    cr_assert_eq(final_verdict(m), -EINVAL, "attributes out of order");
    cr_assert_eq(final_verdict("c=biws,r=%N%,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="),
                 -EINVAL, "31-byte proof");
    cr_assert_eq(final_verdict("c=biws,r=%N%,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="),
                 -EINVAL, "33-byte proof");
    snprintf(m, sizeof m, "c=biws,r=%%N%%%s,x=1", proof);
    cr_assert_eq(final_verdict(m), -EINVAL, "garbage after the proof");
    snprintf(m, sizeof m, "c=biws,r=%%N%%,x=1%s", proof);
    cr_assert_eq(final_verdict(m), -EINVAL, "extension");
    cr_assert_eq(final_verdict("c=biws,r=%N%"), -EINVAL, "no proof");
    cr_assert_eq(final_verdict(""), -EINVAL);
}

Test(auth_scram, out_of_order)
{
    auth_scram_server s;
    char out[AUTH_SCRAM_MSG_MAX];
    const char *why = NULL;
    cr_assert_eq(auth_scram_server_init(&s, NULL, "u", seed, false), 0);
    cr_assert_eq(auth_scram_server_final(&s, "c=biws", 6, out, &why), -EINVAL);
    auth_scram_client c;
    cr_assert_eq(auth_scram_client_init_password(&c, "pw"), 0);
    cr_assert_eq(auth_scram_client_final(&c, "r=a,s=AA==,i=1", 14, out, &why), -EINVAL);
    cr_assert_eq(auth_scram_client_verify(&c, "v=", 2, &why), -EINVAL);
}

/* The client's verdict on server-first `msg` after client-first with nonce "abc". */
static int client_final_verdict(const char *msg)
{
    auth_scram_client c;
    char out[AUTH_SCRAM_MSG_MAX];
    const char *why = NULL;
    cr_assert_eq(auth_scram_client_init_password(&c, "pw"), 0);
    cr_assert_eq(auth__scram_client_first_nonce(&c, NULL, "abc", out), 0);
    cr_assert_str_eq(out, "n,,n=,r=abc");
    const int rc = auth_scram_client_final(&c, msg, strlen(msg), out, &why);
    cr_assert(rc == 0 || why);
    return rc;
}

Test(auth_scram, client_refuses_bad_server_first)
{
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA,i=1"), 0);
    cr_assert_eq(client_final_verdict("r=abc,s=AAAA,i=1"), -EINVAL, "nonce not extended");
    cr_assert_eq(client_final_verdict("r=abXdef,s=AAAA,i=1"), -EINVAL, "nonce not ours");
    cr_assert_eq(client_final_verdict("r=abcd f,s=AAAA,i=1"), -EINVAL, "non-printable");
    cr_assert_eq(client_final_verdict("r=abcdef,s=,i=1"), -EINVAL, "empty salt");
    cr_assert_eq(client_final_verdict("r=abcdef,s=A,i=1"), -EINVAL, "bad salt");
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA,i=0"), -EINVAL);
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA,i=10000001"), -EINVAL);
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA,i=99999999999999999999"), -EINVAL);
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA,i=-1"), -EINVAL);
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA,i="), -EINVAL);
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA,i=1,"), -EINVAL);
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA,i=1,x=2"), -EINVAL);
    cr_assert_eq(client_final_verdict("m=x,r=abcdef,s=AAAA,i=1"), -EINVAL);
    cr_assert_eq(client_final_verdict("r=abcdef,i=1,s=AAAA"), -EINVAL);
    cr_assert_eq(client_final_verdict("r=abcdef,s=AAAA"), -EINVAL);
    static char huge[AUTH_SCRAM_INPUT_MAX];
    memset(huge, 'x', sizeof huge - 1);
    memcpy(huge, "r=abc", 5);
    cr_assert_eq(client_final_verdict(huge), -EINVAL, "a nonce too long for client-final");
}

Test(auth_scram, client_refuses_bad_server_final)
{
    auth_scram_client c;
    auth_scram_server s;
    auth_secret sec;
    char final[AUTH_SCRAM_MSG_MAX], out[AUTH_SCRAM_MSG_MAX];
    const char *why = NULL;
    static const char *bad[] = {"v=", "v=AAAA", "x=1", "",
                                "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        started(&s, &c, &sec, final);
        cr_assert_eq(auth_scram_client_verify(&c, bad[i], strlen(bad[i]), &why), -EINVAL, "%s",
                     bad[i]);
        auth_secret_clear(&sec);
    }
    started(&s, &c, &sec, final);
    cr_assert_eq(auth_scram_client_verify(&c, "e=invalid-proof", 15, &why), AUTH_FAIL);
    auth_secret_clear(&sec);
    started(&s, &c, &sec, final);
    const char *forged = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    cr_assert_eq(auth_scram_client_verify(&c, forged, strlen(forged), &why), AUTH_FAIL);
    auth_secret_clear(&sec);
    started(&s, &c, &sec, final);
    cr_assert_eq(auth_scram_server_final(&s, final, strlen(final), out, &why), 0);
    cr_assert_eq(auth_scram_client_verify(&c, out, strlen(out), &why), 0);
    auth_secret_clear(&sec);
}

Test(auth_scram, mongo_user_name)
{
    char user[8];
    const char *why = NULL;
    const char *m = "n,,n=a=2Cb=3Dc,r=xyz";
    cr_assert_eq(auth_scram_parse_user(m, strlen(m), user, sizeof user, &why), 0);
    cr_assert_str_eq(user, "a,b=c");
    static const char *bad[] = {"n,,n=a=2,r=x", "n,,n=a=,r=x", "n,,n=a=2D,r=x", "n,,n=,r=x",
                                "n,,n=abcdefgh,r=x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(auth_scram_parse_user(bad[i], strlen(bad[i]), user, sizeof user, &why),
                     -EINVAL, "%s", bad[i]);

    /* mongo: the name must match the user being authenticated; PostgreSQL ignores it */
    auth_scram_server s;
    char out[AUTH_SCRAM_MSG_MAX];
    cr_assert_eq(auth_scram_server_init(&s, NULL, "alice", seed, true), 0);
    cr_assert_eq(auth_scram_server_first(&s, "n,,n=bob,r=x", 12, out, &why), -EINVAL);
    cr_assert_eq(auth_scram_server_init(&s, NULL, "alice", seed, true), 0);
    cr_assert_eq(auth_scram_server_first(&s, "n,,n=a=2,r=x", 12, out, &why), -EINVAL);
    cr_assert_eq(auth_scram_server_init(&s, NULL, NULL, seed, true), 0);
    cr_assert_eq(auth_scram_server_first(&s, "n,,n=bob,r=x", 12, out, &why), 0);
    cr_assert_str_eq(s.user, "bob");
    cr_assert_eq(auth_scram_server_init(&s, NULL, "alice", seed, false), 0);
    cr_assert_eq(auth_scram_server_first(&s, "n,,n=bob=,r=x", 13, out, &why), 0);
}

/* ---- users file ---- */

static FILE *diag_buf(char **text, size_t *len)
{
    FILE *f = open_memstream(text, len);
    cr_assert_not_null(f);
    return f;
}

Test(auth_userlist, parses_pgbouncer_format)
{
    const char *text = "; comment\n"
                       "# another\n"
                       "\n"
                       "   \t\n"
                       "\"alice\" \"secret\"\n"
                       "\"bob\"\t\"md553f48b7c4b76a86ce72276c5755f217d\"\r\n"
                       "  \"quo\"\"te\" \"pa\"\"ss\" \"\" trailing is ignored\n"
                       "\"carol\" \"" PG_VERIFIER_KAT "\"\n"
                       "\"empty\" \"\"\n"
                       "\"alice\" \"newer\"";
    char *d;
    size_t dlen;
    FILE *diag = diag_buf(&d, &dlen);
    auth_userlist *l;
    cr_assert_eq(auth_userlist_parse(text, strlen(text), "users.txt", &l, diag), 0);
    fclose(diag);
    cr_assert_eq(auth_userlist_count(l), 5);
    cr_assert_str_eq(auth_userlist_find(l, "alice")->text, "newer");
    cr_assert_not_null(strstr(d, "users.txt:10: warning: user \"alice\" listed again"), "%s", d);
    cr_assert_eq(auth_userlist_find(l, "bob")->kind, AUTH_SECRET_MD5);
    cr_assert_str_eq(auth_userlist_find(l, "quo\"te")->text, "pa\"ss");
    cr_assert_eq(auth_userlist_find(l, "carol")->kind, AUTH_SECRET_SCRAM);
    cr_assert_str_eq(auth_userlist_find(l, "empty")->text, "");
    cr_assert_null(auth_userlist_find(l, "dave"));
    cr_assert_null(auth_userlist_find(l, ""));
    auth_userlist_free(l);
    free(d);
}

/* Loads the file at path, or parses text when path is NULL, expecting a failure; the
 * diagnostics (caller frees). */
static char *failed_userlist(const char *path, const char *text, size_t len)
{
    char *d;
    size_t dlen;
    FILE *diag = diag_buf(&d, &dlen);
    auth_userlist *l = (auth_userlist *)1;
    const int rc = path ? auth_userlist_load(path, &l, diag)
                        : auth_userlist_parse(text, len, "u.txt", &l, diag);
    fclose(diag);
    cr_assert_eq(rc, -1, "%s", path ? path : text);
    cr_assert_null(l);
    return d;
}

static void bad_file(const char *text, size_t len, const char *want)
{
    char *d = failed_userlist(NULL, text, len);
    cr_assert_not_null(strstr(d, want), "want \"%s\" in \"%s\"", want, d);
    free(d);
}

Test(auth_userlist, bad_lines_name_file_and_line)
{
    bad_file("\"a\" \"b\"\nalice \"x\"\n", 18, "u.txt:2: expected a quoted user name");
    bad_file("\"a\" \"b\"\n\n\"alice\n", 16, "u.txt:3: unterminated quoted field");
    bad_file("\"alice\" secret\n", 15, "u.txt:1: expected a quoted secret");
    bad_file("\"alice\"\n\"secret\"\n", 17, "u.txt:1: expected a quoted secret");
    bad_file("\"alice\" \"secret\n", 16, "u.txt:1: unterminated quoted field");
    bad_file("\"\" \"secret\"\n", 12, "u.txt:1: empty user name");
    bad_file("\"a\" \"SCRAM-SHA-256$4096:xx\"\n", 28, "u.txt:1: a SCRAM verifier is");
    bad_file("\"a\" \"s\0\"\n", 9, "u.txt:1: NUL byte");
    /* every bad line is reported, not just the first */
    bad_file("x\n\"a\" \"b\"\ny\n", 12, "u.txt:3: expected a quoted user name");

    char big[2100];
    memset(big, 'u', sizeof big);
    big[0] = '"';
    memcpy(big + 257, "\" \"x\"", 5);
    bad_file(big, 262, "u.txt:1: user name longer than 255 bytes");
    memcpy(big, "\"u\" \"", 5);
    memset(big + 5, 'p', 1024);
    big[5 + 1024] = '"';
    bad_file(big, 5 + 1025, "u.txt:1: secret longer than 1023 bytes");
}

Test(auth_userlist, limits_are_inclusive)
{
    char text[1400];
    size_t n = 0;
    text[n++] = '"';
    memset(text + n, 'u', 255), n += 255;
    memcpy(text + n, "\" \"", 3), n += 3;
    memset(text + n, 'p', 1023), n += 1023;
    text[n++] = '"';
    auth_userlist *l;
    cr_assert_eq(auth_userlist_parse(text, n, "u.txt", &l, NULL), 0);
    cr_assert_eq(auth_userlist_count(l), 1);
    auth_userlist_free(l);
}

Test(auth_userlist, load_from_disk)
{
    char path[] = "/tmp/sluice-test-users-XXXXXX";
    const int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("\"alice\" \"secret\"\n", f);
    fclose(f);
    auth_userlist *l;
    cr_assert_eq(auth_userlist_load(path, &l, stderr), 0);
    cr_assert_eq(auth_userlist_find(l, "alice")->kind, AUTH_SECRET_PLAIN);
    auth_userlist_free(l);
    unlink(path);
    char *d = failed_userlist(path, NULL, 0);
    cr_assert_not_null(strstr(d, path));
    free(d);
}

Test(auth_scram, unknown_mongo_user_fails_at_the_proof_for_sha1_too)
{
    /* the mongo front end cannot know a missing user's mechanism: a 20-byte proof fails late */
    auth_scram_server s;
    char out[AUTH_SCRAM_MSG_MAX], m[256];
    const char *why = NULL;
    cr_assert_eq(auth_scram_server_init(&s, NULL, "ghost", seed, true), 0);
    cr_assert_eq(auth_scram_server_first(&s, "n,,n=ghost,r=abc", 16, out, &why), 0);
    snprintf(m, sizeof m, "c=biws,r=%s,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=", s.nonce);
    cr_assert_eq(auth_scram_server_final(&s, m, strlen(m), out, &why), AUTH_FAIL, "%s", why);
}

Test(auth_userlist, empty_file)
{
    auth_userlist *l;
    cr_assert_eq(auth_userlist_parse("", 0, "u.txt", &l, NULL), 0);
    cr_assert_eq(auth_userlist_count(l), 0);
    cr_assert_null(auth_userlist_find(l, "alice"));
    auth_userlist_free(l);
}
