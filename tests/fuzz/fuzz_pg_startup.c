/*
 * Fuzzes the PostgreSQL startup packet (the body after the length word) through the pure parts
 * of a login: pg_parse_startup, the walk over the run-time parameters into a pg_params set,
 * their quoting for SET (pg_quote_literal), NegotiateProtocolVersion for _pq_ options, and
 * pg_error_field over the same bytes. The "options" parameter is split by a static function of
 * pg_client.c that needs a client, so it is not reached here.
 */
#include <string.h>

#include "drivers/pg/pg_params.h"
#include "drivers/pg/pg_wire.h"
#include "tests/fuzz/fuzz.h"

static bool inside(const uint8_t *data, size_t size, const char *s)
{
    const uint8_t *p = (const uint8_t *)s;
    return p >= data && p < data + size && memchr(p, 0, (size_t)(data + size - p)) != NULL;
}

/* Undoes pg_quote_literal: true when lit is value quoted. */
static bool unquotes_to(const uint8_t *lit, size_t n, const char *value)
{
    size_t i = 0;
    bool backslash = n >= 2 && lit[0] == 'E';
    if (backslash)
        i++;
    if (i >= n || lit[i++] != '\'' || lit[n - 1] != '\'')
        return false;
    const char *v = value;
    for (; i < n - 1; i++, v++) {
        if (lit[i] == '\'' || (backslash && lit[i] == '\\')) {
            if (i + 1 >= n - 1 || lit[i + 1] != lit[i])
                return false;
            i++;
        }
        if (*v != (char)lit[i])
            return false;
    }
    return *v == 0 && backslash == (strchr(value, '\\') != NULL);
}

static void check_params(const pg_startup *su, gw_buf *b, gw_bufpool *pool)
{
    pg_params ps = {0}, copy = {0};
    pg_reader r = pg_reader_make(su->params, su->params_len);
    while (r.pos < r.len) {
        const char *k = pg_read_str(&r, NULL);
        const char *v = pg_read_str(&r, NULL);
        if (r.err || !pg_param_name_ok(k))
            break;
        (void)pg_param_settable(k);
        FUZZ_CHECK(pg_params_set(&ps, k, v) == 0);
        const char *got = pg_params_get(&ps, k);
        FUZZ_CHECK(got && strcmp(got, v) == 0);
        b->len = 0;
        FUZZ_CHECK(pg_quote_literal(b, pool, v) == 0);
        FUZZ_CHECK(unquotes_to(b->data, b->len, v));
    }
    FUZZ_CHECK(pg_params_copy(&copy, &ps) == 0);
    size_t n = 0;
    for (const char *k = pg_params_first(&ps); k; k = pg_params_next(&ps, k), n++) {
        const char *v = pg_params_get(&copy, k);
        FUZZ_CHECK(v && strcmp(v, pg_params_value(k)) == 0);
    }
    for (const char *k = pg_params_first(&ps); k; k = pg_params_first(&ps), n--) {
        char key[64];
        FUZZ_CHECK(strlen(k) < sizeof key);
        strcpy(key, k);
        pg_params_del(&ps, key);
        FUZZ_CHECK(pg_params_get(&ps, key) == NULL);
    }
    FUZZ_CHECK(n == 0);
    pg_params_free(&ps);
    pg_params_free(&copy);
}

static void check_negotiate(const pg_startup *su, gw_buf *b, gw_bufpool *pool)
{
    b->len = 0;
    FUZZ_CHECK(pg_build_negotiate(b, pool, 0, su->pq_opts, su->n_pq_opts) == 0);
    FUZZ_CHECK(b->len >= 13 && b->data[0] == 'v' && pg_get_u32(b->data + 1) == b->len - 1);
    pg_reader r = pg_reader_make(b->data + 5, b->len - 5);
    FUZZ_CHECK(pg_read_u32(&r) == 0 && pg_read_u32(&r) == (uint32_t)su->n_pq_opts);
    for (int i = 0; i < su->n_pq_opts; i++)
        FUZZ_CHECK(strcmp(pg_read_str(&r, NULL), su->pq_opts[i]) == 0);
    FUZZ_CHECK(!r.err && r.pos == r.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char codes[] = "SVCMDHPpqWsctdnFLR";
    for (const char *c = codes; *c; c++) {
        const char *v = pg_error_field(data, size, *c);
        FUZZ_CHECK(!v || inside(data, size, v));
    }

    pg_startup su;
    const char *why = NULL;
    if (pg_parse_startup(data, size, &su, &why) != 0) {
        FUZZ_CHECK(why != NULL);
        return 0;
    }
    if (su.code == PG_CODE_SSL || su.code == PG_CODE_GSSENC) {
        FUZZ_CHECK(size == 4);
        return 0;
    }
    if (su.code == PG_CODE_CANCEL) {
        FUZZ_CHECK(size == 12);
        return 0;
    }
    FUZZ_CHECK(su.code >> 16 == 3 && size >= 5 && data[size - 1] == 0);
    FUZZ_CHECK(!su.user || inside(data, size, su.user));
    FUZZ_CHECK(!su.database || inside(data, size, su.database));
    FUZZ_CHECK(!su.options || inside(data, size, su.options));
    FUZZ_CHECK(su.n_pq_opts >= 0 && su.n_pq_opts <= 8);
    for (int i = 0; i < su.n_pq_opts; i++)
        FUZZ_CHECK(inside(data, size, su.pq_opts[i]) && strncmp(su.pq_opts[i], "_pq_.", 5) == 0);
    FUZZ_CHECK(su.params >= data && su.params + su.params_len <= data + size);

    gw_bufpool pool;
    gw_buf b = {0};
    gw_bufpool_init(&pool, 2);
    check_params(&su, &b, &pool);
    check_negotiate(&su, &b, &pool);
    gw_buf_release(&b, &pool);
    gw_bufpool_destroy(&pool);
    return 0;
}
