/*
 * pg_pqerr: the structure of libpq's verbose error text (see pg_pqerr.h). Pure: no libpq call,
 * so the unit tests feed it texts of any locale.
 */
#include <string.h>

#include "drivers/pg/pg_pqerr.h"

static bool sqlstate_char(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z');
}

/* Whether the bytes before the ":  " at colon form a severity: a non-empty word (no blank, no
 * colon) that starts the text or follows a blank. */
static bool severity_before(const char *text, const char *colon)
{
    const char *w = colon;
    while (w > text && w[-1] != ' ' && w[-1] != '\t' && w[-1] != '\n' && w[-1] != ':')
        w--;
    return w < colon && (w == text || w[-1] != ':');
}

bool pg_pqerr_parse(const char *text, char sqlstate[6], char *msg, size_t cap)
{
    const char *found = NULL;
    for (const char *p = strstr(text, ":  "); p; p = strstr(p + 1, ":  ")) {
        const char *code = p + 3;
        bool ok = severity_before(text, p);
        for (int i = 0; ok && i < 5; i++)
            ok = sqlstate_char(code[i]);
        if (ok && code[5] == ':' && code[6] == ' ')
            found = code;
    }
    if (!found || cap == 0)
        return false;
    memcpy(sqlstate, found, 5);
    sqlstate[5] = 0;
    const char *m = found + 7;
    size_t n = strcspn(m, "\n");
    while (n > 0 && (m[n - 1] == ' ' || m[n - 1] == '\r'))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(msg, m, n);
    msg[n] = 0;
    return true;
}
