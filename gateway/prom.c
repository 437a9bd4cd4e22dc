/* gw_prom: the Prometheus text format writer. */
#include <inttypes.h>
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
 * one malformed UTF-8 byte: such a byte is written as U+FFFD. */
static void write_escaped(FILE *f, const char *str, bool label)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
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
        fprintf(f, "%s%s=\"", i ? "," : "", labels[i].name);
        write_escaped(f, labels[i].value ? labels[i].value : "", true);
        fputc('"', f);
    }
    if (le)
        fprintf(f, "%sle=\"%s\"", n ? "," : "", le);
    fputs("} ", f);
}

/* v as the format writes it: the shorter of two forms that read back exactly (0.1, not
 * 0.10000000000000001), or NaN, +Inf, -Inf. */
static const char *format_double(char b[32], double v)
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(b, 32, "%.15g", v);
    if (strtod(b, NULL) != v)
        snprintf(b, 32, "%.17g", v);
    return b;
}

void gw_prom_u64(FILE *f, const char *name, const gw_prom_label *labels, size_t n, uint64_t v)
{
    write_series(f, name, "", labels, n, NULL);
    fprintf(f, "%" PRIu64 "\n", v);
}

void gw_prom_double(FILE *f, const char *name, const gw_prom_label *labels, size_t n, double v)
{
    char b[32];
    write_series(f, name, "", labels, n, NULL);
    fprintf(f, "%s\n", format_double(b, v));
}

void gw_prom_histogram(FILE *f, const char *name, const gw_prom_label *labels, size_t n,
                       const double *bounds, const uint64_t *cum, size_t nb, uint64_t count,
                       double sum)
{
    char b[32];
    for (size_t i = 0; i < nb; i++) {
        write_series(f, name, "_bucket", labels, n, format_double(b, bounds[i]));
        fprintf(f, "%" PRIu64 "\n", cum[i]);
    }
    write_series(f, name, "_bucket", labels, n, "+Inf");
    fprintf(f, "%" PRIu64 "\n", count);
    write_series(f, name, "_sum", labels, n, NULL);
    fprintf(f, "%s\n", format_double(b, sum));
    write_series(f, name, "_count", labels, n, NULL);
    fprintf(f, "%" PRIu64 "\n", count);
}
