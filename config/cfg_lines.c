/*
 * cfg_lines: the line reader handed to libinih.
 *
 * Debian's libinih is built with 200-byte lines and no realloc (a longer conninfo line would be
 * split in two), its handler is not told the line number, and it reports only the first syntax
 * error. So this reader takes whole physical lines itself, counts them, checks their syntax, and
 * gives inih a short stand-in, "[section]" or "name=", whose value the handler then reads from the
 * loader. Leading whitespace is dropped as PgBouncer does, which also keeps inih from taking an
 * indented line for the continuation of the previous value.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "config/cfg_int.h"

/* Stand-in for a section header that is broken or unknown: the handler ignores its entries, the
 * header having been reported already. */
#define IGNORED_SECTION "[?]"

static const char *const sections[] = {"sluice", "databases", "mongodb", NULL};

/* The next physical line into l->buf, without its newline; false at the end. */
static bool next_line(cfg__loader *l)
{
    if (l->file) {
        errno = 0;
        ssize_t n = getline(&l->buf, &l->buf_cap, l->file);
        if (n < 0) {
            if (ferror(l->file))
                cfg__error(l, l->line + 1, "read error: %s", strerror(errno ? errno : EIO));
            return false;
        }
        if (n > 0 && l->buf[n - 1] == '\n')
            l->buf[n - 1] = 0;
        return true;
    }
    if (!*l->text)
        return false;
    size_t n = strcspn(l->text, "\n");
    if (n + 1 > l->buf_cap) {
        char *grown = realloc(l->buf, n + 1);
        if (!grown) {
            cfg__error(l, l->line + 1, "out of memory");
            return false;
        }
        l->buf = grown;
        l->buf_cap = n + 1;
    }
    memcpy(l->buf, l->text, n);
    l->buf[n] = 0;
    l->text += n + (l->text[n] == '\n');
    return true;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

/* Cuts a ';' comment that follows whitespace outside single quotes, so that a quoted conninfo
 * value such as password='x ;y' survives. */
static void strip_comment(char *v)
{
    bool quoted = false;
    for (char *p = v; *p; p++) {
        if (quoted) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '\'')
                quoted = false;
        } else if (*p == '\'') {
            quoted = true;
        } else if (*p == ';' && (p == v || isspace((unsigned char)p[-1]))) {
            *p = 0;
            break;
        }
    }
    trim(v);
}

static void section(cfg__loader *l, char *s, char *out, int size)
{
    char *end = strchr(s, ']');
    if (!end) {
        cfg__error(l, l->line, "expected ']' to close the section name");
        snprintf(out, (size_t)size, IGNORED_SECTION);
        return;
    }
    *end = 0;
    const char *rest = trim(end + 1);
    if (*rest && *rest != ';' && *rest != '#')
        cfg__error(l, l->line, "unexpected text after [%s]: '%s'", s + 1, rest);
    const char *name = s + 1;
    for (size_t i = 0; sections[i]; i++)
        if (strcmp(name, sections[i]) == 0) {
            snprintf(out, (size_t)size, "[%s]", name);
            return;
        }
    cfg__unknown(l, "section", name, "", sections, sizeof(char *));
    snprintf(out, (size_t)size, IGNORED_SECTION);
}

static void entry(cfg__loader *l, char *s, char *out, int size)
{
    char *eq = strchr(s, '=');
    if (!eq) {
        cfg__error(l, l->line, "expected 'name = value' or '[section]', got '%s'", s);
        return;
    }
    *eq = 0;
    char *name = trim(s), *value = trim(eq + 1);
    strip_comment(value);
    if (!*name) {
        cfg__error(l, l->line, "missing a name before '='");
        return;
    }
    /* inih would split the name at either of these. */
    if (strpbrk(name, ":;")) {
        cfg__error(l, l->line, "'%s': a name may not contain ':' or ';'", name);
        return;
    }
    if (strlen(name) + 2 > (size_t)size) {
        cfg__error(l, l->line, "name longer than %d characters", size - 2);
        return;
    }
    snprintf(out, (size_t)size, "%s=", name);
    l->value = value;
}

char *cfg__read_line(char *buf, int size, void *loader)
{
    cfg__loader *l = loader;
    if (!next_line(l))
        return NULL;
    l->line++;
    l->value = NULL;
    char *s = l->buf;
    if (l->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3;
    s = trim(s);
    buf[0] = 0; /* what inih sees when the line is blank, a comment, or already reported */
    if (!*s || *s == ';' || *s == '#')
        return buf;
    if (*s == '[')
        section(l, s, buf, size);
    else
        entry(l, s, buf, size);
    return buf;
}
