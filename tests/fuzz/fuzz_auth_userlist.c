/*
 * Fuzzes the users file parser over arbitrary text: a list that loads answers lookups, and
 * every secret it holds is one of the three kinds, with a well-formed verifier for SCRAM.
 */
#include <string.h>

#include "auth/auth.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *diag;
    if (!diag)
        diag = fopen("/dev/null", "w");
    auth_userlist *l = (auth_userlist *)1;
    const int rc = auth_userlist_parse((const char *)data, size, "fuzz.txt", &l, diag);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(rc == 0 ? l != NULL : l == NULL);
    if (rc != 0)
        return 0;
    static const char *const users[] = {"alice", "bob", "", "a\"b", "postgres"};
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        const auth_secret *s = auth_userlist_find(l, users[i]);
        if (!s)
            continue;
        FUZZ_CHECK(s->text != NULL);
        FUZZ_CHECK(s->kind == AUTH_SECRET_PLAIN || s->kind == AUTH_SECRET_MD5 ||
                   s->kind == AUTH_SECRET_SCRAM);
        if (s->kind == AUTH_SECRET_MD5) {
            const uint8_t salt[4] = {1, 2, 3, 4};
            FUZZ_CHECK(strlen(s->text) == AUTH_MD5_LEN);
            FUZZ_CHECK(auth_md5_check(s, users[i], salt, "md5") == AUTH_FAIL);
        }
        if (s->kind == AUTH_SECRET_SCRAM)
            FUZZ_CHECK(s->scram.iterations > 0 && s->scram.salt_len > 0 &&
                       s->scram.salt_len <= AUTH_MAX_SALT);
    }
    FUZZ_CHECK(auth_userlist_count(l) > 0 || auth_userlist_find(l, "alice") == NULL);
    auth_userlist_free(l);
    return 0;
}
