/*
 * pg_sql: the few SQL texts Sluice must recognise. Sluice does not parse SQL; these are
 * deliberately narrow matchers for statements whose effect on shared server state it has to
 * emulate, erring towards "not recognised" (the query then simply goes to the server).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "drivers/pg/pg_int.h"

static const char *skip_space(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* Matches a keyword at p followed by a non-identifier character; returns the rest or NULL. */
static const char *keyword(const char *p, const char *kw)
{
    size_t n = strlen(kw);
    if (strncasecmp(p, kw, n) != 0)
        return NULL;
    unsigned char next = (unsigned char)p[n];
    if (isalnum(next) || next == '_' || next == '$' || next >= 0x80)
        return NULL;
    return p + n;
}

/* Reads one identifier the way the server does: "quoted" (with "" for a quote) kept as is,
 * unquoted folded to lower case (ASCII only, as the server does for identifiers). */
static const char *identifier(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    if (*p == '"') {
        for (p++;; p++) {
            if (!*p)
                return NULL;
            if (*p == '"') {
                if (p[1] != '"')
                    break;
                p++;
            }
            if (n + 1 >= cap)
                return NULL;
            out[n++] = *p;
        }
        p++;
    } else {
        if (!isalpha((unsigned char)*p) && *p != '_' && (unsigned char)*p < 0x80)
            return NULL;
        while (isalnum((unsigned char)*p) || *p == '_' || *p == '$' || (unsigned char)*p >= 0x80) {
            if (n + 1 >= cap)
                return NULL;
            out[n++] = (char)tolower((unsigned char)*p);
            p++;
        }
    }
    out[n] = 0;
    return n ? p : NULL;
}

bool pg_sql_deallocate_name(const char *sql, char *out, size_t cap)
{
    const char *p = keyword(skip_space(sql), "deallocate");
    if (!p)
        return false;
    p = skip_space(p);
    const char *after = keyword(p, "prepare");
    if (after)
        p = skip_space(after);
    if (keyword(p, "all"))
        return false;
    p = identifier(p, out, cap);
    if (!p)
        return false;
    p = skip_space(p);
    if (*p == ';')
        p = skip_space(p + 1);
    return *p == 0;
}

bool pg_sql_may_reset(const char *sql, size_t len)
{
    static const char *const words[] = {"reset", "default", "discard"};
    for (size_t i = 0; i < len; i++) {
        char ch = (char)tolower((unsigned char)sql[i]);
        if (ch != 'r' && ch != 'd')
            continue;
        for (int w = 0; w < 3; w++) {
            size_t n = strlen(words[w]);
            if (n <= len - i && strncasecmp(sql + i, words[w], n) == 0)
                return true;
        }
    }
    return false;
}
