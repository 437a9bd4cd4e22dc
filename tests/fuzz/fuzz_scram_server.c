/*
 * Fuzzes the server end of SCRAM: client-first then client-final from the input, against a
 * fixed verifier (the RFC examples' "pencil") and a fixed server nonce, so the seeds (the RFC
 * exchanges) reach a correct proof and the fuzzer can mutate from there. Flags add channel
 * binding: data the connection has, and the -PLUS mechanism picked.
 */
#include <errno.h>
#include <string.h>

#include "auth/auth_int.h"
#include "tests/fuzz/fuzz_scram.h"

static const uint8_t seed[32] = {7};

static void verifier(bool sha1, auth_scram_verifier *v)
{
    /* the salts of RFC 5802 and RFC 7677 */
    static const char *const salt64[2] = {"W22ZaJ0SNY7soEsUEjb6gQ==", "QSXCR+Q6sek8bf92"};
    uint8_t salt[AUTH_MAX_SALT];
    const int n = auth__b64_decode(salt64[sha1], strlen(salt64[sha1]), salt, sizeof salt);
    FUZZ_CHECK(n > 0);
    FUZZ_CHECK(auth__scram_keys(sha1, "pencil", salt, (size_t)n, 4096, v) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static auth_scram_verifier v[2];
    static bool ready;
    if (!ready) {
        verifier(false, &v[0]);
        verifier(true, &v[1]);
        ready = true;
    }
    fuzz_scram_input in;
    if (!fuzz_scram_split(data, size, &in))
        return 0;
    const bool sha1 = in.flags & FUZZ_SCRAM_SHA1, mongo = in.flags & FUZZ_SCRAM_MONGO;
    const bool fake = in.flags & FUZZ_SCRAM_FAKE, bind = in.flags & FUZZ_SCRAM_BIND;
    const bool plus = bind && (in.flags & FUZZ_SCRAM_PLUS);
    auth_scram_server s;
    FUZZ_CHECK(auth_scram_server_init(&s, fake ? NULL : &v[sha1], mongo ? "user" : NULL, seed,
                                      mongo) == 0);
    char out[AUTH_SCRAM_MSG_MAX];
    const char *why = NULL;
    uint8_t cbind[32];
    for (size_t i = 0; i < sizeof cbind; i++)
        cbind[i] = (uint8_t)i;
    FUZZ_CHECK(
        auth_scram_server_bind(&s, plus, bind ? cbind : NULL, bind ? sizeof cbind : 0, &why) == 0);
    const char *snonce = sha1 ? "3rfcNHYJY1ZVvWVs7j" : "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    int rc = auth__scram_server_first_nonce(&s, in.first, in.first_len, snonce, out, &why);
    /* -EACCES (a downgrade) only where the server could bind and the client said "y" */
    FUZZ_CHECK(rc == 0 || (rc == -EINVAL && why) ||
               (rc == -EACCES && why && bind && !plus && in.first_len && in.first[0] == 'y'));
    if (rc != 0)
        return 0;
    FUZZ_CHECK(plus ? s.cbind == 'p' : s.cbind != 'p');
    FUZZ_CHECK(strnlen(out, sizeof out) < sizeof out && strncmp(out, "r=", 2) == 0);
    FUZZ_CHECK(s.step == 1);
    why = NULL;
    rc = auth_scram_server_final(&s, in.second, in.second_len, out, &why);
    FUZZ_CHECK(rc == 0 || ((rc == -EINVAL || rc == AUTH_FAIL) && why) ||
               (rc == -EACCES && why && plus));
    FUZZ_CHECK(s.step == 2);
    FUZZ_CHECK(!(rc == 0 && fake));
    if (rc == 0)
        FUZZ_CHECK(strnlen(out, sizeof out) < sizeof out && strncmp(out, "v=", 2) == 0);
    return 0;
}
