/*
 * userlist: PgBouncer's users file (auth_file), one `"user" "secret"` per line. The lookup is a
 * binary search over the entries sorted by name once the file is read.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define USER_MAX   255  /* bytes of a user name (the SCRAM server's user[256]) */
#define SECRET_MAX 1023 /* bytes of a secret (the SCRAM client's password[1024]) */

typedef struct entry {
    char *user;
    int line;
    auth_secret secret;
} entry;

struct auth_userlist {
    entry *e; /* sorted by user, one entry per user */
    size_t n;
};

static void free_entries(entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].user);
        auth_secret_clear(&e[i].secret);
    }
    free(e);
}

void auth_userlist_free(auth_userlist *l)
{
    if (!l)
        return;
    free_entries(l->e, l->n);
    free(l);
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* A quoted field at *p (just after its opening quote) up to the closing quote; "" stands for
 * one quote. The unquoted copy, caller frees; NULL with *why when the line ends first or the
 * field is longer than max bytes (or memory runs out). */
static char *quoted(const char **p, const char *end, size_t max, const char **why)
{
    const char *q = *p;
    size_t n = 0;
    for (;; q++, n++) {
        if (q == end) {
            *why = "unterminated quoted field";
            return NULL;
        }
        if (*q == '"') {
            if (q + 1 < end && q[1] == '"')
                q++;
            else
                break;
        }
    }
    if (n > max) {
        *why =
            max == USER_MAX ? "user name longer than 255 bytes" : "secret longer than 1023 bytes";
        return NULL;
    }
    char *out = malloc(n + 1);
    if (!out) {
        *why = "out of memory";
        return NULL;
    }
    size_t o = 0;
    for (const char *r = *p; r < q; r++) {
        out[o++] = *r;
        if (*r == '"')
            r++;
    }
    out[o] = '\0';
    *p = q + 1;
    return out;
}

/* One non-comment line into *e. 0, or -EINVAL/-ENOMEM with *why. */
static int parse_line(const char *p, const char *end, entry *e, const char **why)
{
    if (memchr(p, '\0', (size_t)(end - p))) {
        *why = "NUL byte in line";
        return -EINVAL;
    }
    if (*p != '"') {
        *why = "expected a quoted user name";
        return -EINVAL;
    }
    p++;
    if (!(e->user = quoted(&p, end, USER_MAX, why)))
        return -EINVAL;
    if (!e->user[0]) {
        *why = "empty user name";
        return -EINVAL;
    }
    while (p < end && blank(*p))
        p++;
    if (p == end || *p != '"') {
        *why = "expected a quoted secret after the user name";
        return -EINVAL;
    }
    p++;
    char *text = quoted(&p, end, SECRET_MAX, why);
    if (!text)
        return -EINVAL;
    /* The rest of the line is ignored, as PgBouncer does (mkauth.py wrote a third field). */
    const int rc = auth_secret_parse(text, &e->secret, why);
    free(text);
    if (rc == -ENOMEM)
        *why = "out of memory";
    return rc;
}

static int by_user_then_line(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    const int c = strcmp(x->user, y->user);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Sorts l's entries and keeps the last line of each user. */
static void dedupe(auth_userlist *l, const char *name, FILE *diag)
{
    if (l->n == 0)
        return; /* l->e is NULL: qsort may not be given it */
    qsort(l->e, l->n, sizeof *l->e, by_user_then_line);
    size_t o = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (o > 0 && strcmp(l->e[o - 1].user, l->e[i].user) == 0) {
            auth__diag(diag, name, l->e[i].line,
                       "warning: user \"%s\" listed again; this line replaces line %d",
                       l->e[i].user, l->e[o - 1].line);
            free(l->e[o - 1].user);
            auth_secret_clear(&l->e[o - 1].secret);
            l->e[o - 1] = l->e[i];
        } else {
            l->e[o++] = l->e[i];
        }
    }
    l->n = o;
}

int auth_userlist_parse(const char *text, size_t len, const char *name, auth_userlist **out,
                        FILE *diag)
{
    *out = NULL;
    auth_userlist *l = calloc(1, sizeof *l);
    size_t cap = 0;
    int errors = 0, line = 0;
    if (!l) {
        auth__diag(diag, name, 0, "out of memory");
        return -1;
    }
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        line++;
        while (p < eol && blank(*p))
            p++;
        if (p == eol || *p == ';' || *p == '#') {
            p = eol + (nl != NULL);
            continue;
        }
        if (l->n == cap) {
            entry *grown = realloc(l->e, (cap = cap ? 2 * cap : 16) * sizeof *grown);
            if (!grown) {
                auth__diag(diag, name, line, "out of memory");
                errors++;
                break;
            }
            l->e = grown;
        }
        entry *e = &l->e[l->n];
        memset(e, 0, sizeof *e);
        e->line = line;
        const char *why = NULL;
        if (parse_line(p, eol, e, &why) < 0) {
            auth__diag(diag, name, line, "%s", why);
            errors++;
            free(e->user);
        } else {
            l->n++;
        }
        p = eol + (nl != NULL);
    }
    if (errors) {
        auth_userlist_free(l);
        return -1;
    }
    dedupe(l, name, diag);
    *out = l;
    return 0;
}

int auth_userlist_load(const char *path, auth_userlist **out, FILE *diag)
{
    char *text;
    size_t len;
    *out = NULL;
    if (auth__read_file(path, &text, &len) < 0) {
        if (diag)
            fprintf(diag, "%s: cannot read: %s\n", path, strerror(errno));
        return -1;
    }
    const int rc = auth_userlist_parse(text, len, path, out, diag);
    free(text);
    return rc;
}

static int by_user(const void *key, const void *elem)
{
    return strcmp(key, ((const entry *)elem)->user);
}

const auth_secret *auth_userlist_find(const auth_userlist *l, const char *user)
{
    const entry *e = l && l->n ? bsearch(user, l->e, l->n, sizeof *l->e, by_user) : NULL;
    return e ? &e->secret : NULL;
}

size_t auth_userlist_count(const auth_userlist *l)
{
    return l ? l->n : 0;
}
