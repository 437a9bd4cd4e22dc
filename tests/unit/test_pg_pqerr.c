/* Unit tests for reading a server's refusal out of libpq's verbose connection error text. */
#include <criterion/criterion.h>
#include <string.h>

#include "drivers/pg/pg_pqerr.h"

static void expect_refusal(const char *text, size_t cap, const char *sqlstate, const char *message)
{
    char st[6], msg[256];
    cr_assert(cap <= sizeof msg);
    cr_assert(pg_pqerr_parse(text, st, msg, cap), "no refusal found in: %s", text);
    cr_assert_str_eq(st, sqlstate);
    cr_assert_str_eq(msg, message);
}

Test(pg_pqerr, refused_login_gives_sqlstate_and_message)
{
    expect_refusal("connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  28P01: "
                   "password authentication failed for user \"bob\"\n"
                   "LOCATION:  auth_failed, auth.c:323\n",
                   128, "28P01", "password authentication failed for user \"bob\"");
}

Test(pg_pqerr, localised_severity_is_read_by_structure)
{
    expect_refusal("Verbindung zum Server auf »/tmp/.s.PGSQL.5432« fehlgeschlagen: "
                   "SCHWERWIEGEND:  3D000: Datenbank »nope« existiert nicht\n",
                   128, "3D000", "Datenbank »nope« existiert nicht");
    expect_refusal("\xd0\x92\xd0\x90\xd0\x96\xd0\x9d\xd0\x9e:  53300: too many\n", 128, "53300",
                   "too many");
}

Test(pg_pqerr, network_errors_are_not_refusals)
{
    /* Sentinels: a text that is not a refusal must leave both outputs as they were. */
    char st[6] = "-----", msg[64] = "untouched";
    const char *texts[] = {
        ("connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n"
         "\tIs the server running on that host and accepting TCP/IP connections?\n"),
        "could not translate host name \"nohost\" to address: Name or service not known\n",
        "LOCATION:  auth_failed, auth.c:323\n",
        "FATAL:  28p01: lower case is no SQLSTATE\n",
        "FATAL:  2800: too short\n",
        ":  28000: no severity word\n",
        "",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        cr_assert(!pg_pqerr_parse(texts[i], st, msg, sizeof msg), "text %zu", i);
    cr_assert_str_eq(st, "-----");
    cr_assert_str_eq(msg, "untouched");
}

Test(pg_pqerr, last_error_wins_and_message_is_truncated)
{
    expect_refusal("connection to server at \"a\" failed: FATAL:  53300: sorry, too many\n"
                   "connection to server at \"b\" failed: FATAL:  57P03: the database system "
                   "is starting up\n",
                   8, "57P03", "the dat");
}
