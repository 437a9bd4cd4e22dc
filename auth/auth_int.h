/*
 * auth_int.h: helpers shared by the auth files and their tests; not part of the auth API.
 */
#ifndef SLUICE_AUTH_INT_H
#define SLUICE_AUTH_INT_H

#include "auth/auth.h"
#include "auth/scram.h"

/* ---- base64 (RFC 4648 alphabet, padded), strict: no whitespace, no bytes after padding ---- */

/* Characters auth__b64_encode writes for n bytes, without the NUL. */
#define AUTH__B64_LEN(n) ((((n) + 2) / 3) * 4)

/* Writes the encoding and a NUL into out (cap bytes). Its length, or -EINVAL when it does not
 * fit. */
int auth__b64_encode(const uint8_t *in, size_t n, char *out, size_t cap);
/* Decodes len characters into out (cap bytes). The decoded length, or -EINVAL for a malformed
 * text or one that decodes to more than cap bytes. */
int auth__b64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* ---- digests: SHA-256, or SHA-1 for MongoDB's SCRAM-SHA-1 ---- */

static inline size_t auth__key_len(bool sha1)
{
    return sha1 ? AUTH_SHA1_LEN : AUTH_SHA256_LEN;
}
/* out = H(in); out holds auth__key_len(sha1) bytes. 0, or -ENOMEM when libcrypto fails. */
int auth__hash(bool sha1, const void *in, size_t n, uint8_t *out);
/* out = HMAC(key, in). 0, or -ENOMEM when libcrypto fails. */
int auth__hmac(bool sha1, const uint8_t *key, size_t key_len, const void *in, size_t n,
               uint8_t *out);
/* v's keys from a password already prepared (SASLprep'd, or MongoDB's md5 digest), the salt and
 * iterations copied into v. 0, -EINVAL (bad salt or iterations) or -ENOMEM. */
int auth__scram_keys(bool sha1, const char *password, const uint8_t *salt, size_t salt_len,
                     int iterations, auth_scram_verifier *v);

/* SCRAM's printable characters (RFC 5802 "printable": %x21-2B / %x2D-7E), which a nonce is
 * made of. */
bool auth__scram_printable(const char *s, size_t n);

/* A peer's message is at most AUTH_SCRAM_INPUT_MAX bytes and has no NUL; else *why. */
bool auth__scram_input_ok(const char *msg, size_t len, const char **why);
/* The value of attribute `name` ("x=") at *p, up to the next ',' or end; *p moves past the
 * ','. false when *p does not start with the attribute. */
bool auth__scram_attr(const char **p, const char *end, char name, const char **val, size_t *vlen);
/* val (vlen bytes) is the string want. */
bool auth__scram_is(const char *val, size_t vlen, const char *want);

/* The one channel-binding type spoken (RFC 5929), as the gs2 header names it. */
#define AUTH__CBIND_TYPE "tls-server-end-point"
/* Longest base64 text of a cbind-input: the gs2 header "p=tls-server-end-point,," and the data */
#define AUTH__CBIND_B64_MAX AUTH__B64_LEN(sizeof "p=" AUTH__CBIND_TYPE ",," - 1 + AUTH_CBIND_MAX)

/* The gs2 header of flag ('n', 'y', or 'p' for AUTH__CBIND_TYPE; no authzid). */
const char *auth__scram_gs2_header(char flag);
/* c= of client-final: base64 of the gs2 header of flag and, for 'p', the binding data (len
 * bytes). Writes a NUL-terminated text of at most AUTH__CBIND_B64_MAX characters; 0 or
 * -EINVAL (data too long). */
int auth__scram_cbind_input(char flag, const uint8_t *data, size_t len,
                            char out[AUTH__CBIND_B64_MAX + 1]);

/* A client-first message, parsed: pointers into the message. */
typedef struct auth__scram_first {
    char cbind;             /* gs2 flag: 'n', 'y' or 'p' */
    const char *cbind_type; /* 'p': the binding type asked for (not checked here) */
    size_t cbind_type_len;
    const char *bare; /* client-first-message-bare: "n=...,r=..." */
    size_t bare_len;
    const char *user; /* the "n=" value, still escaped */
    size_t user_len;
    const char *nonce; /* printable, not empty */
    size_t nonce_len;
} auth__scram_first;

/* Parses client-first strictly: gs2 header "n,,", "y,," or "p=<type>,," (no authzid), no "m="
 * extension, "n=" then "r=" and nothing after. Whether the flag fits the mechanism and the
 * connection is the server's question. 0, or -EINVAL with *why. */
int auth__scram_parse_first(const char *msg, size_t len, auth__scram_first *f, const char **why);

/* ---- SCRAM with chosen nonces, for known-answer tests; the API calls these with random ones
 * (server: 18 bytes base64'd, as PostgreSQL; client: the same). ---- */
int auth__scram_server_first_nonce(auth_scram_server *s, const char *msg, size_t len,
                                   const char *server_nonce, char out[AUTH_SCRAM_MSG_MAX],
                                   const char **why);
/* user goes into "n=" (escaped); NULL leaves it empty, as auth_scram_client_first does. */
int auth__scram_client_first_nonce(auth_scram_client *c, const char *user, const char *nonce,
                                   char out[AUTH_SCRAM_MSG_MAX]);
/* A fresh nonce: 18 random bytes, base64'd (24 characters and a NUL). 0 or -ENOMEM. */
int auth__scram_random_nonce(char out[AUTH__B64_LEN(18) + 1]);

/* ---- the file loaders ---- */
/* The whole regular file at path (anything else is -EINVAL), caller frees *text (not
 * NUL-terminated). 0, or negative errno (errno set too). */
int auth__read_file(const char *path, char **text, size_t *len);
void auth__diag(FILE *diag, const char *name, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- hba file: the words of a line and the name columns (hba_names.c) ---- */

/* A database or user column. */
typedef struct auth__hba_names {
    bool all;
    bool sameuser; /* database column: the database named like the user */
    char **name;   /* literal names, from the line and its @files */
    size_t n, cap;
} auth__hba_names;

typedef struct auth__hba_item {
    char *s;     /* unquoted, NUL-terminated, inside the line's copy */
    bool quoted; /* a quoted item is a name, never a keyword */
    int field;
} auth__hba_item;

typedef struct auth__hba_toks {
    auth__hba_item *it;
    size_t n, cap;
    int fields;
    char *buf; /* the unquoted text of every item */
} auth__hba_toks;

/* Where a line comes from, for diagnostics and for @file names (relative to its directory). */
typedef struct auth__hba_src {
    FILE *diag;
    const char *name;
    int line;
    int depth;
} auth__hba_src;

/* Splits [p, end) into items; '#' outside quotes ends the line. 0, or -EINVAL/-ENOMEM with *why.
 * t->buf must hold end - p + 1 bytes. */
int auth__hba_tokenize(const char *p, const char *end, auth__hba_toks *t, const char **why);
/* Adds one item of a database (db) or user column: a keyword, a name or an @file. 0, or
 * -EINVAL (diagnosed) / -ENOMEM. */
int auth__hba_names_item(auth__hba_names *nm, const auth__hba_item *it, bool db,
                         const auth__hba_src *src);
/* name is in the column; user is the client's user, for sameuser (NULL in the user column). */
bool auth__hba_names_match(const auth__hba_names *nm, const char *name, const char *user);
void auth__hba_names_free(auth__hba_names *nm);

#endif
