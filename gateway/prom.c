/* gw_prom: the Prometheus text format writer. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/prom.h"

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, surrogates or code
 * points above U+10FFFF), or 0 when the bytes there are not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, min = 0x10000;
    else
        return 0;
    unsigned cp = c & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* HELP text escapes backslash and line feed; a label value also the double quote. Names come
 * from clients (a database asked for through `*`), and Prometheus rejects a whole scrape over
 * one malformed UTF-8 byte: such a byte is written as U+FFFD. Plain ASCII goes out in runs. */
static void write_escaped(FILE *f, const char *str, bool label)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        size_t run = 0;
        while (s[run] && s[run] < 0x80 && s[run] != '\\' && s[run] != '\n' && s[run] != '"')
            run++;
        fwrite(s, 1, run, f);
        s += run;
        if (!*s)
            break;
        size_t n = utf8_len(s);
        if (n == 0) {
            fputs("\xef\xbf\xbd", f);
            s++;
            continue;
        }
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '"' && label)
            fputs("\\\"", f);
        else
            fwrite(s, 1, n, f);
        s += n;
    }
}

/* v in decimal, at the end of b; returns where it starts. printf is most of a scrape's cost. */
static const char *u64_text(char b[24], uint64_t v)
{
    char *p = b + 23;
    *p = 0;
    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    return p;
}

void gw_prom_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s ", name);
    write_escaped(f, help, false);
    fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* name{labels[,le="le"]} with a space after; le may be NULL. */
static void write_series(FILE *f, const char *name, const char *suffix, const gw_prom_label *labels,
                         size_t n, const char *le)
{
    fputs(name, f);
    fputs(suffix, f);
    if (n == 0 && !le) {
        fputc(' ', f);
        return;
    }
    fputc('{', f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        fputs(labels[i].name, f);
        fputs("=\"", f);
        write_escaped(f, labels[i].value ? labels[i].value : "", true);
        fputc('"', f);
    }
    if (le) {
        fputs(n ? ",le=\"" : "le=\"", f);
        fputs(le, f);
        fputc('"', f);
    }
    fputs("} ", f);
}

/* v as the format writes it: the shorter of two forms that read back exactly (0.1, not
 * 0.10000000000000001), or NaN, +Inf, -Inf. */
static const char *format_double(char b[32], double v)
{
    if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v) /* whole, below 2^53 */
        return u64_text(b, (uint64_t)v);
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(b, 32, "%.15g", v);
    if (strtod(b, NULL) != v)
        snprintf(b, 32, "%.17g", v);
    return b;
}

/* value and a line end. */
static void write_value(FILE *f, const char *v)
{
    fputs(v, f);
    fputc('\n', f);
}

void gw_prom_u64(FILE *f, const char *name, const gw_prom_label *labels, size_t n, uint64_t v)
{
    char b[24];
    write_series(f, name, "", labels, n, NULL);
    write_value(f, u64_text(b, v));
}

void gw_prom_double(FILE *f, const char *name, const gw_prom_label *labels, size_t n, double v)
{
    char b[32];
    write_series(f, name, "", labels, n, NULL);
    write_value(f, format_double(b, v));
}

void gw_prom_histogram(FILE *f, const char *name, const gw_prom_label *labels, size_t n,
                       const double *bounds, const uint64_t *cum, size_t nb, uint64_t count,
                       double sum)
{
    char b[32];
    for (size_t i = 0; i < nb; i++) {
        write_series(f, name, "_bucket", labels, n, format_double(b, bounds[i]));
        write_value(f, u64_text(b, cum[i]));
    }
    write_series(f, name, "_bucket", labels, n, "+Inf");
    write_value(f, u64_text(b, count));
    write_series(f, name, "_sum", labels, n, NULL);
    write_value(f, format_double(b, sum));
    write_series(f, name, "_count", labels, n, NULL);
    write_value(f, u64_text(b, count));
}
