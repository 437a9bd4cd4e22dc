/*
 * cfg_values: numbers with units. Hand-written rather than strtod/strtol so that "nan", "1e3",
 * "0x10", "+5" and " 5" are rejected instead of meaning something surprising.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg_int.h"

/* Beyond 31,000 years nothing is a plausible timeout, and products stay far from overflow. */
#define MS_LIMIT 1000000000000000ull

/* The unsigned decimal at *p, advancing *p; -1 if there is none or it exceeds limit. */
static int take_uint(const char **p, uint64_t limit, uint64_t *out)
{
    const char *s = *p;
    if (!isdigit((unsigned char)*s))
        return -1;
    uint64_t n = 0;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (d > limit || n > (limit - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *p = s;
    *out = n;
    return 0;
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

int cfg__parse_int(const char *v, long max, long *out)
{
    uint64_t n;
    if (take_uint(&v, (uint64_t)max, &n) != 0 || *v)
        return -1;
    *out = (long)n;
    return 0;
}

int cfg__parse_duration_ms(const char *v, uint64_t *out)
{
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {{"", 1000}, {"s", 1000}, {"ms", 1}, {"min", 60000}, {"h", 3600000}};

    uint64_t whole = 0;
    const char *p = v;
    if (*p != '.' && take_uint(&p, MS_LIMIT, &whole) != 0)
        return -1;
    /* Fraction as num/den, at most nine digits (nanoseconds for a value in seconds). */
    uint64_t num = 0, den = 1;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p) && p - 1 == v)
            return -1; /* a lone "." */
        for (; isdigit((unsigned char)*p); p++)
            if (den < 1000000000ull) {
                num = num * 10 + (uint64_t)(*p - '0');
                den *= 10;
            }
    }
    p = skip_space(p);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        uint64_t mult = units[i].ms;
        if (whole > MS_LIMIT / mult)
            return -1;
        uint64_t ms = whole * mult + (num * mult + den / 2) / den;
        /* A nonzero timeout must not turn into 0, which means "off". */
        if (ms == 0 && (whole || num))
            ms = 1;
        *out = ms;
        return 0;
    }
    return -1;
}

int cfg__parse_size(const char *v, uint64_t *out)
{
    static const struct {
        const char *name;
        uint64_t bytes;
    } units[] = {{"", 1},      {"B", 1},        {"kB", 1024},
                 {"KB", 1024}, {"MB", 1 << 20}, {"GB", 1ull << 30}};

    uint64_t n;
    const char *p = v;
    if (take_uint(&p, UINT64_MAX, &n) != 0)
        return -1;
    p = skip_space(p);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        if (n > UINT64_MAX / units[i].bytes)
            return -1;
        *out = n * units[i].bytes;
        return 0;
    }
    return -1;
}

int cfg__parse_pool_mode(const char *v, cfg_pool_mode *out)
{
    if (strcmp(v, "session") == 0)
        *out = CFG_POOL_SESSION;
    else if (strcmp(v, "transaction") == 0)
        *out = CFG_POOL_TRANSACTION;
    else
        return -1;
    return 0;
}

void cfg__free_names(cfg_names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    *l = (cfg_names){0};
}

int cfg__parse_names(const char *v, cfg_names *out)
{
    *out = (cfg_names){0};
    size_t cap = 1;
    for (const char *p = v; *p; p++)
        cap += *p == ',';
    out->names = calloc(cap, sizeof *out->names);
    if (!out->names)
        return -1;
    for (const char *p = v; *p;) {
        p = skip_space(p);
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *next = *end ? end + 1 : end;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > p) {
            char *name = strndup(p, (size_t)(end - p));
            if (!name) {
                cfg__free_names(out);
                return -1;
            }
            if (cfg_names_has(out, name))
                free(name);
            else
                out->names[out->n++] = name;
        }
        p = next;
    }
    return 0;
}

bool cfg_names_has(const cfg_names *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return true;
    return false;
}
