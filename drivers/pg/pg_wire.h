/*
 * pg_wire: PostgreSQL protocol 3.0 framing, message builders and readers. Pure functions over
 * bytes: no I/O, so every piece is unit-tested on its own.
 */
#ifndef SLUICE_PG_WIRE_H
#define SLUICE_PG_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/buf.h"

#define PG_PROTO_30        0x00030000u
#define PG_CODE_CANCEL     80877102u
#define PG_CODE_SSL        80877103u
#define PG_CODE_GSSENC     80877104u
#define PG_STARTUP_MAX_LEN 10000u /* the server's own limit for startup packets */

static inline uint32_t pg_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint16_t pg_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline void pg_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A bounds-checked cursor over a message body. Any overrun sets err and yields empty values. */
typedef struct pg_reader {
    const uint8_t *p;
    size_t len, pos;
    bool err;
} pg_reader;

static inline pg_reader pg_reader_make(const uint8_t *p, size_t len)
{
    pg_reader r = {p, len, 0, false};
    return r;
}

/* A NUL-terminated string inside the body (pointer into it), or "" with err set. */
const char *pg_read_str(pg_reader *r, size_t *out_len);
uint32_t pg_read_u32(pg_reader *r);
uint16_t pg_read_u16(pg_reader *r);
uint8_t pg_read_u8(pg_reader *r);

/* Client message types Sluice accepts after login (frontend messages of protocol 3.0). */
bool pg_frontend_type_valid(uint8_t type);

/* Startup packet (after the length word): protocol code and key/value pairs. */
typedef struct pg_startup {
    uint32_t code;                   /* PG_PROTO_30-ish, or one of the PG_CODE_* requests */
    const char *user;                /* NULL when absent */
    const char *database;            /* NULL when absent */
    const char *options;             /* the "options" parameter, NULL when absent */
    bool replication;                /* a replication connection was requested */
    uint32_t cancel_pid, cancel_key; /* for PG_CODE_CANCEL */
    /* The remaining parameters, as consecutive "key\0value\0" pairs (points into the packet). */
    const uint8_t *params;
    size_t params_len;
    /* Names of _pq_.* protocol options, for NegotiateProtocolVersion (points into the packet). */
    const char *pq_opts[8];
    int n_pq_opts;
} pg_startup;

/* Parses body (the packet without its length word). Returns 0, or -1 when malformed (*why is
 * a static description). */
int pg_parse_startup(const uint8_t *body, size_t len, pg_startup *out, const char **why);

/* Builders append whole messages to b; each returns 0 or -ENOMEM. */
int pg_msg_begin(gw_buf *b, gw_bufpool *p, uint8_t type, size_t *start);
int pg_msg_put(gw_buf *b, gw_bufpool *p, const void *data, size_t len);
int pg_msg_put_str(gw_buf *b, gw_bufpool *p, const char *s);
void pg_msg_end(gw_buf *b, size_t start);
/* Ends the message begun at start when rc is 0; otherwise drops what was appended of it, so a
 * failed builder never leaves half a message in the output. Returns rc. */
int pg_msg_finish(gw_buf *b, size_t start, int rc);

int pg_build_error(gw_buf *b, gw_bufpool *p, const char *severity, const char *sqlstate,
                   const char *message);
int pg_build_param_status(gw_buf *b, gw_bufpool *p, const char *key, const char *value);
int pg_build_auth_ok(gw_buf *b, gw_bufpool *p);

/* Authentication request codes (the Int32 after 'R'). */
#define PG_AUTH_REQ_OK            0
#define PG_AUTH_REQ_PASSWORD      3  /* AuthenticationCleartextPassword */
#define PG_AUTH_REQ_MD5           5  /* AuthenticationMD5Password, 4-byte salt */
#define PG_AUTH_REQ_SASL          10 /* AuthenticationSASL, a list of mechanisms */
#define PG_AUTH_REQ_SASL_CONTINUE 11
#define PG_AUTH_REQ_SASL_FINAL    12
/* An Authentication request (R) message: code, then len bytes of data (a salt, SCRAM text). */
int pg_build_auth_request(gw_buf *b, gw_bufpool *p, uint32_t code, const void *data, size_t len);
/* AuthenticationSASL offering SCRAM-SHA-256-PLUS and SCRAM-SHA-256 (PostgreSQL's order) with
 * plus, else SCRAM-SHA-256 only: channel binding needs TLS. */
int pg_build_auth_sasl(gw_buf *b, gw_bufpool *p, bool plus);

/* The client's answers to those, all message type 'p' (body without the 5-byte header).
 * PasswordMessage (cleartext or md5): one string filling the body exactly. */
int pg_parse_password(const uint8_t *body, size_t len, const char **password, const char **why);
/* SASLInitialResponse: mechanism name, Int32 length (-1: no data), data. *data is NULL when
 * the client sent none. */
int pg_parse_sasl_initial(const uint8_t *body, size_t len, const char **mech, const uint8_t **data,
                          size_t *data_len, const char **why);
int pg_build_key_data(gw_buf *b, gw_bufpool *p, uint32_t pid, uint32_t key);
int pg_build_ready(gw_buf *b, gw_bufpool *p, char status);
int pg_build_empty(gw_buf *b, gw_bufpool *p, uint8_t type); /* ParseComplete, CloseComplete .. */
int pg_build_query(gw_buf *b, gw_bufpool *p, const char *sql);
int pg_build_negotiate(gw_buf *b, gw_bufpool *p, uint32_t minor, const char *const *opts, int n);

/* Finds field `code` (e.g. 'C' for SQLSTATE) of an ErrorResponse/NoticeResponse body. */
const char *pg_error_field(const uint8_t *body, size_t len, char code);

/* Quotes value as a SQL string literal ('...' with doubled quotes; E'...' when it holds
 * backslashes). Returns 0 or -ENOMEM. */
int pg_quote_literal(gw_buf *b, gw_bufpool *p, const char *value);

#endif
