/*
 * saslprep: SASLprep (RFC 4013) of SCRAM passwords through libidn, with PostgreSQL's fallback:
 * a password that is not valid UTF-8, or that SASLprep rejects, is used as its raw bytes. That is
 * what PostgreSQL computes its verifiers from, so both ends must agree on it byte for byte.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool valid_utf8(const unsigned char *s)
{
    while (*s) {
        const unsigned c = *s;
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

int auth_saslprep(const char *password, char **out)
{
    *out = NULL;
    /* Like PostgreSQL, ASCII passes unchanged (control characters included), and so does what
     * SASLprep refuses or maps to nothing. */
    if (!is_ascii(password) && valid_utf8((const unsigned char *)password)) {
        char *prep = NULL;
        if (stringprep_profile(password, &prep, "SASLprep", 0) == STRINGPREP_OK && prep &&
            prep[0]) {
            *out = prep;
            return 0;
        }
        free(prep);
    }
    *out = strdup(password);
    return *out ? 0 : -ENOMEM;
}
