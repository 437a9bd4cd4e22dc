/*
 * fuzz_scram.h: the input layout of the two SCRAM harnesses: one flags byte, the first message's
 * length (two bytes, big-endian), the first message, and the second message (the rest).
 */
#ifndef SLUICE_FUZZ_SCRAM_H
#define SLUICE_FUZZ_SCRAM_H

#include "tests/fuzz/fuzz.h"

#define FUZZ_SCRAM_SHA1  1 /* SCRAM-SHA-1 (RFC 5802's example) instead of SHA-256 (RFC 7677's) */
#define FUZZ_SCRAM_MONGO 2 /* server: MongoDB rules; client: log in with keys, not a password */
#define FUZZ_SCRAM_FAKE  4 /* server: an unknown user (fake verifier) */
#define FUZZ_SCRAM_BIND  8 /* binding data 00 01 .. 1f (a TLS connection) */
/* server: the client picked -PLUS (needs BIND); client: -PLUS offered */
#define FUZZ_SCRAM_PLUS 16

typedef struct fuzz_scram_input {
    unsigned flags;
    const char *first, *second;
    size_t first_len, second_len;
} fuzz_scram_input;

/* false when the input is too short to hold the header or the first message */
static inline bool fuzz_scram_split(const uint8_t *data, size_t size, fuzz_scram_input *in)
{
    if (size < 3)
        return false;
    in->flags = data[0];
    in->first_len = (size_t)data[1] << 8 | data[2];
    if (in->first_len > size - 3)
        return false;
    in->first = (const char *)data + 3;
    in->second = in->first + in->first_len;
    in->second_len = size - 3 - in->first_len;
    return true;
}

#endif
