/*
 * scram: the SCRAM exchange (RFC 5802, RFC 7677) as PostgreSQL and MongoDB speak it, both ends.
 * Messages are the bare SCRAM texts (PostgreSQL wraps them in SASL messages, MongoDB in
 * saslStart/saslContinue payloads: the drivers do that).
 *
 * Channel binding (SCRAM-SHA-256-PLUS, RFC 5802 section 6) of type tls-server-end-point
 * (RFC 5929): the binding data is a hash of the server's TLS certificate, which the caller has
 * (gateway/tls.h) and hands over as bytes; this library never sees TLS. A server given binding
 * data supports binding and refuses a client that says "y" (it could bind but thinks the server
 * cannot: someone removed -PLUS from the offer). Without it, "n,," and "y,," are both fine and
 * "p=..." is refused.
 *
 * Buffers: every output is written to a caller's buffer of AUTH_SCRAM_MSG_MAX bytes,
 * NUL-terminated.
 */
#ifndef SLUICE_AUTH_SCRAM_H
#define SLUICE_AUTH_SCRAM_H

#include "auth/auth.h"

#define AUTH_SCRAM_MSG_MAX   512  /* longest message either end builds */
#define AUTH_SCRAM_INPUT_MAX 2048 /* longer peer messages are refused (-EINVAL) */
#define AUTH_CBIND_MAX       64   /* binding data: a certificate hash, SHA-512 at most */

/* Server side. States: first (expects client-first), final (expects client-final), done. */
typedef struct auth_scram_server {
    int step;   /* 0: expects client-first; 1: expects client-final; 2: done */
    bool fake;  /* unknown user: the exchange runs against a made-up verifier */
    bool mongo; /* MongoDB rules: "n=" names the user (see server_first) */
    char cbind; /* client-first's gs2 flag, 'n', 'y' or 'p', echoed in client-final */
    bool plus;  /* the client picked the -PLUS mechanism: it must bind */
    uint8_t cbind_data[AUTH_CBIND_MAX]; /* tls-server-end-point data; cbind_len 0: none */
    size_t cbind_len;
    auth_scram_verifier v;
    char nonce[128]; /* client nonce + server nonce */
    char client_first_bare[AUTH_SCRAM_INPUT_MAX];
    char server_first[AUTH_SCRAM_MSG_MAX];
    uint8_t client_key[AUTH_MAX_KEY]; /* recovered from a correct proof (passthrough login) */
    char user[256];                   /* the "n=" name of a MongoDB client-first (unescaped) */
} auth_scram_server;

/* The user name ("n=", unescaped) of a client-first message, for MongoDB, whose clients name
 * themselves there. 0, or -EINVAL with *why. */
int auth_scram_parse_user(const char *msg, size_t len, char *user, size_t cap, const char **why);

/* Starts an exchange against v; v NULL means an unknown user: a verifier is derived from
 * fake_seed (a per-process random secret) and the user name, so the same user always gets the
 * same salt and the exchange fails only at the proof, as PostgreSQL does (with a SHA-1 proof too:
 * a MongoDB client may have picked SCRAM-SHA-1 for a user that does not exist). */
int auth_scram_server_init(auth_scram_server *s, const auth_scram_verifier *v, const char *user,
                           const uint8_t fake_seed[32], bool mongo);
/* Channel binding for the exchange, after init and before server_first: data (len bytes,
 * copied; NULL and 0 when the connection has none) is the connection's tls-server-end-point data,
 * and plus says the client picked the -PLUS mechanism, which needs data. 0, or -EINVAL with *why
 * (plus without data, or data too long). Without this call the server does not bind. */
int auth_scram_server_bind(auth_scram_server *s, bool plus, const uint8_t *data, size_t len,
                           const char **why);
/* client-first in, server-first out. 0, or -EINVAL with *why (a protocol error), or -EACCES
 * with *why when the gs2 flag is "y" but the server supports binding (PostgreSQL answers that
 * with 28000, "SCRAM channel binding negotiation error"). PostgreSQL
 * ignores the "n=" name (the startup packet names the user); with mongo it must be a valid
 * saslname, it is stored unescaped in s->user, and it must equal the user given to init if one
 * was. Extensions (in either client message) are refused: no client sends one. */
int auth_scram_server_first(auth_scram_server *s, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why);
/* client-final in; on a correct proof 0 and server-final ("v=...") out, with s->client_key set;
 * AUTH_FAIL for a wrong proof or a fake exchange; -EINVAL with *why for a malformed message or a
 * wrong nonce; -EACCES with *why when the client bound and its binding data is not ours (checked
 * before the proof, as PostgreSQL does). */
int auth_scram_server_final(auth_scram_server *s, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why);

/* Client side, for logging in to a server: with the password, or with the ClientKey recovered
 * from a client's proof and the verifier's ServerKey (SCRAM passthrough). */
typedef struct auth_scram_client {
    int step;
    bool have_key; /* client_key/server_key given instead of a password */
    bool sha1;
    char cbind;          /* gs2 flag sent: 'n', or 'y'/'p' after auth_scram_client_bind */
    char password[1024]; /* SASLprep'd */
    uint8_t client_key[AUTH_MAX_KEY];
    uint8_t server_key[AUTH_MAX_KEY];
    char nonce[128];
    char client_first_bare[AUTH_SCRAM_MSG_MAX];
    uint8_t expect_sig[AUTH_MAX_KEY];
    uint8_t cbind_data[AUTH_CBIND_MAX];
    size_t cbind_len;
} auth_scram_client;

int auth_scram_client_init_password(auth_scram_client *c, const char *password);
int auth_scram_client_init_keys(auth_scram_client *c, const uint8_t client_key[AUTH_SHA256_LEN],
                                const uint8_t server_key[AUTH_SHA256_LEN]);
/* For a connection with binding data (len bytes, copied: the server certificate's
 * tls-server-end-point hash), after init and before client_first: with plus (the server offered
 * the -PLUS mechanism, which the caller then names) the exchange binds, "p=tls-server-end-point";
 * without it the client says "y" (it could bind, the server seems not to). 0 or -EINVAL. */
int auth_scram_client_bind(auth_scram_client *c, bool plus, const uint8_t *data, size_t len);
/* client-first out ("n,,n=,r=<nonce>": PostgreSQL ignores the name). */
int auth_scram_client_first(auth_scram_client *c, char out[AUTH_SCRAM_MSG_MAX]);
/* server-first in, client-final out. -EINVAL with *why for a malformed or unsafe challenge
 * (a nonce that does not extend ours, fewer than 1 or more than 10^7 iterations). */
int auth_scram_client_final(auth_scram_client *c, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why);
/* server-final in: 0 when the server proved it knows the verifier, AUTH_FAIL otherwise. */
int auth_scram_client_verify(auth_scram_client *c, const char *msg, size_t len, const char **why);

#endif
