/* Unit tests for the SQL texts Sluice recognises: DEALLOCATE of one statement, possible resets. */
#include <criterion/criterion.h>
#include <string.h>

#include "drivers/pg/pg_int.h"

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
}

Test(pg_sql, may_reset)
{
    const char *yes[] = {"RESET ALL", "set timezone to default", "DISCARD ALL",
                         "SELECT 1; reset application_name"};
    const char *no[] = {"SELECT 1", "SET TimeZone = 'UTC'", "BEGIN"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        cr_assert(pg_sql_may_reset(yes[i], strlen(yes[i])), "%s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        cr_assert_not(pg_sql_may_reset(no[i], strlen(no[i])), "%s", no[i]);
    /* only the given length is looked at */
    cr_assert_not(pg_sql_may_reset("SELECT 1 -- reset", 8));
}
