/*
 * auth: secrets, the users file and the hba file, shared by both front ends. Pure code: no I/O
 * besides reading the files named to the loaders, no libuv, no globals. Crypto comes from
 * OpenSSL's libcrypto only (HMAC, SHA-1/SHA-256, MD5, PBKDF2, RAND_bytes, CRYPTO_memcmp).
 *
 * Error convention: 0 on success, negative on failure (-ENOMEM for memory; -EINVAL for input
 * that does not parse; AUTH_FAIL for credentials that do not match).
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AUTH_FAIL (-1000) /* the credentials were well formed and wrong */

#define AUTH_SHA256_LEN 32
#define AUTH_SHA1_LEN   20
#define AUTH_MAX_KEY    32 /* the larger of the two digest lengths */
#define AUTH_MAX_SALT   64 /* bytes of salt a verifier may carry */
#define AUTH_MD5_LEN    35 /* "md5" + 32 hex digits, without the NUL */

/* A SCRAM verifier: what PostgreSQL stores in pg_authid.rolpassword for SCRAM-SHA-256
 * ("SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>"), and what
 * MongoDB stores for its SCRAM credentials (same derivation; SHA-1 for SCRAM-SHA-1). */
typedef struct auth_scram_verifier {
    bool sha1; /* SCRAM-SHA-1 (MongoDB only); else SCRAM-SHA-256 */
    int iterations;
    uint8_t salt[AUTH_MAX_SALT];
    size_t salt_len;
    uint8_t stored_key[AUTH_MAX_KEY]; /* H(ClientKey) */
    uint8_t server_key[AUTH_MAX_KEY]; /* HMAC(SaltedPassword, "Server Key") */
} auth_scram_verifier;

typedef enum auth_secret_kind {
    AUTH_SECRET_PLAIN, /* the password itself */
    AUTH_SECRET_MD5,   /* "md5" + hex(md5(password || user)), PostgreSQL's md5 hash */
    AUTH_SECRET_SCRAM, /* a SCRAM-SHA-256 verifier */
} auth_secret_kind;

/* One user's stored secret. text is the line's secret as written (plaintext, md5 hash or the
 * verifier string); scram is filled when kind is AUTH_SECRET_SCRAM. */
typedef struct auth_secret {
    auth_secret_kind kind;
    char *text;
    auth_scram_verifier scram;
} auth_secret;

/* Classifies and decodes text into *out (out->text is a copy the caller frees with
 * auth_secret_clear). 0, -EINVAL with *why set for a malformed verifier, or -ENOMEM. */
int auth_secret_parse(const char *text, auth_secret *out, const char **why);
void auth_secret_clear(auth_secret *s);

/* ---- Users file (PgBouncer's userlist.txt: `"user" "secret"` per line; "" escapes a quote
 * inside a field; lines starting with ';' or '#' and blank lines are ignored). ---- */
typedef struct auth_userlist auth_userlist;

/* Parses the file at path; every problem goes to diag as "path:line: message". 0 and *out
 * (caller frees), or -1 (nothing stored). A user listed twice: the later line wins, with a
 * warning. */
int auth_userlist_load(const char *path, auth_userlist **out, FILE *diag);
/* The same from memory; name stands for the path in diagnostics. */
int auth_userlist_parse(const char *text, size_t len, const char *name, auth_userlist **out,
                        FILE *diag);
/* The user's secret, or NULL. The pointer lives as long as the list. */
const auth_secret *auth_userlist_find(const auth_userlist *l, const char *user);
size_t auth_userlist_count(const auth_userlist *l);
void auth_userlist_free(auth_userlist *l);

/* ---- md5 (PostgreSQL's AUTH_REQ_MD5) ---- */

/* out = "md5" + hex(md5(password || user)), NUL-terminated. */
void auth_md5_hash(const char *password, const char *user, char out[AUTH_MD5_LEN + 1]);
/* The response to a server's salt given the stored md5 hash: "md5" + hex(md5(hash_hex || salt)),
 * where hash_hex is the 32 digits after "md5". */
void auth_md5_response(const char *md5_hash, const uint8_t salt[4], char out[AUTH_MD5_LEN + 1]);
/* Checks a client's md5 response against a stored secret (plaintext or md5 hash; a SCRAM secret
 * cannot check md5 and fails) in constant time. 0 or AUTH_FAIL. */
int auth_md5_check(const auth_secret *s, const char *user, const uint8_t salt[4],
                   const char *response);

/* ---- Plaintext check (auth_type plain / hba "password") against any stored secret: plaintext
 * compared in constant time, md5 recomputed, a SCRAM verifier recomputed with its salt and
 * iterations. 0 or AUTH_FAIL. ---- */
int auth_plain_check(const auth_secret *s, const char *user, const char *password);

/* ---- Verifiers ---- */

/* SASLprep (RFC 4013) of a UTF-8 password with PostgreSQL's rule: a password that is not valid
 * UTF-8 or that SASLprep rejects is used as its raw bytes. Caller frees *out. 0 or -ENOMEM. */
int auth_saslprep(const char *password, char **out);
/* Builds a SCRAM-SHA-256 verifier from a password (SASLprep applied, random 16-byte salt,
 * iterations (4096 when 0)). Caller frees *out, the "SCRAM-SHA-256$..." string. */
int auth_scram_make_verifier(const char *password, int iterations, char **out);
/* Derives verifier v from a password with the given salt and iterations. sha1 selects MongoDB's
 * SCRAM-SHA-1, whose password is first hex(md5(user ":mongo:" password)) and not SASLprep'd;
 * SCRAM-SHA-256 applies SASLprep (user is unused then). */
int auth_scram_derive(bool sha1, const char *user, const char *password, const uint8_t *salt,
                      size_t salt_len, int iterations, auth_scram_verifier *v);

/* ---- hba file (the pg_hba.conf subset PgBouncer accepts) ---- */
typedef struct auth_hba auth_hba;

typedef enum auth_method {
    AUTH_M_TRUST,
    AUTH_M_REJECT,
    AUTH_M_PASSWORD, /* cleartext password, "password" in the hba file, auth_type plain */
    AUTH_M_MD5,      /* md5, or SCRAM when the stored secret is a verifier (as PostgreSQL) */
    AUTH_M_SCRAM,    /* scram-sha-256 */
    AUTH_M_CERT,     /* the client certificate's CN is the user (needs TLS) */
} auth_method;

/* What a client is, for matching. addr is NULL for a Unix-socket client (type `local`). */
typedef struct auth_hba_client {
    const struct sockaddr *addr;
    bool tls;
    const char *database;
    const char *user;
} auth_hba_client;

/* Parses the file at path (diagnostics as for the users file; @file names are read relative to
 * the hba file's directory). 0 and *out, or -1. */
int auth_hba_load(const char *path, auth_hba **out, FILE *diag);
int auth_hba_parse(const char *text, size_t len, const char *name, auth_hba **out, FILE *diag);
/* The method of the first line that matches, 0 with *m (and *line, the line's number, when line
 * is not NULL), or AUTH_FAIL when no line matches (the client gets 28000: "no pg_hba.conf entry
 * for host ..."). A Unix-socket client (addr NULL or AF_UNIX) matches only `local` lines; a TCP
 * client only host lines (hostssl needs tls, hostnossl needs !tls) whose address matches; an
 * IPv4-mapped IPv6 address (a dual-stack listener's IPv4 client) is matched as IPv4. `sameuser`
 * matches the database named like the user; `replication` matches no client. Unlike PgBouncer,
 * which skips a line it cannot parse, the loaders refuse the whole file: a skipped `reject` line
 * would let clients in. */
int auth_hba_match(const auth_hba *h, const auth_hba_client *c, auth_method *m, int *line);
void auth_hba_free(auth_hba *h);

#endif
