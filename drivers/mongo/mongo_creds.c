/*
 * mongo_creds: the SCRAM credentials of auth_file's plaintext users, derived once per user and
 * mechanism and kept on the front. Deriving is a PBKDF2 run of 10000-15000 iterations, on the
 * loop: kept, a login costs a few HMACs, and a stranger naming a user cannot make Sluice run
 * PBKDF2 at will. Kept, the salt a user is offered also stays the same from one attempt to the
 * next, as a stored credential's does (and an unknown user's fake one): a salt that changed at
 * every attempt would tell real users from unknown ones.
 *
 * An entry holds the secret it was derived from and is derived again when the secret changes
 * (a reload); all go when the users list itself is replaced.
 *
 * Core (mongo_core.h): no I/O.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "drivers/mongo/mongo_core.h"

typedef struct mongo_cred {
    gw_hnode hnode; /* front->creds, by user and mechanism */
    bool sha1;
    char *secret; /* the plaintext it was derived from */
    auth_scram_verifier v;
    char user[]; /* NUL-terminated */
} mongo_cred;

void mongo__creds_init(mongo_front *f)
{
    gw_htable_init(&f->creds);
}

static void cred_free(gw_hnode *n, void *arg)
{
    mongo_front *f = arg;
    mongo_cred *cr = gw_container_of(n, mongo_cred, hnode);
    gw_htable_remove(&f->creds, n);
    OPENSSL_cleanse(cr->secret, strlen(cr->secret));
    free(cr->secret);
    OPENSSL_cleanse(&cr->v, sizeof cr->v);
    free(cr);
}

void mongo__creds_free(mongo_front *f)
{
    gw_htable_each(&f->creds, cred_free, f);
    gw_htable_free(&f->creds);
    gw_htable_init(&f->creds);
}

int mongo__creds_get(mongo_front *f, const struct auth_userlist *users, const char *user,
                     const char *password, bool sha1, struct auth_scram_verifier *v)
{
    if (f->creds_of != users) {
        mongo__creds_free(f);
        f->creds_of = users; /* compared only: never read through */
    }
    size_t ulen = strlen(user);
    uint64_t hash = gw_hash_bytes(user, ulen) ^ sha1;
    for (gw_hnode *n = gw_htable_chain(&f->creds, hash); n; n = n->next) {
        mongo_cred *cr = gw_container_of(n, mongo_cred, hnode);
        if (n->hash != hash || cr->sha1 != sha1 || strcmp(cr->user, user) != 0)
            continue;
        if (strcmp(cr->secret, password) == 0) {
            *v = cr->v;
            return 0;
        }
        cred_free(n, f); /* the password changed */
        break;
    }
    mongo_cred *cr = calloc(1, sizeof *cr + ulen + 1);
    if (!cr)
        return -ENOMEM;
    memcpy(cr->user, user, ulen + 1);
    cr->sha1 = sha1;
    uint8_t salt[MONGO_SHA256_SALT];
    size_t salt_len = sha1 ? MONGO_SHA1_SALT : MONGO_SHA256_SALT;
    int rc = RAND_bytes(salt, (int)salt_len) == 1 ? 0 : -EIO;
    if (rc == 0)
        rc = auth_scram_derive(sha1, user, password, salt, salt_len,
                               sha1 ? MONGO_SHA1_ITERATIONS : MONGO_SHA256_ITERATIONS, &cr->v);
    if (rc == 0 && !(cr->secret = strdup(password)))
        rc = -ENOMEM;
    if (rc == 0)
        rc = gw_htable_insert(&f->creds, &cr->hnode, hash);
    if (rc != 0) {
        if (cr->secret) {
            OPENSSL_cleanse(cr->secret, strlen(cr->secret));
            free(cr->secret);
        }
        OPENSSL_cleanse(&cr->v, sizeof cr->v);
        free(cr);
        return rc;
    }
    *v = cr->v;
    return 0;
}
