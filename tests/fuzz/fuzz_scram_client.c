/*
 * Fuzzes the client end of SCRAM: server-first then server-final from the input, after a
 * client-first with the RFC examples' client nonce, logging in with the password "pencil" or
 * with the keys derived from it (passthrough); with the binding flags, over a connection with
 * binding data, offered -PLUS or not.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_int.h"
#include "tests/fuzz/fuzz_scram.h"

/* PBKDF2 runs as many rounds as the server asks (up to 10^7, seconds of work): a password
 * login is only tried when the input asks for few. */
static bool cheap(const fuzz_scram_input *in)
{
    for (size_t i = 0; i + 3 <= in->first_len; i++)
        if (memcmp(in->first + i, ",i=", 3) == 0) {
            long it = 0;
            for (size_t k = i + 3; k < in->first_len && it <= 10000; k++) {
                if (in->first[k] < '0' || in->first[k] > '9')
                    break;
                it = it * 10 + (in->first[k] - '0');
            }
            return it <= 10000;
        }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_scram_input in;
    if (!fuzz_scram_split(data, size, &in))
        return 0;
    const bool sha1 = in.flags & FUZZ_SCRAM_SHA1;
    const bool keys = (in.flags & FUZZ_SCRAM_MONGO) || !cheap(&in);
    auth_scram_client c;
    if (keys) {
        uint8_t ck[AUTH_SHA256_LEN] = {1, 2, 3}, sk[AUTH_SHA256_LEN] = {4, 5, 6};
        FUZZ_CHECK(auth_scram_client_init_keys(&c, ck, sk) == 0);
    } else {
        FUZZ_CHECK(auth_scram_client_init_password(&c, "pencil") == 0);
    }
    c.sha1 = sha1;
    const bool bind = in.flags & FUZZ_SCRAM_BIND, plus = bind && (in.flags & FUZZ_SCRAM_PLUS);
    uint8_t cbind[32];
    for (size_t i = 0; i < sizeof cbind; i++)
        cbind[i] = (uint8_t)i;
    FUZZ_CHECK(!bind || auth_scram_client_bind(&c, plus, cbind, sizeof cbind) == 0);
    char out[AUTH_SCRAM_MSG_MAX];
    const char *nonce = sha1 ? "fyko+d2lbbFgONRv9qkxdawL" : "rOprNGfwEbeRWgbNEkqO";
    FUZZ_CHECK(auth__scram_client_first_nonce(&c, "user", nonce, out) == 0);
    const char *why = NULL;
    int rc = auth_scram_client_final(&c, in.first, in.first_len, out, &why);
    FUZZ_CHECK(rc == 0 || (rc == -EINVAL && why));
    if (rc != 0)
        return 0;
    const char *c64 =
        plus   ? "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,r="
        : bind ? "c=eSws,r="
               : "c=biws,r=";
    FUZZ_CHECK(strnlen(out, sizeof out) < sizeof out && strncmp(out, c64, strlen(c64)) == 0);
    why = NULL;
    rc = auth_scram_client_verify(&c, in.second, in.second_len, &why);
    FUZZ_CHECK(rc == 0 || ((rc == -EINVAL || rc == AUTH_FAIL) && why));
    return 0;
}
