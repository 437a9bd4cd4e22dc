/*
 * gw_creds: SCRAM credentials derived from the plaintext secrets of a users file, derived once per
 * user and mechanism and kept. Deriving is a PBKDF2 run of thousands of iterations on the event
 * loop: kept, a login costs a few HMACs, and a stranger naming a user cannot make Sluice run
 * PBKDF2 at will. Kept, the salt a user is offered also stays the same from one attempt to the
 * next, as a stored verifier's does (and an unknown user's fake one): a salt that changed at
 * every attempt would tell real users from unknown ones.
 *
 * An entry remembers the plaintext it came from and is derived again when that changes (a
 * reload of the users file). Both front ends keep one: PostgreSQL's SCRAM-SHA-256 and
 * MongoDB's SCRAM-SHA-256 and SCRAM-SHA-1 logins of users the file gives in plaintext.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "gateway/creds.h"
#include "gateway/htable.h"
#include "gateway/list.h"

typedef struct cred {
    gw_hnode hnode; /* by user and mechanism */
    bool sha1;
    char *secret; /* the plaintext it was derived from */
    auth_scram_verifier v;
    char user[]; /* NUL-terminated */
} cred;

struct gw_creds {
    gw_htable t;
};

gw_creds *gw_creds_new(void)
{
    gw_creds *c = calloc(1, sizeof *c);
    if (c)
        gw_htable_init(&c->t);
    return c;
}

static void cred_free(gw_hnode *n, void *arg)
{
    gw_creds *c = arg;
    cred *cr = gw_container_of(n, cred, hnode);
    gw_htable_remove(&c->t, n);
    if (cr->secret) {
        OPENSSL_cleanse(cr->secret, strlen(cr->secret));
        free(cr->secret);
    }
    OPENSSL_cleanse(cr, sizeof *cr);
    free(cr);
}

void gw_creds_free(gw_creds *c)
{
    if (!c)
        return;
    gw_htable_each(&c->t, cred_free, c);
    gw_htable_free(&c->t);
    free(c);
}

int gw_creds_get(gw_creds *c, const char *user, const char *password, bool sha1, size_t salt_len,
                 int iterations, auth_scram_verifier *v)
{
    if (salt_len > AUTH_MAX_SALT)
        return -EINVAL;
    size_t ulen = strlen(user);
    uint64_t hash = gw_hash_bytes(user, ulen) ^ sha1;
    for (gw_hnode *n = gw_htable_chain(&c->t, hash); n; n = n->next) {
        cred *cr = gw_container_of(n, cred, hnode);
        if (n->hash != hash || cr->sha1 != sha1 || strcmp(cr->user, user) != 0)
            continue;
        if (strcmp(cr->secret, password) == 0 && cr->v.salt_len == salt_len &&
            cr->v.iterations == iterations) {
            *v = cr->v;
            return 0;
        }
        cred_free(n, c); /* the password changed */
        break;
    }
    cred *cr = calloc(1, sizeof *cr + ulen + 1);
    if (!cr)
        return -ENOMEM;
    memcpy(cr->user, user, ulen + 1);
    cr->sha1 = sha1;
    uint8_t salt[AUTH_MAX_SALT];
    int rc = RAND_bytes(salt, (int)salt_len) == 1 ? 0 : -EIO;
    if (rc == 0)
        rc = auth_scram_derive(sha1, user, password, salt, salt_len, iterations, &cr->v);
    if (rc == 0 && !(cr->secret = strdup(password)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = gw_htable_insert(&c->t, &cr->hnode, hash);
    if (rc != 0) {
        if (cr->secret) {
            OPENSSL_cleanse(cr->secret, strlen(cr->secret));
            free(cr->secret);
        }
        OPENSSL_cleanse(cr, sizeof *cr);
        free(cr);
        return rc;
    }
    *v = cr->v;
    return 0;
}
