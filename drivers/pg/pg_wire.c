#include <errno.h>
#include <string.h>

#include "drivers/pg/pg_wire.h"

const char *pg_read_str(pg_reader *r, size_t *out_len)
{
    if (r->err || r->pos >= r->len)
        goto fail;
    const uint8_t *start = r->p + r->pos;
    const uint8_t *nul = memchr(start, 0, r->len - r->pos);
    if (!nul)
        goto fail;
    size_t n = (size_t)(nul - start);
    r->pos += n + 1;
    if (out_len)
        *out_len = n;
    return (const char *)start;
fail:
    r->err = true;
    if (out_len)
        *out_len = 0;
    return "";
}

uint32_t pg_read_u32(pg_reader *r)
{
    if (r->err || r->len - r->pos < 4) {
        r->err = true;
        return 0;
    }
    uint32_t v = pg_get_u32(r->p + r->pos);
    r->pos += 4;
    return v;
}

uint16_t pg_read_u16(pg_reader *r)
{
    if (r->err || r->len - r->pos < 2) {
        r->err = true;
        return 0;
    }
    uint16_t v = pg_get_u16(r->p + r->pos);
    r->pos += 2;
    return v;
}

uint8_t pg_read_u8(pg_reader *r)
{
    if (r->err || r->len - r->pos < 1) {
        r->err = true;
        return 0;
    }
    return r->p[r->pos++];
}

bool pg_frontend_type_valid(uint8_t type)
{
    /* Query, Parse, Bind, Execute, Describe, Close, Flush, Sync, FunctionCall, Terminate,
     * CopyData, CopyDone, CopyFail. 'p' (password) is never valid after a trust login. */
    switch (type) {
    case 'Q':
    case 'P':
    case 'B':
    case 'E':
    case 'D':
    case 'C':
    case 'H':
    case 'S':
    case 'F':
    case 'X':
    case 'd':
    case 'c':
    case 'f':
        return true;
    default:
        return false;
    }
}

int pg_parse_startup(const uint8_t *body, size_t len, pg_startup *out, const char **why)
{
    memset(out, 0, sizeof *out);
    pg_reader r = pg_reader_make(body, len);
    out->code = pg_read_u32(&r);
    if (r.err) {
        *why = "startup packet too short";
        return -1;
    }
    if (out->code == PG_CODE_SSL || out->code == PG_CODE_GSSENC) {
        if (len != 4) {
            *why = "malformed encryption request";
            return -1;
        }
        return 0;
    }
    if (out->code == PG_CODE_CANCEL) {
        out->cancel_pid = pg_read_u32(&r);
        out->cancel_key = pg_read_u32(&r);
        if (r.err || len != 12) {
            *why = "malformed cancel request";
            return -1;
        }
        return 0;
    }
    if (out->code >> 16 != 3) {
        *why = "unsupported frontend protocol version";
        return -1;
    }
    out->params = body + r.pos;
    while (!r.err && r.pos < len && body[r.pos] != 0) {
        size_t at = r.pos;
        const char *k = pg_read_str(&r, NULL);
        const char *v = pg_read_str(&r, NULL);
        if (r.err)
            break;
        if (strcmp(k, "user") == 0)
            out->user = v;
        else if (strcmp(k, "database") == 0)
            out->database = v;
        else if (strcmp(k, "options") == 0)
            out->options = v;
        else if (strcmp(k, "replication") == 0)
            out->replication = strcmp(v, "false") != 0 && strcmp(v, "0") != 0 &&
                               strcmp(v, "off") != 0 && strcmp(v, "no") != 0;
        else if (strncmp(k, "_pq_.", 5) == 0) {
            if (out->n_pq_opts < 8)
                out->pq_opts[out->n_pq_opts++] = k;
        } else
            continue; /* an ordinary run-time parameter: stays in params */
        (void)at;
    }
    /* The list ends with a single NUL that must be the last byte. */
    if (r.err || r.pos + 1 != len || body[r.pos] != 0) {
        *why = "malformed startup packet";
        return -1;
    }
    out->params_len = (size_t)(body + r.pos - out->params);
    return 0;
}

int pg_msg_begin(gw_buf *b, gw_bufpool *p, uint8_t type, size_t *start)
{
    *start = b->len; /* valid for pg_msg_finish even when the reserve fails */
    int rc = gw_buf_reserve(b, p, 5);
    if (rc)
        return rc;
    b->data[b->len] = type;
    b->len += 5;
    return 0;
}

int pg_msg_put(gw_buf *b, gw_bufpool *p, const void *data, size_t len)
{
    return gw_buf_append(b, p, data, len);
}

int pg_msg_put_str(gw_buf *b, gw_bufpool *p, const char *s)
{
    return gw_buf_append(b, p, s, strlen(s) + 1);
}

void pg_msg_end(gw_buf *b, size_t start)
{
    pg_put_u32(b->data + start + 1, (uint32_t)(b->len - start - 1));
}

int pg_msg_finish(gw_buf *b, size_t start, int rc)
{
    if (rc == 0)
        pg_msg_end(b, start);
    else if (b->len > start)
        b->len = start;
    return rc;
}

int pg_build_error(gw_buf *b, gw_bufpool *p, const char *severity, const char *sqlstate,
                   const char *message)
{
    size_t st;
    int rc = pg_msg_begin(b, p, 'E', &st);
    rc = rc ? rc : pg_msg_put(b, p, "S", 1);
    rc = rc ? rc : pg_msg_put_str(b, p, severity);
    rc = rc ? rc : pg_msg_put(b, p, "V", 1);
    rc = rc ? rc : pg_msg_put_str(b, p, severity);
    rc = rc ? rc : pg_msg_put(b, p, "C", 1);
    rc = rc ? rc : pg_msg_put_str(b, p, sqlstate);
    rc = rc ? rc : pg_msg_put(b, p, "M", 1);
    rc = rc ? rc : pg_msg_put_str(b, p, message);
    rc = rc ? rc : pg_msg_put(b, p, "", 1);
    pg_msg_finish(b, st, rc);
    return rc;
}

int pg_build_param_status(gw_buf *b, gw_bufpool *p, const char *key, const char *value)
{
    size_t st;
    int rc = pg_msg_begin(b, p, 'S', &st);
    rc = rc ? rc : pg_msg_put_str(b, p, key);
    rc = rc ? rc : pg_msg_put_str(b, p, value);
    pg_msg_finish(b, st, rc);
    return rc;
}

int pg_build_auth_ok(gw_buf *b, gw_bufpool *p)
{
    static const uint8_t msg[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0};
    return gw_buf_append(b, p, msg, sizeof msg);
}

int pg_build_auth_request(gw_buf *b, gw_bufpool *p, uint32_t code, const void *data, size_t len)
{
    size_t st;
    uint8_t word[4];
    int rc = pg_msg_begin(b, p, 'R', &st);
    pg_put_u32(word, code);
    rc = rc ? rc : pg_msg_put(b, p, word, 4);
    if (len)
        rc = rc ? rc : pg_msg_put(b, p, data, len);
    return pg_msg_finish(b, st, rc);
}

int pg_build_auth_sasl(gw_buf *b, gw_bufpool *p, bool plus)
{
    /* The list ends with an empty name. */
    static const char both[] = "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0";
    const char *mechs = plus ? both : both + sizeof "SCRAM-SHA-256-PLUS";
    const size_t n = plus ? sizeof both : sizeof both - sizeof "SCRAM-SHA-256-PLUS";
    return pg_build_auth_request(b, p, PG_AUTH_REQ_SASL, mechs, n);
}

int pg_parse_password(const uint8_t *body, size_t len, const char **password, const char **why)
{
    pg_reader r = pg_reader_make(body, len);
    size_t n;
    *password = pg_read_str(&r, &n);
    if (r.err || r.pos != len) {
        *why = "invalid password packet size";
        return -1;
    }
    return 0;
}

int pg_parse_sasl_initial(const uint8_t *body, size_t len, const char **mech, const uint8_t **data,
                          size_t *data_len, const char **why)
{
    pg_reader r = pg_reader_make(body, len);
    *mech = pg_read_str(&r, NULL);
    uint32_t n = pg_read_u32(&r);
    *data = NULL;
    *data_len = 0;
    if (!r.err && n != UINT32_MAX) {
        if (n != r.len - r.pos) {
            *why = "invalid SASLInitialResponse length";
            return -1;
        }
        *data = r.p + r.pos;
        *data_len = n;
        r.pos += n;
    }
    if (r.err || r.pos != len) {
        *why = "invalid SASLInitialResponse message";
        return -1;
    }
    return 0;
}

int pg_build_key_data(gw_buf *b, gw_bufpool *p, uint32_t pid, uint32_t key)
{
    uint8_t msg[13] = {'K', 0, 0, 0, 12};
    pg_put_u32(msg + 5, pid);
    pg_put_u32(msg + 9, key);
    return gw_buf_append(b, p, msg, sizeof msg);
}

int pg_build_ready(gw_buf *b, gw_bufpool *p, char status)
{
    uint8_t msg[6] = {'Z', 0, 0, 0, 5, (uint8_t)status};
    return gw_buf_append(b, p, msg, sizeof msg);
}

int pg_build_empty(gw_buf *b, gw_bufpool *p, uint8_t type)
{
    uint8_t msg[5] = {type, 0, 0, 0, 4};
    return gw_buf_append(b, p, msg, sizeof msg);
}

int pg_build_query(gw_buf *b, gw_bufpool *p, const char *sql)
{
    size_t st;
    int rc = pg_msg_begin(b, p, 'Q', &st);
    rc = rc ? rc : pg_msg_put_str(b, p, sql);
    pg_msg_finish(b, st, rc);
    return rc;
}

int pg_build_negotiate(gw_buf *b, gw_bufpool *p, uint32_t minor, const char *const *opts, int n)
{
    size_t st;
    uint8_t word[4];
    int rc = pg_msg_begin(b, p, 'v', &st);
    pg_put_u32(word, minor);
    rc = rc ? rc : pg_msg_put(b, p, word, 4);
    pg_put_u32(word, (uint32_t)n);
    rc = rc ? rc : pg_msg_put(b, p, word, 4);
    for (int i = 0; i < n && rc == 0; i++)
        rc = pg_msg_put_str(b, p, opts[i]);
    pg_msg_finish(b, st, rc);
    return rc;
}

const char *pg_error_field(const uint8_t *body, size_t len, char code)
{
    pg_reader r = pg_reader_make(body, len);
    while (!r.err) {
        uint8_t f = pg_read_u8(&r);
        if (f == 0 || r.err)
            break;
        const char *v = pg_read_str(&r, NULL);
        if (!r.err && f == (uint8_t)code)
            return v;
    }
    return NULL;
}

int pg_quote_literal(gw_buf *b, gw_bufpool *p, const char *value)
{
    bool backslash = strchr(value, '\\') != NULL;
    int rc = gw_buf_append(b, p, backslash ? "E'" : "'", backslash ? 2 : 1);
    for (const char *c = value; rc == 0 && *c; c++) {
        if (*c == '\'' || (backslash && *c == '\\'))
            rc = gw_buf_append(b, p, c, 1);
        rc = rc ? rc : gw_buf_append(b, p, c, 1);
    }
    return rc ? rc : gw_buf_append(b, p, "'", 1);
}
