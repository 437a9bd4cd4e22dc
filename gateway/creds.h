/*
 * gw_creds: a cache of SCRAM credentials derived from plaintext secrets (see creds.c for why).
 * Pure code (no loop), used by the protocol cores of both front ends.
 */
#ifndef SLUICE_GW_CREDS_H
#define SLUICE_GW_CREDS_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/auth.h"

typedef struct gw_creds gw_creds;

/* NULL when out of memory. */
gw_creds *gw_creds_new(void);
void gw_creds_free(gw_creds *c);
/* The verifier of user's password for a mechanism (sha1: MongoDB's SCRAM-SHA-1, else
 * SCRAM-SHA-256), derived on the first call with a random salt of salt_len bytes and iterations,
 * then kept while password, salt_len and iterations stay the same. 0 with *v, -EINVAL for a
 * salt over AUTH_MAX_SALT, -ENOMEM or -EIO (no random bytes). */
int gw_creds_get(gw_creds *c, const char *user, const char *password, bool sha1, size_t salt_len,
                 int iterations, auth_scram_verifier *v);

#endif
