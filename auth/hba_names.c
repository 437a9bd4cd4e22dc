/*
 * hba_names: the words of an hba line (fields of comma-separated items, quoted or not) and the
 * database and user columns built from them, @file includes resolved.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define INCLUDE_DEPTH 10 /* @file inside @file: deep enough for any real use, and ends loops */

static bool space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

int auth__hba_tokenize(const char *p, const char *end, auth__hba_toks *t, const char **why)
{
    char *o = t->buf;
    t->n = 0;
    t->fields = 0;
    bool more = false; /* the last item ended with a comma: the list goes on */
    for (;;) {
        while (p < end && space(*p))
            p++;
        if (p == end || *p == '#') {
            if (more) {
                *why = "a list ends with a comma";
                return -EINVAL;
            }
            return 0;
        }
        if (t->n == t->cap) {
            auth__hba_item *grown =
                realloc(t->it, (t->cap = t->cap ? 2 * t->cap : 16) * sizeof *grown);
            if (!grown) {
                *why = "out of memory";
                return -ENOMEM;
            }
            t->it = grown;
        }
        auth__hba_item *it = &t->it[t->n++];
        it->s = o;
        it->quoted = *p == '"';
        it->field = more ? t->fields - 1 : t->fields++;
        if (it->quoted) {
            for (p++;; p++) {
                if (p == end) {
                    *why = "unterminated quoted name";
                    return -EINVAL;
                }
                if (*p == '"' && !(p + 1 < end && p[1] == '"'))
                    break;
                if (*p == '\0') {
                    *why = "NUL byte in line";
                    return -EINVAL;
                }
                *o++ = *p;
                p += *p == '"';
            }
            p++;
        } else {
            for (; p < end && !space(*p) && *p != ',' && *p != '#'; p++) {
                if (*p == '"' || *p == '\0') {
                    *why = *p ? "a quote inside a name" : "NUL byte in line";
                    return -EINVAL;
                }
                *o++ = *p;
            }
        }
        *o++ = '\0';
        if (p < end && !space(*p) && *p != ',' && *p != '#') {
            *why = "a quote inside a name";
            return -EINVAL;
        }
        while (p < end && space(*p))
            p++;
        more = p < end && *p == ',';
        p += more;
    }
}

/* ---- names ---- */

void auth__hba_names_free(auth__hba_names *nm)
{
    for (size_t i = 0; i < nm->n; i++)
        free(nm->name[i]);
    free(nm->name);
}

static int names_add(auth__hba_names *nm, const char *s)
{
    if (nm->n == nm->cap) {
        char **grown = realloc(nm->name, (nm->cap = nm->cap ? 2 * nm->cap : 4) * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        nm->name = grown;
    }
    if (!(nm->name[nm->n] = strdup(s)))
        return -ENOMEM;
    nm->n++;
    return 0;
}

/* Adds the names of an @file: items separated by commas, blanks or lines; '#' comments. */
static int names_file(auth__hba_names *nm, const char *file, bool db, const auth__hba_src *src)
{
    if (src->depth >= INCLUDE_DEPTH) {
        auth__diag(src->diag, src->name, src->line, "@%s: includes nested too deep", file);
        return -EINVAL;
    }
    const char *slash = strrchr(src->name, '/');
    const size_t dir = file[0] == '/' || !slash ? 0 : (size_t)(slash - src->name) + 1;
    char *path = malloc(dir + strlen(file) + 1);
    if (!path)
        return -ENOMEM;
    memcpy(path, src->name, dir);
    strcpy(path + dir, file);
    char *text;
    size_t len;
    int rc = auth__read_file(path, &text, &len);
    if (rc < 0) {
        auth__diag(src->diag, src->name, src->line, "cannot read @%s (%s): %s", file, path,
                   strerror(-rc));
        free(path);
        return rc;
    }
    auth__hba_src inner = {.diag = src->diag, .name = path, .depth = src->depth + 1};
    auth__hba_toks t = {.buf = malloc(len + 1)};
    rc = t.buf ? 0 : -ENOMEM;
    for (const char *p = text, *end = text + len; rc == 0 && p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *why = NULL;
        inner.line++;
        if ((rc = auth__hba_tokenize(p, eol, &t, &why)) < 0)
            auth__diag(src->diag, path, inner.line, "%s", why);
        for (size_t i = 0; rc == 0 && i < t.n; i++)
            rc = auth__hba_names_item(nm, &t.it[i], db, &inner);
        p = eol + (nl != NULL);
    }
    free(t.buf);
    free(t.it);
    free(text);
    free(path);
    return rc;
}

int auth__hba_names_item(auth__hba_names *nm, const auth__hba_item *it, bool db,
                         const auth__hba_src *src)
{
    const char *s = it->s;
    if (it->quoted)
        return names_add(nm, s);
    if (strcmp(s, "all") == 0) {
        nm->all = true;
        return 0;
    }
    if (db && strcmp(s, "sameuser") == 0) {
        nm->sameuser = true;
        return 0;
    }
    if (db && strcmp(s, "replication") == 0)
        return 0; /* only replication connections, which never reach Sluice */
    if (s[0] == '@')
        return names_file(nm, s + 1, db, src);
    const char *unsupported = NULL;
    if (s[0] == '+')
        unsupported = "+group (role membership) is not supported";
    else if (strcmp(s, "samerole") == 0 || strcmp(s, "samegroup") == 0)
        unsupported = "samerole and samegroup are not supported";
    else if (!db && strcmp(s, "sameuser") == 0)
        unsupported = "sameuser belongs in the database column";
    if (unsupported) {
        auth__diag(src->diag, src->name, src->line, "%s (quote the name if it is one)",
                   unsupported);
        return -EINVAL;
    }
    return names_add(nm, s);
}

bool auth__hba_names_match(const auth__hba_names *nm, const char *name, const char *user)
{
    if (nm->all || (nm->sameuser && user && strcmp(name, user) == 0))
        return true;
    for (size_t i = 0; i < nm->n; i++)
        if (strcmp(nm->name[i], name) == 0)
            return true;
    return false;
}
