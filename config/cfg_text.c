/* cfg_text: the small text utilities of the config loader (name suggestions, k=v lists). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "config/cfg_int.h"

static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return (size_t)-1;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost =
                tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *cfg__nearest(const char *name, const char *const *valid, size_t stride)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (const char *const *v = valid; *v; v = (const char *const *)((const char *)v + stride)) {
        size_t d = distance(name, *v);
        if (d < best_d) {
            best_d = d;
            best = *v;
        }
    }
    /* Suggest only plausible typos: at most a third of the name wrong. */
    size_t limit = strlen(name) / 3 + 1;
    return best_d <= limit ? best : NULL;
}

int cfg__split_pairs(const char *s, cfg_kv **out, size_t *n, const char **err)
{
    *out = NULL;
    *n = 0;
    *err = NULL;
    size_t cap = 0;
    const char *p = s;
    size_t len = strlen(s);
    char *key = malloc(len + 1), *val = malloc(len + 1);
    if (!key || !val)
        goto oom;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        size_t k = 0;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            key[k++] = *p++;
        key[k] = 0;
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=' || k == 0) {
            *err = "expected keyword=value pairs";
            goto fail;
        }
        p++;
        while (isspace((unsigned char)*p))
            p++;
        size_t v = 0;
        if (*p == '\'') {
            p++;
            for (;;) {
                if (!*p) {
                    *err = "unterminated quoted value";
                    goto fail;
                }
                if (*p == '\\' && p[1]) {
                    val[v++] = p[1];
                    p += 2;
                } else if (*p == '\'' && p[1] == '\'') {
                    val[v++] = '\'';
                    p += 2;
                } else if (*p == '\'') {
                    p++;
                    break;
                } else {
                    val[v++] = *p++;
                }
            }
        } else {
            while (*p && !isspace((unsigned char)*p)) {
                if (*p == '\\' && p[1])
                    p++;
                val[v++] = *p++;
            }
        }
        val[v] = 0;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            cfg_kv *grown = realloc(*out, cap * sizeof **out);
            if (!grown)
                goto oom;
            *out = grown;
        }
        (*out)[*n].key = strdup(key);
        (*out)[*n].value = strdup(val);
        if (!(*out)[*n].key || !(*out)[*n].value) {
            free((*out)[*n].key);
            free((*out)[*n].value);
            goto oom;
        }
        (*n)++;
    }
    free(key);
    free(val);
    return 0;
oom:
    *err = NULL;
fail:
    for (size_t i = 0; i < *n; i++) {
        free((*out)[i].key);
        free((*out)[i].value);
    }
    free(*out);
    *out = NULL;
    *n = 0;
    free(key);
    free(val);
    return -1;
}
