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

static void write_double(FILE *f, double v)
{
    if (isnan(v))
        fputs("NaN", f);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", f);
    else {
        /* The shortest of the two forms that reads back exactly (0.1, not 0.10000000000000001). */
        char b[32];
        snprintf(b, sizeof b, "%.15g", v);
        if (strtod(b, NULL) != v)
            snprintf(b, sizeof b, "%.17g", v);
        fputs(b, f);
    }
}

void gw_prom_u64(FILE *f, const char *name, const gw_prom_label *labels, size_t n, uint64_t v)
{
    write_series(f, name, "", labels, n, NULL);
    fprintf(f, "%" PRIu64 "\n", v);
}

void gw_prom_double(FILE *f, const char *name, const gw_prom_label *labels, size_t n, double v)
{
    write_series(f, name, "", labels, n, NULL);
    write_double(f, v);
    fputc('\n', f);
}

void gw_prom_histogram(FILE *f, const char *name, const gw_prom_label *labels, size_t n,
                       const double *bounds, const uint64_t *counts, size_t nb, double sum)
{
    uint64_t cum = 0;
    char le[32];
    for (size_t i = 0; i <= nb; i++) {
        cum += counts[i];
        if (i < nb)
            snprintf(le, sizeof le, "%g", bounds[i]);
        else
            strcpy(le, "+Inf");
        write_series(f, name, "_bucket", labels, n, le);
        fprintf(f, "%" PRIu64 "\n", cum);
    }
    write_series(f, name, "_sum", labels, n, NULL);
    write_double(f, sum);
    fputc('\n', f);
    write_series(f, name, "_count", labels, n, NULL);
    fprintf(f, "%" PRIu64 "\n", cum);
}
