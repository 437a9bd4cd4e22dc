/* Unit tests for the prepared statement registry, client names and per-server LRU sets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "drivers/pg/pg_stmt.h"

/* A Parse body after the name: query NUL, int16 0 parameter types. */
static size_t body(uint8_t *buf, const char *sql)
{
    size_t n = strlen(sql) + 1;
    memcpy(buf, sql, n);
    buf[n] = buf[n + 1] = 0;
    return n + 2;
}

Test(pg_stmt, interning_shares_one_server_name)
{
    pg_stmt_registry r;
    pg_stmt_registry_init(&r);
    uint8_t b1[64], b2[64];
    size_t n1 = body(b1, "SELECT 1"), n2 = body(b2, "SELECT 2");
    pg_stmt *a = pg_stmt_intern(&r, b1, n1);
    pg_stmt *a2 = pg_stmt_intern(&r, b1, n1);
    pg_stmt *b = pg_stmt_intern(&r, b2, n2);
    cr_assert_eq(a, a2, "same text, same entry");
    cr_assert_neq(a, b);
    cr_assert_str_neq(a->name, b->name);
    cr_assert_eq(a->refs, 2);
    pg_stmt_unref(&r, a);
    pg_stmt_unref(&r, a2);
    pg_stmt_unref(&r, b);
    cr_assert_eq(r.table.count, 0, "unreferenced entries are freed");
    pg_stmt_registry_destroy(&r);
}

Test(pg_stmt, client_names_map_and_close)
{
    pg_stmt_registry r;
    pg_stmt_registry_init(&r);
    pg_client_stmts m;
    pg_client_stmts_init(&m);
    uint8_t b1[64];
    pg_stmt *s = pg_stmt_intern(&r, b1, body(b1, "SELECT $1"));
    cr_assert_eq(pg_client_stmts_bind(&m, &r, "q1", s), 0);
    cr_assert_eq(pg_client_stmts_bind(&m, &r, "q2", s), 0);
    pg_stmt_unref(&r, s);
    cr_assert_eq(pg_client_stmts_find(&m, "q1"), s);
    cr_assert_eq(s->refs, 2);
    cr_assert(pg_client_stmts_unbind(&m, &r, "q1"));
    cr_assert_not(pg_client_stmts_unbind(&m, &r, "q1"), "closing twice is not an error");
    cr_assert_null(pg_client_stmts_find(&m, "q1"));
    cr_assert_eq(pg_client_stmts_find(&m, "q2"), s);
    pg_client_stmts_unbind_stmt(&m, &r, s);
    cr_assert_eq(pg_client_stmts_count(&m), 0);
    cr_assert_eq(r.table.count, 0);
    pg_client_stmts_clear(&m, &r);
    pg_stmt_registry_destroy(&r);
}

Test(pg_stmt, client_without_names_holds_no_table)
{
    pg_stmt_registry r;
    pg_stmt_registry_init(&r);
    pg_client_stmts m;
    pg_client_stmts_init(&m);
    /* Every call on a client that never named a statement works without a table. */
    cr_assert_null(pg_client_stmts_find(&m, "q"));
    cr_assert_not(pg_client_stmts_unbind(&m, &r, "q"));
    cr_assert_eq(pg_client_stmts_count(&m), 0);
    pg_client_stmts_clear(&m, &r);
    cr_assert_null(m.table, "most clients never name a statement: they pay for no table");
    /* DEALLOCATE ALL and DISCARD ALL clear the map; naming again makes a new table. */
    uint8_t b1[64];
    pg_stmt *s = pg_stmt_intern(&r, b1, body(b1, "SELECT 1"));
    cr_assert_eq(pg_client_stmts_bind(&m, &r, "q", s), 0);
    cr_assert_not_null(m.table);
    pg_client_stmts_clear(&m, &r);
    cr_assert_null(m.table);
    cr_assert_eq(pg_client_stmts_bind(&m, &r, "q", s), 0);
    cr_assert_eq(pg_client_stmts_find(&m, "q"), s);
    pg_stmt_unref(&r, s);
    pg_client_stmts_clear(&m, &r);
    cr_assert_eq(r.table.count, 0, "the names' references are dropped");
    pg_stmt_registry_destroy(&r);
}

Test(pg_stmt, server_lru_evicts_least_recently_used)
{
    pg_stmt_registry r;
    pg_stmt_registry_init(&r);
    pg_server_stmts m;
    pg_server_stmts_init(&m);
    pg_stmt *s[3];
    uint8_t b[3][32];
    for (int i = 0; i < 3; i++) {
        char sql[16];
        snprintf(sql, sizeof sql, "SELECT %d", i);
        s[i] = pg_stmt_intern(&r, b[i], body(b[i], sql));
    }
    int err;
    cr_assert_null(pg_server_stmts_add(&m, s[0], 2, 0, &err));
    cr_assert_null(pg_server_stmts_add(&m, s[1], 2, 7, &err));
    cr_assert(pg_server_stmts_use(&m, s[0]), "s0 becomes most recently used");
    cr_assert_eq(pg_server_stmts_pending(&m, s[1]), 7, "unconfirmed until the server answers");
    pg_server_stmts_confirm(&m, s[1]);
    cr_assert_eq(pg_server_stmts_pending(&m, s[1]), 0);
    pg_stmt *victim = pg_server_stmts_add(&m, s[2], 2, 0, &err);
    cr_assert_eq(victim, s[1]);
    cr_assert_eq(pg_server_stmts_count(&m), 2);
    cr_assert_not(pg_server_stmts_use(&m, s[1]));
    pg_stmt_unref(&r, victim); /* the caller owns the evicted reference */
    cr_assert(pg_server_stmts_remove(&m, &r, s[0]), "a failed Parse is forgotten");
    cr_assert_not(pg_server_stmts_use(&m, s[0]));
    pg_server_stmts_clear(&m, &r);
    for (int i = 0; i < 3; i++)
        pg_stmt_unref(&r, s[i]);
    cr_assert_eq(r.table.count, 0);
    pg_stmt_registry_destroy(&r);
}
