/*
 * Fuzzes the MongoDB wire readers of mongo_wire.h: mongo_msg_parse (a client's OP_MSG: sections,
 * BSON depth walk, bson_validate), mongo_msg_scan (a server's reply), mongo_query_parse (legacy
 * OP_QUERY), mongo_bson_check_depth, and on a message that parses, the rewrites Sluice applies
 * before forwarding it (mongo_msg_append_i64, mongo_rewrite_ids), whose output must parse.
 * When the input sets checksumPresent, a copy with the right CRC-32C is parsed too, so the
 * fuzzer reaches checksummed messages without guessing checksums.
 */
#include <string.h>

#include "drivers/mongo/mongo_wire.h"
#include "tests/fuzz/fuzz.h"

static bool within(const uint8_t *msg, size_t len, const void *p, size_t n)
{
    const uint8_t *b = p;
    return b >= msg && n <= len && b + n <= msg + len;
}

static void check_rewrites(const uint8_t *msg, size_t len, const mongo_msg *m)
{
    /* maxTimeMS appended in place: still valid, the same command and sections, no checksum. */
    uint8_t *out = malloc(len + 19);
    FUZZ_CHECK(out != NULL);
    memcpy(out, msg, len);
    size_t n = mongo_msg_append_i64(out, len, len + 19, "maxTimeMS", 1000);
    FUZZ_CHECK(n != 0 && (size_t)mongo_get_i32(out) == n);
    mongo_msg again;
    const char *why = NULL;
    FUZZ_CHECK(mongo_msg_parse(out, n, &again, &why) == 0);
    FUZZ_CHECK(strcmp(again.command, m->command) == 0 && again.n_sequences == m->n_sequences);
    FUZZ_CHECK(again.body_len == m->body_len + 19);
    FUZZ_CHECK(!(again.flags & MONGO_MSG_CHECKSUM));
    free(out);

    /* New ids keep it valid: the checksum, when there is one, is recomputed. */
    uint8_t *copy = malloc(len);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, msg, len);
    mongo_put_i32(copy + 12, MONGO_OP_MSG);
    mongo_rewrite_ids(copy, len, 0x12345678, -1);
    FUZZ_CHECK(mongo_msg_parse(copy, len, &again, &why) == 0);
    mongo_header h = mongo_header_read(copy);
    FUZZ_CHECK(h.request_id == 0x12345678 && h.response_to == -1);
    free(copy);
}

static void check_msg(const uint8_t *msg, size_t len)
{
    mongo_msg m, s;
    const char *why = NULL, *swhy = NULL;
    int rc = mongo_msg_parse(msg, len, &m, &why);
    int src = mongo_msg_scan(msg, len, &s, &swhy);
    FUZZ_CHECK(rc == 0 || rc == -1 || rc == MONGO_BSON_TOO_DEEP);
    FUZZ_CHECK(rc == 0 || why != NULL);
    FUZZ_CHECK(src == 0 || swhy != NULL);
    if (src == 0) {
        FUZZ_CHECK(within(msg, len, s.body, s.body_len) && s.command);
        FUZZ_CHECK(within(s.body, s.body_len, s.command, strlen(s.command) + 1));
    }
    if (rc != 0)
        return;
    /* What a client may send, a trusted reader accepts, and reads the same way. */
    FUZZ_CHECK(src == 0 && s.body == m.body && s.body_len == m.body_len);
    FUZZ_CHECK(s.n_sequences == m.n_sequences && s.flags == m.flags);
    FUZZ_CHECK(strcmp(s.command, m.command) == 0);
    FUZZ_CHECK(mongo_bson_check_depth(m.body, m.body_len, MONGO_MAX_BSON_DEPTH) == 0);
    check_rewrites(msg, len, &m);
}

static void check_depth(const uint8_t *doc, size_t len, int small)
{
    int full = mongo_bson_check_depth(doc, len, MONGO_MAX_BSON_DEPTH);
    int part = mongo_bson_check_depth(doc, len, small);
    FUZZ_CHECK(full == 0 || full == MONGO_BSON_INVALID || full == MONGO_BSON_TOO_DEEP);
    /* A bound above the cap is the cap. */
    FUZZ_CHECK(mongo_bson_check_depth(doc, len, MONGO_MAX_BSON_DEPTH + small) == full);
    if (part == 0)
        FUZZ_CHECK(full == 0);
    if (full == 0) {
        FUZZ_CHECK(part == 0 || part == MONGO_BSON_TOO_DEEP);
        bson_t b;
        size_t off;
        if (len >= 5 && (size_t)mongo_get_i32(doc) == len && bson_init_static(&b, doc, len))
            (void)bson_validate(&b, BSON_VALIDATE_UTF8_ALLOW_NULL, &off);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_msg(data, size);
    if (size >= MONGO_MIN_MESSAGE + 4 &&
        ((uint32_t)mongo_get_i32(data + 16) & MONGO_MSG_CHECKSUM)) {
        uint8_t *fixed = malloc(size);
        FUZZ_CHECK(fixed != NULL);
        memcpy(fixed, data, size);
        mongo_put_i32(fixed + size - 4, (int32_t)mongo_crc32c(fixed, size - 4));
        check_msg(fixed, size);
        free(fixed);
    }

    mongo_query q;
    const char *why = NULL;
    int rc = mongo_query_parse(data, size, &q, &why);
    FUZZ_CHECK(rc == 0 || why != NULL);
    if (rc == 0) {
        FUZZ_CHECK(within(data, size, q.query, q.query_len));
        FUZZ_CHECK(within(data, size, q.collection, strlen(q.collection) + 1));
        FUZZ_CHECK(mongo_bson_check_depth(q.query, q.query_len, MONGO_MAX_BSON_DEPTH) == 0);
    }

    /* The bytes as a bare document, from offset 0 and from where an OP_MSG body would start. */
    int small = size ? data[0] % 8 + 1 : 1;
    check_depth(data, size, small);
    if (size > 21)
        check_depth(data + 21, size - 21, small);
    return 0;
}
