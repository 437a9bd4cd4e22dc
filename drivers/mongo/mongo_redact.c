/*
 * mongo_redact: passwords and other secrets out of MongoDB URIs in text (see mongo_redact.h).
 */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "drivers/mongo/mongo_redact.h"

#define MASK "****"

typedef struct out_buf {
    char *p;
    size_t n, len;
} out_buf;

static void put(out_buf *o, const char *s, size_t len)
{
    size_t room = o->n - 1 - o->len;
    if (len > room)
        len = room;
    memcpy(o->p + o->len, s, len);
    o->len += len;
    o->p[o->len] = 0;
}

/* The length of a URI scheme Sluice redacts at s, or 0. */
static size_t scheme_at(const char *s)
{
    static const char *const schemes[] = {"mongodb://", "mongodb+srv://", NULL};
    for (int i = 0; schemes[i]; i++) {
        size_t l = strlen(schemes[i]);
        if (strncasecmp(s, schemes[i], l) == 0)
            return l;
    }
    return 0;
}

static bool ends_uri(char ch)
{
    return ch == 0 || isspace((unsigned char)ch) || ch == '"' || ch == '\'' || ch == '`';
}

/* Whether the option named name (len bytes) carries a secret. */
static bool secret_option(const char *name, size_t len)
{
    if (len == strlen("authMechanismProperties") &&
        strncasecmp(name, "authMechanismProperties", len) == 0)
        return true;
    for (size_t i = 0; i + 8 <= len; i++)
        if (strncasecmp(name + i, "password", 8) == 0)
            return true;
    return false;
}

/* The part of a URI after its user info: hosts and path as they are, secret option values
 * masked. */
static void put_rest(out_buf *o, const char *s, size_t len)
{
    const char *q = memchr(s, '?', len);
    if (!q) {
        put(o, s, len);
        return;
    }
    put(o, s, (size_t)(q - s) + 1);
    const char *p = q + 1, *end = s + len;
    while (p < end) {
        const char *amp = p;
        while (amp < end && *amp != '&' && *amp != ';')
            amp++;
        const char *eq = memchr(p, '=', (size_t)(amp - p));
        if (eq && secret_option(p, (size_t)(eq - p))) {
            put(o, p, (size_t)(eq - p) + 1);
            put(o, MASK, strlen(MASK));
        } else {
            put(o, p, (size_t)(amp - p));
        }
        if (amp < end)
            put(o, amp, 1);
        p = amp + 1;
    }
}

char *mongo_redact(const char *text, char *out, size_t n)
{
    out_buf o = {out, n, 0};
    if (n == 0)
        return out;
    out[0] = 0;
    const char *s = text;
    while (*s) {
        size_t sl = scheme_at(s);
        if (!sl) {
            put(&o, s, 1);
            s++;
            continue;
        }
        put(&o, s, sl);
        const char *start = s + sl, *end = start;
        while (!ends_uri(*end))
            end++;
        const char *at = NULL;
        for (const char *p = start; p < end; p++)
            if (*p == '@')
                at = p;
        const char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;
        if (colon) {
            put(&o, start, (size_t)(colon - start) + 1);
            put(&o, MASK, strlen(MASK));
            put(&o, at, 1);
            put_rest(&o, at + 1, (size_t)(end - (at + 1)));
        } else {
            put_rest(&o, start, (size_t)(end - start));
        }
        s = end;
    }
    return out;
}
