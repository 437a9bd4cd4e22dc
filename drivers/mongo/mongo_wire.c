/*
 * mongo_wire: the MongoDB wire protocol as pure functions over bytes (framing, OP_MSG and OP_QUERY
 * parsing, CRC-32C, message builders); no I/O and no state, so it is unit-tested on its own.
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_wire.h"

/* CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, as OP_MSG checksums use: entry i is i
 * run through eight steps of the bitwise algorithm (the unit test recomputes it that way). */
static const uint32_t crc_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u,
    0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu, 0x4d43cfd0u, 0xbf284cd3u,
    0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu, 0xd7c45070u,
    0x25afd373u, 0x36ff2087u, 0xc494a384u, 0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u,
    0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u,
    0x33ed7d2au, 0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau, 0x30e349b1u,
    0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
    0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au, 0x7da08661u, 0x8fcb0562u, 0x9c9bf696u,
    0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u,
    0x67dafa54u, 0x95b17957u, 0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu,
    0xfe53516fu, 0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu,
    0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u, 0x61c69362u, 0x93ad1061u,
    0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u, 0xeb1fcbadu,
    0x197448aeu, 0x0a24bb5au, 0xf84f3859u, 0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
    0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u,
    0xa55230e6u, 0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu, 0x456cac67u,
    0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u,
    0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu, 0x92a8fc17u, 0x60c37f14u, 0x73938ce0u,
    0x81f80fe3u, 0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu,
    0xf94ad42fu, 0x0b21572cu, 0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u,
    0x502036a5u, 0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u, 0x0e330a81u,
    0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du, 0x758fe5d6u, 0x87e466d5u,
    0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u,
    0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu, 0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u,
    0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu,
    0x5a048dffu, 0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u, 0x590ab964u,
    0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
    0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu, 0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u,
    0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u,
    0x4f48173du, 0xbd23943eu, 0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au,
    0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t mongo_crc32c(const uint8_t *data, size_t len)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++)
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* A BSON string value (int32 length including its NUL, then the bytes) at p, within avail:
 * its whole size, or 0 when it does not fit. */
static size_t string_size(const uint8_t *p, size_t avail)
{
    if (avail < 5)
        return 0;
    int32_t n = mongo_get_i32(p);
    if (n < 1 || (size_t)n > avail - 4 || p[4 + n - 1] != 0)
        return 0;
    return 4 + (size_t)n;
}

int mongo_bson_check_depth(const uint8_t *doc, size_t len, int max_depth)
{
    /* ends[d]: offset of the terminating NUL of the document open at depth d+1. An explicit
     * stack, so that the walk itself cannot be driven into deep recursion. */
    size_t ends[MONGO_MAX_BSON_DEPTH];
    if (max_depth > MONGO_MAX_BSON_DEPTH)
        max_depth = MONGO_MAX_BSON_DEPTH;
    if (max_depth < 1 || len < 5)
        return MONGO_BSON_INVALID;
    int32_t n = mongo_get_i32(doc);
    if (n < 5 || (size_t)n > len || doc[n - 1] != 0)
        return MONGO_BSON_INVALID;
    int depth = 1;
    ends[0] = (size_t)n - 1;
    size_t pos = 4;
    while (depth > 0) {
        size_t end = ends[depth - 1];
        if (pos == end) { /* this document's NUL: back to its parent, just past it */
            pos++;
            depth--;
            continue;
        }
        uint8_t type = doc[pos++];
        const uint8_t *nul = memchr(doc + pos, 0, end - pos);
        if (!nul)
            return MONGO_BSON_INVALID;
        pos = (size_t)(nul - doc) + 1;
        size_t avail = end - pos, skip = 0, sub = 0;
        switch (type) {
        case 0x06: /* undefined */
        case 0x0A: /* null */
        case 0x7F: /* maxKey */
        case 0xFF: /* minKey */
            break;
        case 0x08: /* bool */
            skip = 1;
            break;
        case 0x10: /* int32 */
            skip = 4;
            break;
        case 0x01: /* double */
        case 0x09: /* datetime */
        case 0x11: /* timestamp */
        case 0x12: /* int64 */
            skip = 8;
            break;
        case 0x07: /* ObjectId */
            skip = 12;
            break;
        case 0x13: /* decimal128 */
            skip = 16;
            break;
        case 0x02: /* string */
        case 0x0D: /* JavaScript code */
        case 0x0E: /* symbol */
            if (!(skip = string_size(doc + pos, avail)))
                return MONGO_BSON_INVALID;
            break;
        case 0x0C: /* DBPointer: string and ObjectId */
            if (!(skip = string_size(doc + pos, avail)))
                return MONGO_BSON_INVALID;
            skip += 12;
            break;
        case 0x05: { /* binary: int32 length, subtype, bytes */
            int32_t b = avail >= 5 ? mongo_get_i32(doc + pos) : -1;
            if (b < 0)
                return MONGO_BSON_INVALID;
            skip = 5 + (size_t)b;
            break;
        }
        case 0x0B: { /* regex: two C strings */
            const uint8_t *a = memchr(doc + pos, 0, avail);
            const uint8_t *b = a ? memchr(a + 1, 0, (size_t)(doc + end - (a + 1))) : NULL;
            if (!b)
                return MONGO_BSON_INVALID;
            skip = (size_t)(b - (doc + pos)) + 1;
            break;
        }
        case 0x03: /* document */
        case 0x04: /* array */
            sub = pos;
            break;
        case 0x0F: { /* code with scope: int32 total, string, document */
            int32_t total = avail >= 4 ? mongo_get_i32(doc + pos) : -1;
            size_t s = avail >= 4 ? string_size(doc + pos + 4, avail - 4) : 0;
            if (total < 14 || (size_t)total > avail || !s || 4 + s + 5 > (size_t)total)
                return MONGO_BSON_INVALID;
            sub = pos + 4 + s;
            if ((size_t)mongo_get_i32(doc + sub) != (size_t)total - 4 - s)
                return MONGO_BSON_INVALID;
            break;
        }
        default:
            return MONGO_BSON_INVALID;
        }
        if (sub) {
            int32_t d = end - sub >= 5 ? mongo_get_i32(doc + sub) : -1;
            if (d < 5 || (size_t)d > end - sub || doc[sub + (size_t)d - 1] != 0)
                return MONGO_BSON_INVALID;
            if (depth == max_depth)
                return MONGO_BSON_TOO_DEEP;
            ends[depth++] = sub + (size_t)d - 1;
            pos = sub + 4;
            continue;
        }
        if (skip > avail)
            return MONGO_BSON_INVALID;
        pos += skip;
    }
    return pos == (size_t)n ? 0 : MONGO_BSON_INVALID;
}

/* How much of a document doc_ok checks. */
typedef enum doc_check {
    DOC_FRAME, /* its outer frame: a trusted peer's (the server's replies) */
    /* every element's frame and the nesting depth, without recursion: a client's document that
     * Sluice forwards without reading (a document sequence's: the server validates the values) */
    DOC_WALK,
    /* and then bson_validate (lengths, types, keys as UTF-8): a client's body, which Sluice
     * reads */
    DOC_FULL,
} doc_check;

/* A document of at most avail bytes at p: its length in *len. The depth walk comes before
 * bson_validate because libbson's validation recurses once per level with no limit of its own,
 * so a deep enough document from a client would overflow the stack.
 * Returns 0, MONGO_BSON_INVALID or MONGO_BSON_TOO_DEEP. */
static int doc_ok(const uint8_t *p, size_t avail, doc_check check, uint32_t *len)
{
    if (avail < 5)
        return MONGO_BSON_INVALID;
    int32_t n = mongo_get_i32(p);
    if (n < 5 || (size_t)n > avail || p[n - 1] != 0)
        return MONGO_BSON_INVALID;
    if (check >= DOC_WALK) {
        int rc = mongo_bson_check_depth(p, (size_t)n, MONGO_MAX_BSON_DEPTH);
        if (rc != 0)
            return rc;
    }
    if (check == DOC_FULL) {
        bson_t b;
        size_t off;
        if (!bson_init_static(&b, p, (size_t)n) ||
            !bson_validate(&b, BSON_VALIDATE_UTF8_ALLOW_NULL, &off))
            return MONGO_BSON_INVALID;
    }
    *len = (uint32_t)n;
    return 0;
}

_Static_assert(MONGO_MAX_BSON_DEPTH == 200, "the message below names the limit");
static const char too_deep[] = "BSON document nested too deep (the limit is 200 levels)";

static int msg_walk(const uint8_t *msg, size_t len, bool validate, mongo_msg *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (len < MONGO_MIN_MESSAGE) {
        *why = "OP_MSG too short";
        return -1;
    }
    out->flags = (uint32_t)mongo_get_i32(msg + 16);
    /* Bits 0-15 are required to be understood; only checksumPresent and moreToCome exist. */
    if (out->flags & 0xFFFCu) {
        *why = "OP_MSG has unknown required flag bits";
        return -1;
    }
    size_t end = len;
    if (out->flags & MONGO_MSG_CHECKSUM) {
        if (len < MONGO_MIN_MESSAGE + 4) {
            *why = "OP_MSG too short for its checksum";
            return -1;
        }
        end -= 4;
        if (mongo_crc32c(msg, end) != (uint32_t)mongo_get_i32(msg + end)) {
            *why = "OP_MSG checksum mismatch";
            return -1;
        }
    }
    size_t pos = 20;
    while (pos < end) {
        uint8_t kind = msg[pos++];
        if (kind == 0) {
            uint32_t n;
            if (out->body) {
                *why = "OP_MSG has two body sections";
                return -1;
            }
            int rc = doc_ok(msg + pos, end - pos, validate ? DOC_FULL : DOC_FRAME, &n);
            if (rc != 0) {
                *why = rc == MONGO_BSON_TOO_DEEP ? too_deep : "invalid BSON in OP_MSG body";
                return rc;
            }
            out->body = msg + pos;
            out->body_len = n;
            pos += n;
        } else if (kind == 1) {
            if (end - pos < 4) {
                *why = "truncated document sequence";
                return -1;
            }
            int32_t size = mongo_get_i32(msg + pos);
            if (size < 5 || (size_t)size > end - pos) {
                *why = "document sequence length out of bounds";
                return -1;
            }
            size_t seq_end = pos + (size_t)size;
            const uint8_t *id = msg + pos + 4;
            const uint8_t *nul = memchr(id, 0, seq_end - (pos + 4));
            if (!nul) {
                *why = "document sequence without identifier";
                return -1;
            }
            size_t p = (size_t)(nul - msg) + 1;
            while (p < seq_end) {
                uint32_t n;
                int rc = doc_ok(msg + p, seq_end - p, validate ? DOC_WALK : DOC_FRAME, &n);
                if (rc != 0) {
                    *why =
                        rc == MONGO_BSON_TOO_DEEP ? too_deep : "invalid BSON in document sequence";
                    return rc;
                }
                p += n;
            }
            out->n_sequences++;
            pos = seq_end;
        } else {
            *why = "unknown OP_MSG section kind";
            return -1;
        }
    }
    if (!out->body) {
        *why = "OP_MSG without a body section";
        return -1;
    }
    bson_iter_t it;
    bson_t b;
    if (bson_init_static(&b, out->body, out->body_len) && bson_iter_init(&it, &b) &&
        bson_iter_next(&it))
        out->command = bson_iter_key(&it);
    if (!out->command) {
        *why = "empty command document";
        return -1;
    }
    return 0;
}

int mongo_msg_parse(const uint8_t *msg, size_t len, mongo_msg *out, const char **why)
{
    return msg_walk(msg, len, true, out, why);
}

int mongo_msg_scan(const uint8_t *msg, size_t len, mongo_msg *out, const char **why)
{
    return msg_walk(msg, len, false, out, why);
}

int mongo_query_parse(const uint8_t *msg, size_t len, mongo_query *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (len < 16 + 4 + 2 + 8 + 5) {
        *why = "OP_QUERY too short";
        return -1;
    }
    const uint8_t *p = msg + 20;
    const uint8_t *nul = memchr(p, 0, len - 20);
    if (!nul) {
        *why = "OP_QUERY without collection name";
        return -1;
    }
    out->collection = (const char *)p;
    size_t pos = (size_t)(nul - msg) + 1 + 8;
    uint32_t n;
    int rc = pos < len ? doc_ok(msg + pos, len - pos, DOC_FULL, &n) : MONGO_BSON_INVALID;
    if (rc != 0) {
        *why = rc == MONGO_BSON_TOO_DEEP ? too_deep : "invalid BSON in OP_QUERY";
        return rc;
    }
    out->query = msg + pos;
    out->query_len = n;
    bson_t b;
    bson_iter_t it;
    if (bson_init_static(&b, out->query, n) && bson_iter_init(&it, &b) && bson_iter_next(&it))
        out->command = bson_iter_key(&it);
    /* Drivers may wrap the command as {$query: {...}}. */
    if (out->command && strcmp(out->command, "$query") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t sub;
        if (bson_iter_recurse(&it, &sub) && bson_iter_next(&sub))
            out->command = bson_iter_key(&sub);
    }
    return 0;
}

uint8_t *mongo_build_msg(const bson_t *doc, int32_t request_id, int32_t response_to, bool checksum,
                         size_t *len)
{
    size_t n = 16 + 4 + 1 + doc->len + (checksum ? 4 : 0);
    uint8_t *m = malloc(n);
    if (!m)
        return NULL;
    mongo_put_i32(m, (int32_t)n);
    mongo_put_i32(m + 4, request_id);
    mongo_put_i32(m + 8, response_to);
    mongo_put_i32(m + 12, MONGO_OP_MSG);
    mongo_put_i32(m + 16, checksum ? (int32_t)MONGO_MSG_CHECKSUM : 0);
    m[20] = 0;
    memcpy(m + 21, bson_get_data(doc), doc->len);
    if (checksum)
        mongo_put_i32(m + n - 4, (int32_t)mongo_crc32c(m, n - 4));
    *len = n;
    return m;
}

uint8_t *mongo_build_reply(const bson_t *doc, int32_t request_id, int32_t response_to, size_t *len)
{
    size_t n = 16 + 4 + 8 + 4 + 4 + doc->len;
    uint8_t *m = calloc(1, n);
    if (!m)
        return NULL;
    mongo_put_i32(m, (int32_t)n);
    mongo_put_i32(m + 4, request_id);
    mongo_put_i32(m + 8, response_to);
    mongo_put_i32(m + 12, MONGO_OP_REPLY);
    /* responseFlags 0, cursorID 0, startingFrom 0 */
    mongo_put_i32(m + 32, 1); /* numberReturned */
    memcpy(m + 36, bson_get_data(doc), doc->len);
    *len = n;
    return m;
}

void mongo_error_doc(bson_t *doc, int code, const char *code_name, const char *errmsg,
                     const char *label)
{
    bson_init(doc);
    BSON_APPEND_DOUBLE(doc, "ok", 0.0);
    BSON_APPEND_UTF8(doc, "errmsg", errmsg);
    BSON_APPEND_INT32(doc, "code", code);
    BSON_APPEND_UTF8(doc, "codeName", code_name);
    if (label) {
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(doc, "errorLabels", &arr);
        BSON_APPEND_UTF8(&arr, "0", label);
        bson_append_array_end(doc, &arr);
    }
}

size_t mongo_msg_append_i64(uint8_t *msg, size_t len, size_t cap, const char *key, int64_t value)
{
    uint32_t flags = (uint32_t)mongo_get_i32(msg + 16);
    size_t end = flags & MONGO_MSG_CHECKSUM ? len - 4 : len;
    size_t pos = 20;
    while (pos < end && msg[pos] != 0)
        pos += 1 + (size_t)mongo_get_i32(msg + pos + 1);
    if (pos >= end)
        return 0;
    size_t body_len = (size_t)mongo_get_i32(msg + pos + 1);
    size_t key_len = strlen(key) + 1;
    size_t elem = 1 + key_len + 8;
    if (end + elem > cap || body_len + elem > INT32_MAX || end + elem > INT32_MAX)
        return 0;
    /* The element goes where the body's terminating zero is; what follows moves up. */
    uint8_t *at = msg + pos + 1 + body_len - 1;
    memmove(at + elem, at, (size_t)(msg + end - at));
    at[0] = 0x12; /* int64 */
    memcpy(at + 1, key, key_len);
    uint64_t u = (uint64_t)value;
    for (int i = 0; i < 8; i++)
        at[1 + key_len + i] = (uint8_t)(u >> (8 * i));
    mongo_put_i32(msg + pos + 1, (int32_t)(body_len + elem));
    mongo_put_i32(msg, (int32_t)(end + elem));
    mongo_put_i32(msg + 16, (int32_t)(flags & ~MONGO_MSG_CHECKSUM));
    return end + elem;
}

void mongo_rewrite_ids(uint8_t *msg, size_t len, int32_t request_id, int32_t response_to)
{
    mongo_put_i32(msg + 4, request_id);
    mongo_put_i32(msg + 8, response_to);
    if (mongo_get_i32(msg + 12) == MONGO_OP_MSG && len >= MONGO_MIN_MESSAGE + 4 &&
        ((uint32_t)mongo_get_i32(msg + 16) & MONGO_MSG_CHECKSUM))
        mongo_put_i32(msg + len - 4, (int32_t)mongo_crc32c(msg, len - 4));
}
