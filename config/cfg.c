/*
 * cfg: loading a configuration file in one pass, checks that need the whole file, and the
 * lookups the gateway uses on a loaded cfg.
 *
 * Every problem is reported and loading goes on, so one run shows all of them; the cfg is handed
 * out only when there were none.
 */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "config/cfg.h"
#include "config/cfg_int.h"

void cfg__error(cfg__loader *l, int line, const char *fmt, ...)
{
    l->errors++;
    if (!l->diag)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(l->diag, "%s:%d: ", l->name, line);
    vfprintf(l->diag, fmt, ap);
    fputc('\n', l->diag);
    va_end(ap);
}

void cfg__unknown(cfg__loader *l, const char *what, const char *name, const char *where,
                  const char *const *valid, size_t stride)
{
    const char *best = cfg__nearest(name, valid, stride);
    if (best)
        cfg__error(l, l->line, "unknown %s '%s'%s; did you mean '%s'?", what, name, where, best);
    else
        cfg__error(l, l->line, "unknown %s '%s'%s", what, name, where);
}

static void main_key(cfg__loader *l, const char *name, const char *value)
{
    const cfg_key *k = cfg__key(name);
    if (!k) {
        cfg__unknown(l, "key", name, " in [sluice]", &cfg__keys[0].name, sizeof(cfg_key));
        return;
    }
    int *seen = &l->key_line[k - cfg__keys];
    if (*seen) {
        cfg__error(l, l->line, "%s is set twice (first on line %d)", name, *seen);
        return;
    }
    *seen = l->line;
    cfg__set_key(l, k, value, l->line);
}

/* inih's handler. The value comes from the loader (see cfg_lines.c); inih's is a stand-in. */
static int on_entry(void *user, const char *section, const char *name, const char *unused)
{
    (void)unused;
    cfg__loader *l = user;
    const char *value = l->value ? l->value : "";
    int rc = 0;
    if (strcmp(section, "sluice") == 0)
        main_key(l, name, value);
    else if (strcmp(section, "databases") == 0)
        rc = cfg__add_database(l, name, value);
    else if (strcmp(section, "mongodb") == 0)
        rc = cfg__add_mongo(l, name, value);
    else if (!*section)
        cfg__error(l, l->line, "'%s' comes before any [section]", name);
    /* Any other section was reported at its header; its entries are skipped. */
    if (rc != 0)
        cfg__error(l, l->line, "out of memory");
    return 1; /* keep going: report every problem in one pass */
}

/* The line where the later of two [sluice] keys was set: where a conflict between them arose. */
static int later_line(const cfg__loader *l, const char *a, const char *b)
{
    int la = l->key_line[cfg__key(a) - cfg__keys], lb = l->key_line[cfg__key(b) - cfg__keys];
    return la > lb ? la : lb;
}

/* A string not given on a [mongodb] line takes the [sluice] value. 0 or -1 (out of memory). */
static int inherit_str(char **field, const char *main)
{
    if (*field)
        return 0;
    *field = strdup(main ? main : "");
    return *field ? 0 : -1;
}

/* The line's client TLS settings: the [sluice] ones unless given, and checked as those are. */
static int finish_mongo_tls(cfg__loader *l, cfg_mongo *m)
{
    const cfg *c = l->c;
    if (m->client_tls_sslmode < 0)
        m->client_tls_sslmode = (int)c->client_tls_sslmode;
    if (inherit_str(&m->client_tls_key_file, c->client_tls_key_file) != 0 ||
        inherit_str(&m->client_tls_cert_file, c->client_tls_cert_file) != 0 ||
        inherit_str(&m->client_tls_ca_file, c->client_tls_ca_file) != 0 ||
        inherit_str(&m->client_tls_protocols, c->client_tls_protocols) != 0 ||
        inherit_str(&m->client_tls_ciphers, c->client_tls_ciphers) != 0)
        return -1;
    cfg_tls_mode mode = (cfg_tls_mode)m->client_tls_sslmode;
    if (mode != CFG_TLS_DISABLE && (!*m->client_tls_key_file || !*m->client_tls_cert_file))
        cfg__error(l, m->line,
                   "mongodb entry '%s': client_tls_sslmode %s needs client_tls_key_file and "
                   "client_tls_cert_file",
                   m->name, cfg_tls_mode_name(mode));
    if (mode >= CFG_TLS_VERIFY_CA && !*m->client_tls_ca_file)
        cfg__error(l, m->line, "mongodb entry '%s': client_tls_sslmode %s needs client_tls_ca_file",
                   m->name, cfg_tls_mode_name(mode));
    return 0;
}

static int finish_mongo(cfg__loader *l)
{
    cfg *c = l->c;
    for (size_t i = 0; i < c->n_mongo; i++) {
        cfg_mongo *m = &c->mongo[i];
        if (!m->listen_addr && !(m->listen_addr = strdup(c->listen_addr)))
            return -1;
        if (m->pool_size < 0)
            m->pool_size = c->default_pool_size;
        if (m->query_timeout_ms == UINT64_MAX)
            m->query_timeout_ms = c->query_timeout_ms;
        if (m->query_wait_timeout_ms == UINT64_MAX)
            m->query_wait_timeout_ms = c->query_wait_timeout_ms;
        if (finish_mongo_tls(l, m) != 0)
            return -1;
        if (m->max_db_connections < 0)
            m->max_db_connections = c->max_db_connections;
        if (m->min_pool_size > m->pool_size)
            cfg__error(l, m->line, "mongodb entry '%s': min_pool_size %d exceeds pool_size %d",
                       m->name, m->min_pool_size, m->pool_size);
        if (m->auth_type == CFG_AUTH_SCRAM && (!c->auth_file || !*c->auth_file))
            cfg__error(l, m->line,
                       "mongodb entry '%s': auth_type scram-sha-256 needs auth_file in [sluice] "
                       "(auth_query serves PostgreSQL clients only)",
                       m->name);
        if (!m->listen_port)
            continue; /* reported as missing */
        for (size_t j = 0; j < i; j++)
            if (c->mongo[j].listen_port == m->listen_port)
                cfg__error(l, m->line, "mongodb entry '%s': listen_port %d is already used by '%s'",
                           m->name, m->listen_port, c->mongo[j].name);
        if (m->listen_port == c->listen_port)
            cfg__error(l, m->line,
                       "mongodb entry '%s': listen_port %d is already the PostgreSQL listen_port",
                       m->name, m->listen_port);
    }
    return 0;
}

static int finish(cfg__loader *l)
{
    cfg *c = l->c;
    if (c->min_pool_size > c->default_pool_size)
        cfg__error(l, later_line(l, "min_pool_size", "default_pool_size"),
                   "min_pool_size (%d) is larger than default_pool_size (%d)", c->min_pool_size,
                   c->default_pool_size);
    if (finish_mongo(l) != 0)
        return -1;
    return cfg__load_auth(l);
}

static int load(cfg__loader *l, cfg **out)
{
    *out = NULL;
    cfg *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(l->name)) || cfg__set_defaults(c) != 0) {
        cfg_free(c);
        cfg__error(l, 0, "out of memory");
        return -1;
    }
    l->c = c;
    int rc = ini_parse_stream(cfg__read_line, l, on_entry, l);
    /* The reader hands inih only well-formed lines and has reported the rest. */
    if (rc > 0)
        cfg__error(l, rc, "line not understood");
    else if (rc < 0)
        cfg__error(l, l->line, "out of memory");
    if (finish(l) != 0)
        cfg__error(l, 0, "out of memory");
    free(l->buf);
    PQconninfoFree(l->pq_opts);
    if (l->errors) {
        cfg_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int cfg_load(const char *path, cfg **out, FILE *diag)
{
    cfg__loader l = {.name = path, .diag = diag};
    l.file = fopen(path, "r");
    if (!l.file) {
        if (diag)
            fprintf(diag, "%s: cannot open: %s\n", path, strerror(errno));
        *out = NULL;
        return -1;
    }
    int rc = load(&l, out);
    fclose(l.file);
    return rc;
}

int cfg_load_string(const char *text, const char *name, cfg **out, FILE *diag)
{
    cfg__loader l = {.name = name, .diag = diag, .text = text};
    return load(&l, out);
}

void cfg_free(cfg *c)
{
    if (!c)
        return;
    for (const cfg_key *k = cfg__keys; k->name; k++)
        if (k->type == CFG_T_STR)
            free(*(char **)((char *)c + k->offset));
        else if (k->type == CFG_T_LIST)
            cfg__free_names((cfg_names *)((char *)c + k->offset));
    auth_userlist_free(c->users);
    auth_hba_free(c->hba);
    for (size_t i = 0; i < c->n_dbs; i++) {
        for (size_t j = 0; j < c->dbs[i].n_conn; j++) {
            free(c->dbs[i].conn[j].key);
            free(c->dbs[i].conn[j].value);
        }
        free(c->dbs[i].conn);
        free(c->dbs[i].name);
        free(c->dbs[i].auth_user);
        free(c->dbs[i].auth_dbname);
        free(c->dbs[i].auth_query);
    }
    free(c->dbs);
    for (size_t i = 0; i < c->n_mongo; i++) {
        free(c->mongo[i].name);
        free(c->mongo[i].listen_addr);
        free(c->mongo[i].uri);
        free(c->mongo[i].client_tls_key_file);
        free(c->mongo[i].client_tls_cert_file);
        free(c->mongo[i].client_tls_ca_file);
        free(c->mongo[i].client_tls_protocols);
        free(c->mongo[i].client_tls_ciphers);
    }
    free(c->mongo);
    free(c->path);
    free(c);
}

const cfg_database *cfg_find_database(const cfg *c, const char *name)
{
    const cfg_database *fallback = NULL;
    for (size_t i = 0; i < c->n_dbs; i++) {
        if (strcmp(c->dbs[i].name, name) == 0)
            return &c->dbs[i];
        if (strcmp(c->dbs[i].name, "*") == 0)
            fallback = &c->dbs[i];
    }
    return fallback;
}

int cfg_db_pool_size(const cfg *c, const cfg_database *db)
{
    return db->pool_size > 0 ? db->pool_size : c->default_pool_size;
}

cfg_pool_mode cfg_db_pool_mode(const cfg *c, const cfg_database *db)
{
    return db->pool_mode >= 0 ? (cfg_pool_mode)db->pool_mode : c->pool_mode;
}

int cfg_db_max_connections(const cfg *c, const cfg_database *db)
{
    return db->max_db_connections >= 0 ? db->max_db_connections : c->max_db_connections;
}

const char *cfg_pool_mode_name(cfg_pool_mode m)
{
    return m == CFG_POOL_SESSION ? "session" : "transaction";
}
