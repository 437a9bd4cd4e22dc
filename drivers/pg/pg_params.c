#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "drivers/pg/pg_params.h"
#include "gateway/htable.h"

/* The blob's header: the pairs' length, then their fingerprint, kept with them so that every
 * client need not carry it (pg_relay_sync_params compares it on every link). */
typedef struct params_hdr {
    uint32_t len;
    uint32_t unused;
    uint64_t fp;
} params_hdr;
#define HDR sizeof(params_hdr)

static uint64_t fingerprint_of(const char *bytes, uint32_t len)
{
    return gw_hash_bytes(len ? bytes : "", len);
}

static uint32_t params_len(const pg_params *ps)
{
    uint32_t n = 0;
    if (ps->blob)
        memcpy(&n, ps->blob, sizeof n);
    return n;
}

static const char *params_data(const pg_params *ps)
{
    return ps->blob + HDR;
}

const char *pg_params_first(const pg_params *ps)
{
    return params_len(ps) ? params_data(ps) : NULL;
}

const char *pg_params_value(const char *key)
{
    return key + strlen(key) + 1;
}

const char *pg_params_next(const pg_params *ps, const char *key)
{
    const char *v = pg_params_value(key);
    const char *n = v + strlen(v) + 1;
    return n < params_data(ps) + params_len(ps) ? n : NULL;
}

const char *pg_params_get(const pg_params *ps, const char *key)
{
    for (const char *k = pg_params_first(ps); k; k = pg_params_next(ps, k))
        if (strcasecmp(k, key) == 0)
            return pg_params_value(k);
    return NULL;
}

int pg_params_set(pg_params *ps, const char *key, const char *value)
{
    const char *old = pg_params_get(ps, key);
    if (old && strcmp(old, value) == 0)
        return 0;
    size_t klen = strlen(key) + 1, vlen = strlen(value) + 1;
    size_t cap = HDR + params_len(ps) + klen + vlen;
    char *d = malloc(cap);
    if (!d)
        return -ENOMEM;
    size_t n = HDR;
    /* Rebuild without the old pair: parameter changes are rare, reads are frequent. */
    for (const char *k = pg_params_first(ps); k; k = pg_params_next(ps, k)) {
        if (strcasecmp(k, key) == 0)
            continue;
        const char *v = pg_params_value(k);
        size_t pair = strlen(k) + 1 + strlen(v) + 1;
        memcpy(d + n, k, pair);
        n += pair;
    }
    memcpy(d + n, key, klen);
    memcpy(d + n + klen, value, vlen);
    n += klen + vlen;
    params_hdr h = {.len = (uint32_t)(n - HDR)};
    h.fp = fingerprint_of(d + HDR, h.len);
    memcpy(d, &h, sizeof h);
    free(ps->blob);
    ps->blob = d;
    return 0;
}

void pg_params_del(pg_params *ps, const char *key)
{
    const char *k = pg_params_get(ps, key);
    if (!k)
        return;
    k -= strlen(key) + 1; /* pg_params_get returned the value */
    size_t pair = strlen(k) + 1 + strlen(pg_params_value(k)) + 1;
    uint32_t len = params_len(ps);
    size_t off = (size_t)(k - ps->blob);
    memmove(ps->blob + off, ps->blob + off + pair, HDR + len - off - pair);
    len -= (uint32_t)pair;
    if (len == 0) {
        pg_params_free(ps);
        return;
    }
    params_hdr h = {.len = len, .fp = fingerprint_of(ps->blob + HDR, len)};
    memcpy(ps->blob, &h, sizeof h);
}

uint64_t pg_params_fingerprint(const pg_params *ps)
{
    if (!ps->blob)
        return fingerprint_of(NULL, 0);
    params_hdr h;
    memcpy(&h, ps->blob, sizeof h);
    return h.fp;
}

const char *pg_params_bytes(const pg_params *ps, uint32_t *len)
{
    *len = params_len(ps);
    return *len ? params_data(ps) : NULL;
}

void pg_params_free(pg_params *ps)
{
    free(ps->blob);
    ps->blob = NULL;
}

int pg_params_copy(pg_params *dst, const pg_params *src)
{
    pg_params_free(dst);
    uint32_t len = params_len(src);
    if (!len)
        return 0;
    dst->blob = malloc(HDR + len);
    if (!dst->blob)
        return -ENOMEM;
    memcpy(dst->blob, src->blob, HDR + len);
    return 0;
}

bool pg_param_settable(const char *key)
{
    static const char *const fixed[] = {
        "server_version", "server_encoding",       "integer_datetimes", "in_hot_standby",
        "is_superuser",   "session_authorization", "scram_iterations",  NULL,
    };
    for (int i = 0; fixed[i]; i++)
        if (strcasecmp(key, fixed[i]) == 0)
            return false;
    return true;
}

bool pg_param_name_ok(const char *key)
{
    if (!*key || strlen(key) > 63)
        return false;
    for (const char *c = key; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '.')
            return false;
    return true;
}
