/*
 * scram: the SCRAM exchange (RFC 5802, RFC 7677) as PostgreSQL and MongoDB speak it, both ends.
 * Messages are the bare SCRAM texts (PostgreSQL wraps them in SASL messages, MongoDB in
 * saslStart/saslContinue payloads: the drivers do that). No channel binding yet: the client-first
 * gs2 header must be "n,," or "y,," (a client that could bind but thinks the server cannot);
 * "p=..." is refused, since no -PLUS mechanism is offered without TLS.
 *
 * Buffers: every output is written to a caller's buffer of AUTH_SCRAM_MSG_MAX bytes,
 * NUL-terminated.
 */
#ifndef SLUICE_AUTH_SCRAM_H
#define SLUICE_AUTH_SCRAM_H

#include "auth/auth.h"

#define AUTH_SCRAM_MSG_MAX   512  /* longest message either end builds */
#define AUTH_SCRAM_INPUT_MAX 2048 /* longer peer messages are refused (-EINVAL) */

/* Server side. States: first (expects client-first), final (expects client-final), done. */
typedef struct auth_scram_server {
    int step;   /* 0: expects client-first; 1: expects client-final; 2: done */
    bool fake;  /* unknown user: the exchange runs against a made-up verifier */
    bool mongo; /* MongoDB rules: "n=" names the user (see server_first) */
    char cbind; /* client-first's gs2 flag, 'n' or 'y', echoed in client-final */
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
/* client-first in, server-first out. 0, or -EINVAL with *why (a protocol error). PostgreSQL
 * ignores the "n=" name (the startup packet names the user); with mongo it must be a valid
 * saslname, it is stored unescaped in s->user, and it must equal the user given to init if one
 * was. Extensions (in either client message) are refused: no client sends one. */
int auth_scram_server_first(auth_scram_server *s, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why);
/* client-final in; on a correct proof 0 and server-final ("v=...") out, with s->client_key set;
 * AUTH_FAIL for a wrong proof or a fake exchange; -EINVAL with *why for a malformed message or a
 * wrong nonce. */
int auth_scram_server_final(auth_scram_server *s, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why);

/* Client side, for logging in to a server: with the password, or with the ClientKey recovered
 * from a client's proof and the verifier's ServerKey (SCRAM passthrough). */
typedef struct auth_scram_client {
    int step;
    bool have_key; /* client_key/server_key given instead of a password */
    bool sha1;
    char password[1024]; /* SASLprep'd */
    uint8_t client_key[AUTH_MAX_KEY];
    uint8_t server_key[AUTH_MAX_KEY];
    char nonce[128];
    char client_first_bare[AUTH_SCRAM_MSG_MAX];
    uint8_t expect_sig[AUTH_MAX_KEY];
} auth_scram_client;

int auth_scram_client_init_password(auth_scram_client *c, const char *password);
int auth_scram_client_init_keys(auth_scram_client *c, const uint8_t client_key[AUTH_SHA256_LEN],
                                const uint8_t server_key[AUTH_SHA256_LEN]);
/* client-first out ("n,,n=,r=<nonce>": PostgreSQL ignores the name). */
int auth_scram_client_first(auth_scram_client *c, char out[AUTH_SCRAM_MSG_MAX]);
/* server-first in, client-final out. -EINVAL with *why for a malformed or unsafe challenge
 * (a nonce that does not extend ours, fewer than 1 or more than 10^7 iterations). */
int auth_scram_client_final(auth_scram_client *c, const char *msg, size_t len,
                            char out[AUTH_SCRAM_MSG_MAX], const char **why);
/* server-final in: 0 when the server proved it knows the verifier, AUTH_FAIL otherwise. */
int auth_scram_client_verify(auth_scram_client *c, const char *msg, size_t len, const char **why);

#endif
