/*
 * Fuzzes the SQL recognisers of pg_sql.h over arbitrary query texts: pg_sql_scan (with its
 * parameter callback), pg_sql_listen_each and the pg_sql_plain shortcut, and checks their
 * contracts against each other.
 */
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_sql.h"
#include "tests/fuzz/fuzz.h"

static void on_param(const char *name, size_t n, void *arg)
{
    FUZZ_CHECK(name && name[n] == 0 && n <= 255);
    ++*(unsigned *)arg;
}

struct listens {
    int calls;
    bool unlisten_all;
};

static void on_listen(char kind, const char *channel, size_t n, void *arg)
{
    struct listens *l = arg;
    FUZZ_CHECK(kind == 'L' || kind == 'U' || kind == '*');
    FUZZ_CHECK(channel && channel[n] == 0 && n <= 63);
    FUZZ_CHECK(kind != '*' || n == 0);
    l->calls++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *sql = (const char *)data;
    unsigned params = 0;
    unsigned bits = pg_sql_scan(sql, size, on_param, &params);
    FUZZ_CHECK(bits < 1u << 12);
    FUZZ_CHECK(params == 0 || (bits & PG_SQL_SESSION_SET));
    FUZZ_CHECK(pg_sql_scan(sql, size, NULL, NULL) == bits);
    /* The shortcut may miss plain texts, never one the scan or the reset check would flag. */
    if (pg_sql_plain(sql, size))
        FUZZ_CHECK(bits == PG_SQL_OTHER && params == 0 && !pg_sql_may_reset(sql, size));

    struct listens l = {0};
    int n = pg_sql_listen_each(sql, size, on_listen, &l);
    FUZZ_CHECK(n == -1 ? l.calls == 0 : l.calls == n);
    FUZZ_CHECK(pg_sql_listen_each(sql, size, NULL, NULL) == n);
    /* A query made only of LISTEN and UNLISTEN statements is all pg_sql_scan calls LISTEN. */
    if (n > 0)
        FUZZ_CHECK((bits & PG_SQL_LISTEN) && !(bits & PG_SQL_OTHER));
    if (n == 0)
        FUZZ_CHECK(bits == 0);
    if (bits & PG_SQL_LISTEN && !(bits & ~(unsigned)PG_SQL_LISTEN))
        FUZZ_CHECK(n != 0);
    return 0;
}
