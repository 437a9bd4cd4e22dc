/* Unit tests for MongoDB framing, OP_MSG parsing, checksums and reply builders. */
#include <bson/bson.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_wire.h"

static uint8_t *ping_msg(size_t *len, bool checksum)
{
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_INT32(&doc, "ping", 1);
    BSON_APPEND_UTF8(&doc, "$db", "admin");
    uint8_t *m = mongo_build_msg(&doc, 7, 0, checksum, len);
    bson_destroy(&doc);
    return m;
}

Test(mongo_wire, crc32c_known_vector)
{
    cr_assert_eq(mongo_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
}

Test(mongo_wire, build_and_parse_op_msg)
{
    size_t len;
    uint8_t *m = ping_msg(&len, false);
    mongo_header h = mongo_header_read(m);
    cr_assert_eq(h.length, (int32_t)len);
    cr_assert_eq(h.request_id, 7);
    cr_assert_eq(h.opcode, MONGO_OP_MSG);
    mongo_msg msg;
    const char *why = NULL;
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), 0, "%s", why);
    cr_assert_str_eq(msg.command, "ping");
    cr_assert_eq(msg.n_sequences, 0);
    free(m);
}

Test(mongo_wire, checksum_verified_and_kept_valid_on_rewrite)
{
    size_t len;
    uint8_t *m = ping_msg(&len, true);
    mongo_msg msg;
    const char *why;
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), 0);
    mongo_rewrite_ids(m, len, 99, 5);
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), 0, "rewriting recomputes the checksum");
    cr_assert_eq(mongo_header_read(m).request_id, 99);
    m[len - 5] ^= 1; /* corrupt the body's last byte: no longer a valid message */
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), -1);
    free(m);
}

Test(mongo_wire, document_sequences_and_bad_sections)
{
    /* header, flags, kind 0 {insert: "c"}, kind 1 "documents" with two {} documents */
    bson_t body = BSON_INITIALIZER, empty = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&body, "insert", "c");
    uint8_t m[256];
    size_t o = 20;
    m[o++] = 0;
    memcpy(m + o, bson_get_data(&body), body.len);
    o += body.len;
    m[o++] = 1;
    size_t seq = o;
    o += 4;
    memcpy(m + o, "documents", 10);
    o += 10;
    for (int i = 0; i < 2; i++) {
        memcpy(m + o, bson_get_data(&empty), empty.len);
        o += empty.len;
    }
    mongo_put_i32(m + seq, (int32_t)(o - seq));
    mongo_put_i32(m, (int32_t)o);
    mongo_put_i32(m + 4, 1);
    mongo_put_i32(m + 8, 0);
    mongo_put_i32(m + 12, MONGO_OP_MSG);
    mongo_put_i32(m + 16, 0);
    mongo_msg msg;
    const char *why = NULL;
    cr_assert_eq(mongo_msg_parse(m, o, &msg, &why), 0, "%s", why);
    cr_assert_eq(msg.n_sequences, 1);
    cr_assert_str_eq(msg.command, "insert");

    /* appending maxTimeMS keeps the sequence and gives the body re-encoded with it */
    bson_t nb = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&nb, "insert", "c");
    BSON_APPEND_INT64(&nb, "maxTimeMS", 1000);
    uint8_t n[256];
    memcpy(n, m, o);
    cr_assert_eq(mongo_msg_append_i64(n, o, o + 18, "maxTimeMS", 1000), 0, "no room");
    cr_assert_eq(memcmp(n, m, o), 0, "and then no change");
    size_t nlen = mongo_msg_append_i64(n, o, sizeof n, "maxTimeMS", 1000);
    cr_assert_eq(nlen, o + (nb.len - body.len));
    cr_assert_eq(mongo_msg_parse(n, nlen, &msg, &why), 0, "%s", why);
    cr_assert_eq(msg.n_sequences, 1);
    cr_assert_eq(msg.body_len, nb.len);
    cr_assert_eq(memcmp(msg.body, bson_get_data(&nb), nb.len), 0);
    cr_assert_eq(memcmp(n + 21 + nb.len, m + 21 + body.len, o - 21 - body.len), 0,
                 "the sequence moved whole");

    mongo_put_i32(m + seq, 400); /* a sequence that claims more than there is */
    cr_assert_eq(mongo_msg_parse(m, o, &msg, &why), -1);
    cr_assert_str_eq(why, "document sequence length out of bounds");
    mongo_put_i32(m + seq, (int32_t)(o - seq));
    m[20] = 3; /* unknown section kind */
    cr_assert_eq(mongo_msg_parse(m, o, &msg, &why), -1);
    mongo_put_i32(m + 16, 1 << 3); /* unknown required flag */
    cr_assert_eq(mongo_msg_parse(m, o, &msg, &why), -1);
    bson_destroy(&body);
    bson_destroy(&nb);
    bson_destroy(&empty);
}

Test(mongo_wire, invalid_bson_is_refused)
{
    size_t len;
    uint8_t *m = ping_msg(&len, false);
    mongo_put_i32(m + 21, 1000); /* the body claims to be longer than the message */
    mongo_msg msg;
    const char *why;
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), -1);
    cr_assert_str_eq(why, "invalid BSON in OP_MSG body");
    free(m);
}

Test(mongo_wire, legacy_query_and_reply)
{
    bson_t q = BSON_INITIALIZER;
    BSON_APPEND_INT32(&q, "isMaster", 1);
    uint8_t m[128] = {0};
    size_t o = 20;
    memcpy(m + o, "admin.$cmd", 11);
    o += 11 + 8;
    memcpy(m + o, bson_get_data(&q), q.len);
    o += q.len;
    mongo_put_i32(m, (int32_t)o);
    mongo_put_i32(m + 12, MONGO_OP_QUERY);
    mongo_query out;
    const char *why;
    cr_assert_eq(mongo_query_parse(m, o, &out, &why), 0);
    cr_assert_str_eq(out.collection, "admin.$cmd");
    cr_assert_str_eq(out.command, "isMaster");
    size_t rlen;
    uint8_t *r = mongo_build_reply(&q, 3, 9, &rlen);
    mongo_header h = mongo_header_read(r);
    cr_assert_eq(h.opcode, MONGO_OP_REPLY);
    cr_assert_eq(h.response_to, 9);
    cr_assert_eq(mongo_get_i32(r + 32), 1, "numberReturned");
    free(r);
    bson_destroy(&q);
}

Test(mongo_wire, error_document)
{
    bson_t d;
    mongo_error_doc(&d, 6, "HostUnreachable", "gone", "TransientTransactionError");
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &d, "code") && bson_iter_int32(&it) == 6);
    cr_assert(bson_iter_init_find(&it, &d, "ok") && bson_iter_as_double(&it) == 0.0);
    cr_assert(bson_iter_init_find(&it, &d, "errorLabels"));
    bson_destroy(&d);
}

Test(mongo_wire, crc32c_matches_the_bitwise_definition)
{
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    for (size_t n = 0; n <= sizeof data; n += 37) {
        uint32_t c = 0xFFFFFFFFu;
        for (size_t i = 0; i < n; i++) {
            c ^= data[i];
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        cr_assert_eq(mongo_crc32c(data, n), c ^ 0xFFFFFFFFu, "length %zu", n);
    }
}

Test(mongo_wire, scan_checks_frames_but_not_contents)
{
    size_t len;
    uint8_t *m = ping_msg(&len, false);
    m[21 + 14] = 0x55; /* the second element ($db) gets a type that does not exist */
    mongo_msg msg;
    const char *why;
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), -1, "parse validates documents");
    cr_assert_eq(mongo_msg_scan(m, len, &msg, &why), 0, "scan trusts the server's documents");
    mongo_put_i32(m + 21, 1000);
    cr_assert_eq(mongo_msg_scan(m, len, &msg, &why), -1, "but not a frame that lies");
    free(m);
}

Test(mongo_wire, append_drops_the_checksum)
{
    size_t len;
    uint8_t *m = ping_msg(&len, true);
    uint8_t n[128];
    memcpy(n, m, len);
    size_t nlen = mongo_msg_append_i64(n, len, sizeof n, "maxTimeMS", 5);
    cr_assert_eq(nlen, len - 4 + 19);
    mongo_msg msg;
    const char *why;
    cr_assert_eq(mongo_msg_parse(n, nlen, &msg, &why), 0, "%s", why);
    cr_assert_eq(msg.flags & MONGO_MSG_CHECKSUM, 0u);
    cr_assert_eq(mongo_header_read(n).length, (int32_t)nlen);
    bson_t body;
    bson_iter_t it;
    cr_assert(bson_init_static(&body, msg.body, msg.body_len));
    cr_assert(bson_iter_init_find(&it, &body, "maxTimeMS") && BSON_ITER_HOLDS_INT64(&it));
    cr_assert_eq(bson_iter_int64(&it), 5);
    free(m);
}

/* ---- nesting depth ---- */

/* {a: {a: ... {}}} with depth levels (the outer document is level 1), as raw bytes; kind is
 * the nesting element's type (0x03 document, 0x04 array). Level d starts at 7 d (length, type,
 * key "a") and ends at n - 1 - d (its terminator). */
static uint8_t *nested(int depth, uint8_t kind, size_t *len)
{
    size_t n = 5 + (size_t)(depth - 1) * 8;
    uint8_t *p = malloc(n);
    for (int d = 0; d < depth; d++) {
        size_t off = (size_t)d * 7;
        mongo_put_i32(p + off, (int32_t)(n - (size_t)d * 8));
        if (d < depth - 1) {
            p[off + 4] = kind;
            p[off + 5] = 'a';
            p[off + 6] = 0;
        }
        p[n - 1 - (size_t)d] = 0;
    }
    *len = n;
    return p;
}

/* An OP_MSG whose body is {ping: 1, a: <doc>}. */
static uint8_t *msg_with(const uint8_t *doc, size_t doc_len, size_t *len)
{
    size_t body = 4 + 6 + 4 + 3 + doc_len + 1;
    *len = 21 + body;
    uint8_t *m = calloc(1, *len);
    mongo_put_i32(m, (int32_t)*len);
    mongo_put_i32(m + 12, MONGO_OP_MSG);
    uint8_t *b = m + 21;
    mongo_put_i32(b, (int32_t)body);
    memcpy(b + 4, "\x10ping\0", 6);
    mongo_put_i32(b + 10, 1);
    memcpy(b + 14,
           "\x03"
           "a\0",
           3);
    memcpy(b + 17, doc, doc_len);
    b[body - 1] = 0;
    return m;
}

Test(mongo_wire, depth_is_bounded_without_recursion)
{
    size_t len;
    for (int kind = 3; kind <= 4; kind++) {
        uint8_t *d = nested(MONGO_MAX_BSON_DEPTH, (uint8_t)kind, &len);
        cr_assert_eq(mongo_bson_check_depth(d, len, MONGO_MAX_BSON_DEPTH), 0);
        cr_assert_eq(mongo_bson_check_depth(d, len, MONGO_MAX_BSON_DEPTH - 1), MONGO_BSON_TOO_DEEP);
        free(d);
        d = nested(MONGO_MAX_BSON_DEPTH + 1, (uint8_t)kind, &len);
        cr_assert_eq(mongo_bson_check_depth(d, len, MONGO_MAX_BSON_DEPTH), MONGO_BSON_TOO_DEEP);
        free(d);
        d = nested(20000, (uint8_t)kind, &len);
        cr_assert_eq(mongo_bson_check_depth(d, len, 100000), MONGO_BSON_TOO_DEEP,
                     "the limit cannot be raised past the stack's size");
        free(d);
    }
}

Test(mongo_wire, depth_walk_knows_every_type)
{
    bson_t *inner = BCON_NEW("x", BCON_INT32(1));
    uint8_t oid[12] = {1}, bin[3] = {1, 2, 3};
    bson_t doc = BSON_INITIALIZER, arr, sub;
    BSON_APPEND_DOUBLE(&doc, "d", 1.5);
    BSON_APPEND_UTF8(&doc, "s", "str");
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "o", &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "a", &arr);
    BSON_APPEND_INT32(&arr, "0", 1);
    bson_append_array_end(&sub, &arr);
    bson_append_document_end(&doc, &sub);
    BSON_APPEND_BINARY(&doc, "b", BSON_SUBTYPE_BINARY, bin, 3);
    BSON_APPEND_UNDEFINED(&doc, "u");
    BSON_APPEND_OID(&doc, "oid", (const bson_oid_t *)oid);
    BSON_APPEND_BOOL(&doc, "t", true);
    BSON_APPEND_DATE_TIME(&doc, "dt", 5);
    BSON_APPEND_NULL(&doc, "n");
    BSON_APPEND_REGEX(&doc, "re", "a.*", "i");
    BSON_APPEND_DBPOINTER(&doc, "dbp", "c", (const bson_oid_t *)oid);
    BSON_APPEND_CODE(&doc, "js", "f()");
    BSON_APPEND_SYMBOL(&doc, "sym", "y");
    BSON_APPEND_CODE_WITH_SCOPE(&doc, "cws", "g()", inner);
    BSON_APPEND_INT32(&doc, "i", 1);
    BSON_APPEND_TIMESTAMP(&doc, "ts", 1, 2);
    BSON_APPEND_INT64(&doc, "l", 3);
    bson_decimal128_t dec = {0, 0};
    BSON_APPEND_DECIMAL128(&doc, "dec", &dec);
    BSON_APPEND_MINKEY(&doc, "min");
    BSON_APPEND_MAXKEY(&doc, "max");
    const uint8_t *p = bson_get_data(&doc);
    cr_assert_eq(mongo_bson_check_depth(p, doc.len, MONGO_MAX_BSON_DEPTH), 0);
    cr_assert_eq(mongo_bson_check_depth(p, doc.len, 2), MONGO_BSON_TOO_DEEP,
                 "o.a and the code's scope are level 3 and 2");
    /* every truncation of the document is caught, none read past it */
    uint8_t *copy = malloc(doc.len);
    for (uint32_t cut = 0; cut < doc.len; cut++) {
        memcpy(copy, p, cut);
        cr_assert_neq(mongo_bson_check_depth(copy, cut, MONGO_MAX_BSON_DEPTH), 0);
    }
    /* a bad type byte */
    memcpy(copy, p, doc.len);
    copy[4] = 0x42;
    cr_assert_eq(mongo_bson_check_depth(copy, doc.len, MONGO_MAX_BSON_DEPTH), MONGO_BSON_INVALID);
    free(copy);
    bson_destroy(inner);
    bson_destroy(&doc);
}

Test(mongo_wire, too_deep_messages_are_refused_before_libbson)
{
    size_t dlen, len;
    uint8_t *d = nested(20000, 3, &dlen);
    uint8_t *m = msg_with(d, dlen, &len);
    mongo_msg msg;
    const char *why;
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), MONGO_BSON_TOO_DEEP);
    cr_assert(strstr(why, "nested too deep"), "%s", why);
    free(m);
    free(d);
    d = nested(MONGO_MAX_BSON_DEPTH - 1, 3, &dlen); /* plus the body: exactly the limit */
    m = msg_with(d, dlen, &len);
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), 0, "%s", why);
    cr_assert_str_eq(msg.command, "ping");
    free(m);
    free(d);
}

/* An OP_MSG of body and one document sequence, "documents", holding doc. */
static uint8_t *msg_with_sequence(const bson_t *body, const uint8_t *doc, size_t doc_len,
                                  size_t *len)
{
    size_t seq = 4 + sizeof "documents" + doc_len;
    *len = 21 + body->len + 1 + seq;
    uint8_t *m = calloc(1, *len);
    mongo_put_i32(m, (int32_t)*len);
    mongo_put_i32(m + 12, MONGO_OP_MSG);
    memcpy(m + 21, bson_get_data(body), body->len);
    size_t o = 21 + body->len;
    m[o++] = 1;
    mongo_put_i32(m + o, (int32_t)seq);
    memcpy(m + o + 4, "documents", sizeof "documents");
    memcpy(m + o + 4 + sizeof "documents", doc, doc_len);
    return m;
}

Test(mongo_wire, sequence_documents_are_walked_and_the_body_validated)
{
    /* {"\xff": "x"}: well framed, its key not UTF-8 (which bson_validate refuses) */
    const uint8_t bad_utf8[] = {14, 0, 0, 0, 0x02, 0xff, 0, 2, 0, 0, 0, 'x', 0, 0};
    bson_t body = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&body, "insert", "c");
    BSON_APPEND_UTF8(&body, "$db", "d");
    size_t len;
    uint8_t *m = msg_with_sequence(&body, bad_utf8, sizeof bad_utf8, &len);
    mongo_msg msg;
    const char *why = NULL;
    /* Sluice forwards the inserted documents unread: their values are the server's to judge */
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), 0, "%s", why);
    cr_assert_eq(msg.n_sequences, 1);
    /* but their frames are walked: a string that claims more than its document holds */
    size_t s = len - sizeof bad_utf8;
    mongo_put_i32(m + s + 7, 100);
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), -1);
    cr_assert_str_eq(why, "invalid BSON in document sequence");
    free(m);

    /* the body, which Sluice reads, is validated whole */
    bson_t bad_body = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&bad_body, "insert", "c");
    bson_append_utf8(&bad_body, "\xff", 1, "x", 1);
    m = msg_with_sequence(&bad_body, bad_utf8, sizeof bad_utf8, &len);
    cr_assert_eq(mongo_msg_parse(m, len, &msg, &why), -1);
    cr_assert_str_eq(why, "invalid BSON in OP_MSG body");
    free(m);
    bson_destroy(&body);
    bson_destroy(&bad_body);
}
