/*
 * mongo_wire: MongoDB wire protocol framing, OP_MSG / OP_QUERY parsing, CRC-32C and reply
 * builders. Pure functions over bytes, unit-tested on their own.
 */
#ifndef SLUICE_MONGO_WIRE_H
#define SLUICE_MONGO_WIRE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MONGO_OP_REPLY      1
#define MONGO_OP_UPDATE     2001
#define MONGO_OP_INSERT     2002
#define MONGO_OP_QUERY      2004
#define MONGO_OP_GET_MORE   2005
#define MONGO_OP_DELETE     2006
#define MONGO_OP_KILL       2007
#define MONGO_OP_COMPRESSED 2012
#define MONGO_OP_MSG        2013

#define MONGO_MSG_CHECKSUM     (1u << 0)
#define MONGO_MSG_MORE_TO_COME (1u << 1)
#define MONGO_MSG_EXHAUST      (1u << 16)
#define MONGO_HEADER_LEN       16
#define MONGO_MIN_MESSAGE      21 /* header + flags + kind + smallest document */
#define MONGO_MAX_WIRE_VERSION 21 /* what Sluice understands (MongoDB 7.0) */

static inline int32_t mongo_get_i32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static inline void mongo_put_i32(uint8_t *p, int32_t v)
{
    uint32_t u = (uint32_t)v;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

typedef struct mongo_header {
    int32_t length, request_id, response_to, opcode;
} mongo_header;

static inline mongo_header mongo_header_read(const uint8_t *p)
{
    mongo_header h = {mongo_get_i32(p), mongo_get_i32(p + 4), mongo_get_i32(p + 8),
                      mongo_get_i32(p + 12)};
    return h;
}

/* A parsed OP_MSG: pointers into the message. */
typedef struct mongo_msg {
    uint32_t flags;
    const uint8_t *body; /* the kind 0 document */
    uint32_t body_len;
    const char *command; /* first key of the body */
    int n_sequences;     /* kind 1 sections */
} mongo_msg;

uint32_t mongo_crc32c(const uint8_t *data, size_t len);

/* Nesting levels a client's document may have (the top document is level 1): MongoDB's own
 * maximum for commands (maxBSONDepth). Deeper ones are refused before libbson sees them. */
#define MONGO_MAX_BSON_DEPTH 200
#define MONGO_BSON_INVALID   (-1)
#define MONGO_BSON_TOO_DEEP  (-2)

/* Walks the document of len bytes at doc (every element's frame, embedded documents, arrays and
 * code-with-scope included) with a bounded explicit stack. Returns 0 when it is well framed and
 * nests at most max_depth (capped at MONGO_MAX_BSON_DEPTH) levels, MONGO_BSON_TOO_DEEP when it
 * nests deeper, MONGO_BSON_INVALID when its framing is broken. Values are not validated. */
int mongo_bson_check_depth(const uint8_t *doc, size_t len, int max_depth);

/* Validates and parses a whole OP_MSG (header included). Returns 0, or with *why set
 * MONGO_BSON_TOO_DEEP for a document nested deeper than MONGO_MAX_BSON_DEPTH and -1 for anything
 * else. Every document is walked with mongo_bson_check_depth; the body, which Sluice reads, is
 * then checked with bson_validate too. The documents of a document sequence (the inserted
 * documents of an insert) are forwarded unread, and their values are the server's to judge. */
int mongo_msg_parse(const uint8_t *msg, size_t len, mongo_msg *out, const char **why);
/* The same walk over a message from a trusted peer (the server's replies): sections and document
 * frames are bounds-checked, documents are not validated inside (replies can be 48 MB). */
int mongo_msg_scan(const uint8_t *msg, size_t len, mongo_msg *out, const char **why);

/* A legacy OP_QUERY: the collection name and query document, for the handshake. */
typedef struct mongo_query {
    const char *collection;
    const uint8_t *query;
    uint32_t query_len;
    const char *command; /* first key of the query document */
} mongo_query;

/* Returns 0, MONGO_BSON_TOO_DEEP or -1, like mongo_msg_parse. */
int mongo_query_parse(const uint8_t *msg, size_t len, mongo_query *out, const char **why);

/* Whole-message builders: return a malloc'd message in *out (caller frees) and its length. */
uint8_t *mongo_build_msg(const bson_t *doc, int32_t request_id, int32_t response_to, bool checksum,
                         size_t *len);
uint8_t *mongo_build_reply(const bson_t *doc, int32_t request_id, int32_t response_to, size_t *len);
/* {ok: 0, errmsg, code, codeName[, errorLabels: [label]]} */
void mongo_error_doc(bson_t *doc, int code, const char *code_name, const char *errmsg,
                     const char *label);

/* Appends the element key: value (an int64) to the body document of OP_MSG msg, in place: msg
 * holds len bytes of a message mongo_msg_parse accepted, in a buffer of cap bytes. The sections
 * after the body move up; the checksum is dropped (its flag cleared), as a proxy that changes a
 * message does. The bytes are those of the body re-encoded with the element appended. Returns
 * the new length, or 0 when it does not fit in cap (msg is then unchanged). */
size_t mongo_msg_append_i64(uint8_t *msg, size_t len, size_t cap, const char *key, int64_t value);

/* Rewrites the ids of a whole message in place and recomputes its checksum when it has one. */
void mongo_rewrite_ids(uint8_t *msg, size_t len, int32_t request_id, int32_t response_to);

#endif
