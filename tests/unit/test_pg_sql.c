/* Unit tests for the SQL texts Sluice recognises: the session-state classifier, the
 * LISTEN/UNLISTEN walker, DEALLOCATE of one statement, possible resets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_sql.h"

/* A heap copy of s without its NUL, so that ASan catches any read past len. */
static char *exact(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    cr_assert_not_null(p);
    memcpy(p, s, len);
    return p;
}

/* Every text a test scans also checks the shortcut against the scan: pg_sql_plain may only
 * say so of a text with no bit but PG_SQL_OTHER, no parameter and no possible reset. */
static void check_plain(const char *p, size_t len, unsigned bits, bool reported)
{
    if (pg_sql_plain(p, len))
        cr_expect(bits == PG_SQL_OTHER && !reported && !pg_sql_may_reset(p, len),
                  "%.*s: plain, but bits 0x%x", (int)len, p, bits);
}

static unsigned scan(const char *sql)
{
    size_t len = strlen(sql);
    char *p = exact(sql, len);
    unsigned f = pg_sql_scan(p, len, NULL, NULL);
    check_plain(p, len, f, false);
    free(p);
    return f;
}

/* The bits other than PG_SQL_OTHER. */
static unsigned state(const char *sql)
{
    return scan(sql) & ~(unsigned)PG_SQL_OTHER;
}

static void expect(const char *const *sqls, size_t n, unsigned bit)
{
    for (size_t i = 0; i < n; i++)
        cr_expect(state(sqls[i]) & bit, "%s: want 0x%x, got 0x%x", sqls[i], bit, state(sqls[i]));
}

static void expect_none(const char *const *sqls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(state(sqls[i]), 0, "%s: want no bit, got 0x%x", sqls[i], state(sqls[i]));
}

#define EXPECT(bit, ...)                                                                           \
    do {                                                                                           \
        const char *const v_[] = {__VA_ARGS__};                                                    \
        expect(v_, sizeof v_ / sizeof *v_, (bit));                                                 \
    } while (0)
#define EXPECT_NONE(...)                                                                           \
    do {                                                                                           \
        const char *const v_[] = {__VA_ARGS__};                                                    \
        expect_none(v_, sizeof v_ / sizeof *v_);                                                   \
    } while (0)

/* Parameter names reported by pg_sql_scan, joined with '|'. */
typedef struct names {
    char buf[512];
    size_t len;
} names;

static void on_param(const char *name, size_t n, void *arg)
{
    names *ns = arg;
    cr_assert_eq(strlen(name), n, "names are NUL-terminated");
    /* an unreadable name shows as () */
    int w = snprintf(ns->buf + ns->len, sizeof ns->buf - ns->len, "%s%.*s", ns->len ? "|" : "",
                     n ? (int)n : 2, n ? name : "()");
    cr_assert(w > 0 && (size_t)w < sizeof ns->buf - ns->len);
    ns->len += (size_t)w;
}

static const char *params(const char *sql, unsigned *bits)
{
    static names ns;
    memset(&ns, 0, sizeof ns);
    size_t len = strlen(sql);
    char *p = exact(sql, len);
    unsigned f = pg_sql_scan(p, len, on_param, &ns);
    check_plain(p, len, f, ns.len > 0);
    free(p);
    if (bits)
        *bits = f;
    return ns.buf;
}

Test(pg_sql, session_set)
{
    EXPECT(PG_SQL_SESSION_SET, "SET work_mem = '1GB'", "set work_mem to 1000",
           "SET SESSION x.y = 1", "Set Search_Path To public, pg_catalog", "SET TIME ZONE 'UTC'",
           "SET timezone TO DEFAULT", "SET SCHEMA 'app'", "SET NAMES 'UTF8'",
           "SET XML OPTION DOCUMENT", "RESET work_mem", "RESET TIME ZONE", "SET local = 1",
           "SET session = 1", "SET transaction = 1",
           "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
           "SELECT 1; SET work_mem='1GB'", "  /* lead */ -- line\n\tSET x.y=1");
    EXPECT_NONE("SET LOCAL work_mem = '1GB'", "set local search_path to x",
                "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET TRANSACTION READ ONLY",
                "SET CONSTRAINTS ALL DEFERRED", "SET LOCAL ROLE admin",
                "SET transaction_isolation = 'serializable'",
                "SET SESSION transaction_read_only TO on", "RESET transaction_deferrable",
                "RESET TRANSACTION ISOLATION LEVEL", "SET LOCAL SESSION AUTHORIZATION bob",
                "SELECT 'SET work_mem = 1'", "SELECT \"set\" FROM t", "/* SET x = 1 */ SELECT 1",
                "-- SET x = 1\nSELECT 1", "SELECT $$SET x = 1$$", "SELECT $q$ SET x = 1 $q$",
                "SELECT * FROM settings", "UPDATE t SET x = 1", "ALTER ROLE r SET work_mem = 1",
                "");
}

Test(pg_sql, session_set_reports_folded_names)
{
    unsigned f;
    cr_expect_str_eq(params("SET Work_Mem = 1", &f), "work_mem");
    cr_expect_str_eq(params("SET \"Work_Mem\" = 1", NULL), "Work_Mem");
    cr_expect_str_eq(params("set session MyApp.User_Id = 7", NULL), "myapp.user_id");
    cr_expect_str_eq(params("SET \"MyApp\" . /* c */ \"A\"\"b\" TO 1", NULL), "MyApp.A\"b");
    cr_expect_str_eq(params("SET TIME ZONE LOCAL", NULL), "timezone");
    cr_expect_str_eq(params("SET SCHEMA 'a'; SET NAMES 'b'; SET XML OPTION content", NULL),
                     "search_path|client_encoding|xmloption");
    cr_expect_str_eq(
        params("RESET DateStyle; RESET TIME ZONE; RESET TRANSACTION ISOLATION LEVEL", NULL),
        "datestyle|timezone");
    cr_expect_str_eq(params("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL "
                            "SERIALIZABLE, READ ONLY, NOT DEFERRABLE",
                            &f),
                     "default_transaction_isolation|default_transaction_read_only|"
                     "default_transaction_deferrable");
    cr_expect(f & PG_SQL_SESSION_SET);
    cr_expect_not(f & PG_SQL_RESET_ALL);
    cr_expect_str_eq(params("SET LOCAL a = 1; SET b = 2; SET TRANSACTION READ ONLY", NULL), "b");
    /* unreadable names are reported empty, so the caller cannot mistake them for its own */
    cr_expect_str_eq(params("SET = 1", &f), "()");
    cr_expect(f & PG_SQL_SESSION_SET);
    cr_expect_str_eq(params("SET U&\"a\" = 1", NULL), "()");
    cr_expect_str_eq(params("SET a. = 1", NULL), "()");
    cr_expect_str_eq(params("SET \"open = 1", NULL), "()");
    /* identifiers are truncated to 63 bytes, as NAMEDATALEN does */
    char sql[200], want[64];
    memset(want, 'a', 63);
    want[63] = 0;
    snprintf(sql, sizeof sql, "SET %s%s = 1", want, "bcdef");
    cr_expect_str_eq(params(sql, NULL), want);
    /* ... never in the middle of a UTF-8 character */
    memset(want, 'a', 62);
    want[62] = 0;
    snprintf(sql, sizeof sql, "SET %s\xc3\xa9 = 1", want);
    cr_expect_str_eq(params(sql, NULL), want);
}

Test(pg_sql, role)
{
    EXPECT(PG_SQL_ROLE, "SET ROLE admin", "set role none", "SET SESSION ROLE admin",
           "SET role = 'admin'", "SET SESSION AUTHORIZATION bob",
           "SET SESSION AUTHORIZATION DEFAULT", "SET SESSION SESSION AUTHORIZATION bob",
           "RESET ROLE", "reset session authorization", "RESET session_authorization",
           "SET session_authorization TO bob", "SELECT 1;SET ROLE x", "(SET ROLE x)");
    EXPECT_NONE("SELECT 'SET ROLE x'", "SELECT E'\\'; SET ROLE x; --'", "SELECT $$; SET ROLE x; $$",
                "/* /* nested */ SET ROLE x */ SELECT 1", "SET LOCAL ROLE x",
                "ALTER ROLE x SET role = y", "GRANT ROLE x TO y");
    cr_expect_str_eq(params("SET ROLE admin; RESET ROLE", NULL), "", "a role is no parameter");
    cr_expect_eq(state("SET ROLE x") & PG_SQL_SESSION_SET, 0);
}

Test(pg_sql, set_config)
{
    EXPECT(PG_SQL_SET_CONFIG, "SELECT set_config('a.b', 'c', false)",
           "select SET_CONFIG('a.b', 'c', FALSE)", "SELECT pg_catalog.set_config('a', 'b', false)",
           "SELECT \"pg_catalog\".\"set_config\"('a', 'b', false)",
           "SELECT set_config('a', 'b', $3)", "SELECT set_config('a', 'b', 'f')",
           "SELECT set_config('a', 'b', 'false')", "SELECT set_config('a', 'b', x > 1)",
           "SELECT set_config('a', 'b', true AND false)", "SELECT set_config('a', 'b', (true))",
           "SELECT set_config('a', 'b', 'true'::bool)", "SELECT set_config('a', 'b')",
           "SELECT set_config('a', 'b', false, true)", "SELECT set_config('a', 'b', E'true')",
           "SELECT set_config(setting_name => 'a', new_value => 'b', is_local => false)",
           "SELECT set_config('a', set_config('b', 'c', true), true)",
           "SELECT set_config /* c */ ('a', 'b', false)", "SELECT set_config",
           "SELECT set_config('a', 'b', true", "SELECT set_config('a', 'b', 'tr'\n'ue')",
           "SELECT 1; SELECT set_config('a', 'b', false); SELECT 2",
           "UPDATE pg_settings SET setting = '1GB' WHERE name = 'work_mem'",
           "WITH u AS (UPDATE pg_catalog.pg_settings SET setting = 'x' WHERE name = 'y' "
           "RETURNING 1) SELECT * FROM u");
    EXPECT_NONE("SELECT set_config('a.b', 'c', true)", "SELECT set_config('a', 'b', TRUE)",
                "SELECT set_config('a', 'b', 't')", "SELECT set_config('a', 'b', 'TRUE')",
                "SELECT set_config('a', 'b', 'on')", "SELECT set_config('a', 'b', 'yes')",
                "SELECT set_config('a', 'b', '1')",
                "SELECT set_config(f(1, 2), g(x[1,2], (3, 4)), true)",
                "SELECT set_config(setting_name => 'a', new_value => 'b', is_local => true)",
                "SELECT set_config(is_local := true, setting_name := 'a', new_value := 'b')",
                "SELECT 'set_config(''a'', ''b'', false)'", "SELECT \"Set_Config\"('a', 'b', f)",
                "SELECT my_set_config('a', 'b', false)", "SELECT * FROM pg_settings",
                "-- set_config('a','b',false)\nSELECT 1");
}

Test(pg_sql, listen)
{
    cr_expect_eq(scan("LISTEN a"), PG_SQL_LISTEN);
    cr_expect_eq(scan("UNLISTEN *"), PG_SQL_LISTEN);
    cr_expect_eq(scan("listen a; unlisten \"B\";"), PG_SQL_LISTEN);
    cr_expect_eq(scan("  -- c\n LISTEN a"), PG_SQL_LISTEN);
    cr_expect_eq(scan("LISTEN a; SELECT 1"), PG_SQL_LISTEN | PG_SQL_OTHER);
    cr_expect_eq(scan("NOTIFY a"), PG_SQL_OTHER);
    cr_expect_eq(scan("SELECT $$LISTEN a$$"), PG_SQL_OTHER);
    cr_expect_eq(scan("SELECT 'LISTEN a'"), PG_SQL_OTHER);
    cr_expect_eq(scan("SELECT listen FROM t"), PG_SQL_OTHER);
    cr_expect_eq(scan(""), 0);
    cr_expect_eq(scan(" ;; -- nothing\n"), 0);
}

Test(pg_sql, temp)
{
    EXPECT(PG_SQL_TEMP, "CREATE TEMP TABLE t (a int)", "create temporary table t as select 1",
           "CREATE GLOBAL TEMPORARY TABLE t (a int)", "CREATE LOCAL TEMP TABLE t (a int)",
           "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
           "CREATE TEMP RECURSIVE VIEW v (n) AS SELECT 1", "CREATE TEMP SEQUENCE s",
           "CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS",
           "CREATE TEMP TABLE t (a int) ON COMMIT PRESERVE ROWS",
           "CREATE TEMP TABLE t AS SELECT * FROM a JOIN b ON commit = drop",
           "SELECT * INTO TEMP t FROM x", "SELECT 1 AS a INTO TEMPORARY TABLE t",
           "select 1 into global temp t", "WITH c AS (SELECT 1) SELECT * INTO LOCAL TEMP t FROM c",
           "CREATE TABLE pg_temp.t (a int)",
           "CREATE FUNCTION pg_temp.f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
           "SELECT * FROM \"pg_temp\".t", "SELECT * FROM pg_temp_3.t", "(CREATE TEMP TABLE t())");
    EXPECT_NONE("CREATE TEMP TABLE t (a int) ON COMMIT DROP",
                "CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1",
                "create temporary table t (a int references p on delete cascade) on commit drop",
                "CREATE UNLOGGED TABLE t (a int)", "CREATE TABLE temp (a int)",
                "INSERT INTO temp VALUES (1)", "INSERT INTO temp SELECT 1",
                "MERGE INTO temp t USING s ON true WHEN MATCHED THEN DELETE",
                "SELECT * INTO t FROM x", "SELECT * INTO UNLOGGED t FROM x",
                "SELECT * INTO \"temp\" FROM x", "SELECT 'CREATE TEMP TABLE t'",
                "SELECT * FROM pg_temporary", "SELECT * FROM pg_temp_x.t", "SELECT 'pg_temp'");
}

Test(pg_sql, advisory_lock)
{
    EXPECT(PG_SQL_ADVISORY_LOCK, "SELECT pg_advisory_lock(1)", "SELECT PG_ADVISORY_LOCK(1, 2)",
           "SELECT pg_advisory_lock_shared(1)", "SELECT pg_try_advisory_lock(1)",
           "select pg_try_advisory_lock_shared(1)", "SELECT pg_advisory_unlock(1)",
           "SELECT pg_advisory_unlock_shared(1)", "SELECT pg_advisory_unlock_all()",
           "SELECT pg_catalog.pg_advisory_lock(1)", "SELECT \"pg_advisory_lock\"(1)",
           "SELECT 1 WHERE pg_try_advisory_lock(hashtext('job'))");
    EXPECT_NONE("SELECT pg_advisory_xact_lock(1)", "SELECT pg_try_advisory_xact_lock(1)",
                "SELECT pg_advisory_xact_lock_shared(1)", "SELECT 'pg_advisory_lock(1)'",
                "/* pg_advisory_lock(1) */ SELECT 1", "SELECT \"PG_ADVISORY_LOCK\"(1)");
}

Test(pg_sql, prepare)
{
    EXPECT(PG_SQL_PREPARE, "PREPARE p AS SELECT 1", "prepare p (int) as select $1",
           "PREPARE transaction AS SELECT 1", "EXECUTE p", "execute p(1)", "DEALLOCATE p",
           "DEALLOCATE ALL", "DEALLOCATE PREPARE p", "SELECT * FROM pg_prepared_statements",
           "SELECT 1; EXECUTE p");
    EXPECT_NONE("PREPARE TRANSACTION 'gid'", "COMMIT PREPARED 'gid'", "SELECT 'PREPARE p'",
                "/* PREPARE */ SELECT 1", "SELECT prepare FROM t");
}

Test(pg_sql, hold_cursor)
{
    EXPECT(PG_SQL_HOLD_CURSOR, "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
           "declare c binary insensitive no scroll cursor with hold for select 1",
           "DECLARE hold SCROLL CURSOR WITH HOLD FOR SELECT 1",
           "DECLARE \"with\" CURSOR WITH HOLD FOR SELECT 1");
    EXPECT_NONE("DECLARE c CURSOR FOR SELECT 1", "DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1",
                "DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold",
                "SELECT 'DECLARE c CURSOR WITH HOLD FOR'");
}

Test(pg_sql, reset_all)
{
    EXPECT(PG_SQL_RESET_ALL, "RESET ALL", "reset all;", "DISCARD ALL", "SELECT 1; DISCARD ALL");
    EXPECT_NONE("DISCARD PLANS", "DISCARD SEQUENCES", "DISCARD TEMP", "SELECT 'RESET ALL'");
    cr_expect_eq(state("RESET \"all\"") & PG_SQL_RESET_ALL, 0, "a parameter called all");
}

Test(pg_sql, load_and_opaque)
{
    EXPECT(PG_SQL_LOAD, "LOAD 'auto_explain'", "load '$libdir/plugins/x'");
    EXPECT(PG_SQL_OPAQUE, "DO $$BEGIN PERFORM set_config('a', 'b', false); END$$",
           "DO LANGUAGE plpgsql 'BEGIN NULL; END'",
           "SELECT query_to_xml('SELECT 1', true, true, '')",
           "SELECT U&\"d\\0061t\\+000061\" FROM t");
    EXPECT_NONE("SELECT 'LOAD x'", "SELECT 1 AS load", "SELECT 'DO $$ $$'");
}

Test(pg_sql, other)
{
    cr_expect_eq(scan("SELECT 1"), PG_SQL_OTHER);
    cr_expect_eq(scan("BEGIN; SELECT 1; COMMIT"), PG_SQL_OTHER);
    cr_expect_eq(scan("((SELECT 1))"), PG_SQL_OTHER);
    cr_expect_eq(scan("SET work_mem = 1"), PG_SQL_SESSION_SET | PG_SQL_OTHER);
}

Test(pg_sql, lexer_edge_cases)
{
    /* '' inside strings, "" inside identifiers */
    EXPECT_NONE("SELECT 'it''s; SET ROLE x'", "SELECT \"a\"\"; SET ROLE x\" FROM t");
    /* E'' backslash escapes, both ways */
    EXPECT_NONE("SELECT E'\\\\'; SELECT 1", "SELECT e'a\\'b; SET ROLE x'");
    EXPECT(PG_SQL_ROLE, "SELECT E'\\\\'; SET ROLE x");
    /* standard strings: a backslash is a character... and with standard_conforming_strings
     * off it escapes, so both readings count */
    EXPECT(PG_SQL_ROLE, "SELECT '\\'; SET ROLE x; --'", "SELECT 'a\\'';SET ROLE x;--'");
    /* U&'' and B''/X'' strings: no backslash escapes */
    EXPECT(PG_SQL_ROLE, "SELECT U&'\\'; SET ROLE x", "SELECT X'\\'; SET ROLE x");
    /* string continuation keeps the E mode: this is all one string */
    EXPECT_NONE("SELECT E'a'\n'\\'; SET ROLE x; --'");
    /* ... and without a newline there is no continuation */
    EXPECT(PG_SQL_ROLE, "SELECT E'a' '\\'; SET ROLE x; --'");
    /* a "--" comment may sit in the continuation */
    EXPECT_NONE("SELECT E'a' -- c\n'\\'; SET ROLE x; --'");
    /* dollar quotes: tags, near misses, $ in identifiers, parameters */
    EXPECT_NONE("SELECT $a$ $b$ ; SET ROLE x; $a$", "SELECT $a$ $ab$; SET ROLE x; $a$",
                "SELECT $_1$; SET ROLE x;$_1$", "SELECT $\xc3\xa9$;SET ROLE x;$\xc3\xa9$");
    EXPECT(PG_SQL_ROLE, "SELECT a$b$; SET ROLE x; $b$", "SELECT $1; SET ROLE x; $1",
           "SELECT $1$; SET ROLE x", "SELECT $a$ x $a$; SET ROLE x");
    /* nested block comments */
    EXPECT_NONE("/* a /* b */ SET ROLE x; */ SELECT 1", "/*/ SET ROLE x; */");
    EXPECT(PG_SQL_ROLE, "/* a /* b */ c */ SET ROLE x", "/**/SET ROLE x",
           "SELECT 1/*x*/;SET ROLE x", "SELECT 1+--x\n1; SET ROLE x");
    /* newlines of any kind end a -- comment */
    EXPECT(PG_SQL_ROLE, "-- c\rSET ROLE x", "SELECT 1 -- c\n;SET ROLE x");
    /* keywords need word boundaries */
    EXPECT_NONE("SETROLE x", "SELECT 1 AS set_config_x", "SELECT pg_temp1", "xSET ROLE x");
    /* numbers followed by identifiers are read conservatively */
    EXPECT(PG_SQL_ADVISORY_LOCK, "SELECT 1pg_advisory_lock(1)");
}

Test(pg_sql, unterminated)
{
    const char *texts[] = {"SELECT 'abc",
                           "SELECT E'abc\\",
                           "SELECT \"abc",
                           "SELECT $$abc",
                           "SELECT $a$abc$a",
                           "SELECT /* abc",
                           "SELECT /* /* */",
                           "SELECT -- abc",
                           "SELECT U&\"ab",
                           "SELECT U&'ab",
                           "SELECT B'01",
                           "SET",
                           "SET SESSION",
                           "RESET",
                           "CREATE TEMP",
                           "CREATE OR",
                           "DECLARE c CURSOR",
                           "SELECT set_config(",
                           "SELECT 'a'\n",
                           "SELECT 'a'\n--",
                           "SELECT 'a' -",
                           "SELECT $",
                           "SELECT $a",
                           "SELECT e",
                           "SELECT u&",
                           "E'",
                           "'",
                           "\"",
                           "$$",
                           "/*",
                           "-"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        /* every prefix too: the text may end anywhere */
        size_t len = strlen(texts[i]);
        for (size_t n = 0; n <= len; n++) {
            char *p = exact(texts[i], n);
            pg_sql_scan(p, n, NULL, NULL);
            pg_sql_listen_each(p, n, NULL, NULL);
            pg_sql_may_reset(p, n);
            free(p);
        }
    }
    cr_expect_eq(state("SELECT 'abc; SET ROLE x"), 0);
    cr_expect(state("SELECT set_config('a', 'b', true") & PG_SQL_SET_CONFIG);
    cr_expect_eq(pg_sql_scan(NULL, 0, NULL, NULL), 0);
}

/* Random texts over the bytes the lexer cares about: run under ASan, any read past len fails. */
Test(pg_sql, random_texts_stay_in_bounds)
{
    static const char alphabet[] = "'\"$;/*-\n\r \\eEuU&xXbBnN_a1(),=.:>[]\xc3\xa9"
                                   "SET ROLE LISTEN set_config pg_temp INTO TEMP ";
    uint64_t x = 0x9E3779B97F4A7C15u;
    char buf[96];
    for (int round = 0; round < 20000; round++) {
        size_t len = 0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t want = (size_t)(x % sizeof buf);
        while (len < want) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[len++] = alphabet[x % (sizeof alphabet - 1)];
        }
        char *p = exact(buf, len);
        pg_sql_scan(p, len, NULL, NULL);
        pg_sql_listen_each(p, len, NULL, NULL);
        pg_sql_may_reset(p, len);
        free(p);
    }
}

Test(pg_sql, only_len_bytes_are_read)
{
    const char *sql = "SET ROLE x; LISTEN y";
    cr_expect_eq(pg_sql_scan(sql, 5, NULL, NULL), PG_SQL_SESSION_SET | PG_SQL_OTHER,
                 "SET alone (a syntax error on the server)");
    cr_expect_eq(pg_sql_scan(sql, 11, NULL, NULL), PG_SQL_ROLE | PG_SQL_OTHER);
    cr_expect_eq(pg_sql_listen_each(sql + 12, 8, NULL, NULL), 1);
    cr_expect_eq(pg_sql_listen_each(sql + 12, 6, NULL, NULL), -1, "LISTEN without a channel");
    cr_expect_eq(pg_sql_scan("SELECT 1", 0, NULL, NULL), 0);
}

/* ---- LISTEN walker ---- */

typedef struct walk {
    char buf[512];
    size_t len;
} walk;

static void on_stmt(char kind, const char *channel, size_t n, void *arg)
{
    walk *w = arg;
    cr_assert_eq(strlen(channel), n);
    int k = snprintf(w->buf + w->len, sizeof w->buf - w->len, "%s%c:%.*s", w->len ? "|" : "", kind,
                     (int)n, channel);
    cr_assert(k > 0 && (size_t)k < sizeof w->buf - w->len);
    w->len += (size_t)k;
}

static int listens(const char *sql, const char **out)
{
    static walk w;
    memset(&w, 0, sizeof w);
    size_t len = strlen(sql);
    char *p = exact(sql, len);
    int n = pg_sql_listen_each(p, len, on_stmt, &w);
    free(p);
    *out = w.buf;
    return n;
}

Test(pg_sql, listen_each)
{
    const char *got;
    cr_expect_eq(listens("LISTEN a", &got), 1);
    cr_expect_str_eq(got, "L:a");
    cr_expect_eq(listens("listen Chan_1; UNLISTEN \"Mixed \"\"q\"\"\";unlisten *;", &got), 3);
    cr_expect_str_eq(got, "L:chan_1|U:Mixed \"q\"|*:");
    cr_expect_eq(listens("LISTEN a; LISTEN b", &got), 2);
    cr_expect_str_eq(got, "L:a|L:b");
    cr_expect_eq(listens(" /* c */ LISTEN -- c\n a ;; ", &got), 1);
    cr_expect_str_eq(got, "L:a");
    cr_expect_eq(listens("LISTEN select_1; LISTEN \"select\"; LISTEN name", &got), 3);
    cr_expect_str_eq(got, "L:select_1|L:select|L:name");
    cr_expect_eq(listens("", &got), 0);
    cr_expect_eq(listens(" ; -- x", &got), 0);
    cr_expect_str_eq(got, "");

    char sql[200], want[80];
    memset(want, 'c', 63);
    want[63] = 0;
    snprintf(sql, sizeof sql, "LISTEN %sdef", want);
    cr_expect_eq(listens(sql, &got), 1);
    cr_expect_eq(strlen(got), 2 + 63, "truncated to 63 bytes: %s", got);

    const char *bad[] = {
        "LISTEN a; SELECT 1", "SELECT 1; LISTEN a", "LISTEN",           "LISTEN a b",
        "LISTEN *",           "UNLISTEN",           "LISTEN 'a'",       "LISTEN $$a$$",
        "LISTEN select",      "LISTEN all",         "UNLISTEN ALL",     "LISTEN \"\"",
        "LISTEN \"open",      "LISTEN U&\"a\"",     "LISTEN a.b",       "LISTEN 1",
        "(LISTEN a)",         "NOTIFY a",           "LISTEN a; LISTEN", "LISTEN a; UNLISTEN b c"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_eq(listens(bad[i], &got), -1, "%s", bad[i]);
        cr_expect_str_eq(got, "", "no callback before the whole query is known good: %s", bad[i]);
    }
    cr_expect_eq(pg_sql_listen_each("LISTEN a", 8, NULL, NULL), 1, "cb may be NULL");
}

/* ---- Size and speed ---- */

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *repeat(const char *unit, size_t times, size_t *len)
{
    size_t u = strlen(unit);
    *len = u * times;
    char *p = malloc(*len);
    cr_assert_not_null(p);
    for (size_t i = 0; i < times; i++)
        memcpy(p + i * u, unit, u);
    return p;
}

Test(pg_sql, large_inputs_are_linear, .timeout = 60)
{
    static const char *const units[] = {
        "SELECT 1;", "(",  ")",      "/*",          "*/",    "$a$",  "$",         "'",    "''",
        "E'\\",      "a.", "SET a.", "set_config(", "'a'\n", "--\n", "LISTEN a;", "\"\"",
    };
    size_t len;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        char *p = repeat(units[i], (10u << 20) / strlen(units[i]), &len);
        double t0 = seconds();
        pg_sql_scan(p, len, NULL, NULL);
        pg_sql_listen_each(p, len, NULL, NULL);
        pg_sql_may_reset(p, len);
        double dt = seconds() - t0;
        cr_expect(dt < 10, "10 MB of \"%s\": %.2f s", units[i], dt);
        free(p);
    }
    /* one long dollar-quoted string whose body keeps almost matching its tag */
    char *p = repeat("$abcdefgh", (10u << 20) / 9, &len);
    memcpy(p, "SELECT $abcdefghi$", 18);
    double t0 = seconds();
    cr_expect_eq(pg_sql_scan(p, len, NULL, NULL), PG_SQL_OTHER);
    cr_expect(seconds() - t0 < 10);
    free(p);

    p = repeat("SELECT 1;", (10u << 20) / 9, &len);
    memcpy(p + len - 9, "SET R=1;;", 9);
    cr_expect_eq(pg_sql_scan(p, len, NULL, NULL), PG_SQL_SESSION_SET | PG_SQL_OTHER);
    free(p);
}

/* ---- Older matchers ---- */

static const char *dealloc(const char *sql)
{
    static char name[64];
    return pg_sql_deallocate_name(sql, name, sizeof name) ? name : NULL;
}

Test(pg_sql, deallocate_names_fold_like_the_server)
{
    cr_assert_str_eq(dealloc("DEALLOCATE s1"), "s1");
    cr_assert_str_eq(dealloc("  deallocate prepare S1 ;  "), "s1");
    cr_assert_str_eq(dealloc("DEALLOCATE \"Mixed \"\"q\"\"\""), "Mixed \"q\"");
    cr_assert_str_eq(dealloc("DEALLOCATE _psycopg_3"), "_psycopg_3");
    cr_assert_str_eq(dealloc("/* c */ DEALLOCATE -- c\n s1"), "s1");
    cr_assert_str_eq(dealloc("DEALLOCATE prepare"), "prepare");
    char name[4];
    cr_assert_not(pg_sql_deallocate_name("DEALLOCATE abcd", name, sizeof name), "too long for cap");
    cr_assert(pg_sql_deallocate_name("DEALLOCATE abc", name, sizeof name));
}

Test(pg_sql, deallocate_leaves_everything_else_to_the_server)
{
    cr_assert_null(dealloc("DEALLOCATE ALL"));
    cr_assert_null(dealloc("deallocate prepare all;"));
    cr_assert_null(dealloc("DEALLOCATE s1; SELECT 1"));
    cr_assert_null(dealloc("DEALLOCATEs1"));
    cr_assert_null(dealloc("DEALLOCATE \"open"));
    cr_assert_null(dealloc("DEALLOCATE"));
    cr_assert_null(dealloc("SELECT 'DEALLOCATE s1'"));
    cr_assert_null(dealloc("DEALLOCATE select"));
    cr_assert_null(dealloc("DEALLOCATE \"\""));
    cr_assert_null(dealloc("DEALLOCATE U&\"s1\""));
    cr_assert_null(dealloc("DEALLOCATE s1 s2"));
}

Test(pg_sql, may_reset)
{
    const char *yes[] = {"RESET ALL",
                         "set timezone to default",
                         "DISCARD ALL",
                         "SELECT 1; reset application_name",
                         "SET x=DEFAULT",
                         "SELECT set_config('TimeZone', NULL, false)",
                         "DO $$BEGIN RESET work_mem; END$$",
                         "DO $q$BEGIN EXECUTE $e$RESET ALL$e$; END$q$",
                         "SELECT U&\"s\\0065t_config\"('a', NULL, false)",
                         "SELECT 'you may discard this'",
                         "SELECT a FROM t WHERE b = 'Default'"};
    const char *no[] = {"SELECT 1",
                        "SET TimeZone = 'UTC'",
                        "BEGIN",
                        "SET default_transaction_isolation = 'serializable'",
                        "SELECT * FROM resets",
                        "SELECT 1reset"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        cr_assert(pg_sql_may_reset(yes[i], strlen(yes[i])), "%s", yes[i]);
        cr_assert_not(pg_sql_plain(yes[i], strlen(yes[i])), "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        cr_assert_not(pg_sql_may_reset(no[i], strlen(no[i])), "%s", no[i]);
    /* only the given length is looked at */
    cr_assert_not(pg_sql_may_reset("SELECT 1 -- reset", 8));
}

static bool plain_text(const char *sql)
{
    size_t len = strlen(sql);
    char *p = exact(sql, len);
    bool plain = pg_sql_plain(p, len);
    free(p);
    return plain;
}

Test(pg_sql, plain_is_the_common_case)
{
    /* What pgbench, ORMs and drivers send most: no closer look needed. */
    const char *plain[] = {
        "BEGIN;",
        "END;",
        "UPDATE pgbench_accounts SET abalance = abalance + -4210 WHERE aid = 81731;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        ("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 5, 7, "
         "CURRENT_TIMESTAMP);"),
        "(SELECT 1) UNION (SELECT 2)",
        "select \"Users\".\"id\" from \"Users\" where \"Users\".\"email\" = $1 limit 1",
        "SELECT 'a;b'; SELECT 2;",
        "COMMIT; ",
    };
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        cr_expect(plain_text(plain[i]), "%s", plain[i]);
    /* A word that matters anywhere, a statement that leads with a keyword head() acts on, a
     * comment hiding a statement's start, or a text that may hold no statement: look closer.
     * Each in any case, after a ';' inside a string too. */
    const char *closer[] = {
        "",
        "   ",
        ";SELECT 1",
        "-- c\nSELECT 1",
        "SELECT 1; /* c */ SET x = 1",
        "SET search_path = a",
        "set x=1",
        "SELECT 1;((  reset all",
        "SELECT 'x;' ; Listen c",
        "SELECT 1; unlisten *",
        "CREATE TEMP TABLE t (a int)",
        "select 1 into temp t",
        "SELECT * FROM pg_temp.t",
        "SELECT PG_ADVISORY_LOCK(1)",
        "SELECT set_config('a', 'b', false)",
        "SELECT query_to_xml('select 1', true, true, '')",
        "SELECT U&\"x\" FROM t",
        "SELECT 'reset'",
        "INSERT INTO t DEFAULT VALUES",
        "DISCARD ALL",
        "Declare c CURSOR WITH HOLD FOR SELECT 1",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "DEALLOCATE p",
        "LOAD 'x'",
        "do $$ begin end $$",
        "SELECT 1;DO $$ begin end $$",
    };
    for (size_t i = 0; i < sizeof closer / sizeof *closer; i++)
        cr_expect_not(plain_text(closer[i]), "%s", closer[i]);
    /* Only len bytes are looked at. */
    cr_expect(pg_sql_plain("SELECT 1; SET x = 1", 9));
    cr_expect_not(pg_sql_plain(NULL, 0));
}
