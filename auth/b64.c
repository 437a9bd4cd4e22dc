/*
 * b64: base64 for SCRAM messages and verifiers. Encoding goes through libcrypto; decoding is a
 * small strict decoder, because EVP_DecodeBlock accepts whitespace and hides the padding in its
 * length (base64 is not crypto: nothing here handles a secret differently from other bytes).
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <openssl/evp.h>

int auth__b64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    if (n > 3 * (size_t)(INT32_MAX / 4) || cap < AUTH__B64_LEN(n) + 1)
        return -EINVAL;
    return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int auth__b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    if (len % 4 != 0 || len / 4 * 3 > (size_t)INT32_MAX)
        return -EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        const bool last = i + 4 == len;
        /* '=' only in the last quantum: "ab==" or "abc=" */
        size_t pad = 0;
        if (last && in[i + 3] == '=')
            pad = in[i + 2] == '=' ? 2 : 1;
        int v[4] = {0, 0, 0, 0};
        for (size_t k = 0; k < 4 - pad; k++) {
            v[k] = b64_value(in[i + k]);
            if (v[k] < 0)
                return -EINVAL;
        }
        const uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        const uint8_t bytes[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
        /* A canonical encoding leaves the bits a pad replaces at zero. */
        if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
            return -EINVAL;
        if (o + 3 - pad > cap)
            return -EINVAL;
        for (size_t k = 0; k < 3 - pad; k++)
            out[o++] = bytes[k];
    }
    return (int)o;
}
