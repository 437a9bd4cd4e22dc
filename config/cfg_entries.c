/*
 * cfg_entries: the lines of [databases] and [mongodb], each a name and a list of keyword=value
 * pairs in libpq's conninfo syntax (PgBouncer's [databases] format).
 */
#include <stdlib.h>
#include <string.h>

#include "config/cfg_int.h"

/* Keys a [databases] line may carry besides libpq's, removed from conn[]. */
static const char *const pool_keys[] = {
    "pool_size", "pool_mode", "max_db_connections", "auth_user", "auth_dbname", "auth_query", NULL};

/* PgBouncer per-database settings Sluice lacks: named as such, not as unknown libpq keywords. */
static const char *const pgbouncer_only[] = {"min_pool_size",   "reserve_pool",
                                             "connect_query",   "datestyle",
                                             "timezone",        "max_db_client_connections",
                                             "server_lifetime", NULL};

static const char *const mongo_keys[] = {"listen_addr",
                                         "listen_port",
                                         "uri",
                                         "pool_size",
                                         "query_timeout",
                                         "query_wait_timeout",
                                         "max_client_conn",
                                         "auth_type",
                                         "client_tls_sslmode",
                                         "client_tls_key_file",
                                         "client_tls_cert_file",
                                         "client_tls_ca_file",
                                         "client_tls_protocols",
                                         "client_tls_ciphers",
                                         "min_pool_size",
                                         "max_idle_time",
                                         "max_db_connections",
                                         NULL};

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

static void free_pairs(cfg_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

/* Splits value, reporting syntax errors and keywords given twice; 0 and the pairs, or -1 after
 * reporting (*oom tells whether the cause was memory). */
static int split(cfg__loader *l, const char *what, const char *name, const char *value, cfg_kv **kv,
                 size_t *n, bool *oom)
{
    const char *err;
    *oom = false;
    if (cfg__split_pairs(value, kv, n, &err) != 0) {
        *oom = !err;
        cfg__error(l, l->line, "%s '%s': %s", what, name, err ? err : "out of memory");
        return -1;
    }
    int dups = 0;
    for (size_t i = 0; i < *n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp((*kv)[i].key, (*kv)[j].key) == 0) {
                cfg__error(l, l->line, "%s '%s': '%s' is given twice", what, name, (*kv)[i].key);
                dups++;
                break;
            }
    if (dups) {
        free_pairs(*kv, *n);
        return -1;
    }
    return 0;
}

/* Whether kw is a libpq connection keyword; if not, reports it with the nearest valid one. */
static bool check_libpq_keyword(cfg__loader *l, const char *db, const char *kw, bool *oom)
{
    if (!l->pq_opts)
        l->pq_opts = PQconndefaults();
    if (!l->pq_opts) {
        *oom = true; /* libpq fails here only when it cannot allocate */
        return false;
    }
    size_t n = 0;
    for (PQconninfoOption *o = l->pq_opts; o->keyword; o++) {
        if (strcmp(o->keyword, kw) == 0)
            return true;
        n++;
    }
    if (in_list(pgbouncer_only, kw)) {
        cfg__error(l, l->line, "database '%s': '%s' is a PgBouncer setting Sluice does not support",
                   db, kw);
        return false;
    }
    const char **names = calloc(n + sizeof pool_keys / sizeof *pool_keys, sizeof *names);
    if (!names) {
        *oom = true;
        return false;
    }
    for (size_t i = 0; i < n; i++)
        names[i] = l->pq_opts[i].keyword;
    for (size_t i = 0; pool_keys[i]; i++)
        names[n + i] = pool_keys[i];
    char where[256];
    snprintf(where, sizeof where, " in database '%s'", db);
    cfg__unknown(l, "connection keyword", kw, where, names, sizeof *names);
    free(names);
    return false;
}

/* Moves *v into *field (the line's value, owned by the caller until then). */
static void take_str(char **field, char **v)
{
    free(*field);
    *field = *v;
    *v = NULL;
}

/* A [databases] key that is not libpq's; takes the value when it keeps it. */
static int pool_key(cfg__loader *l, cfg_database *db, const char *k, char **value)
{
    long n;
    cfg_pool_mode mode;
    const char *v = *value;
    if (strcmp(k, "auth_user") == 0) {
        take_str(&db->auth_user, value);
        return 0;
    }
    if (strcmp(k, "auth_dbname") == 0) {
        take_str(&db->auth_dbname, value);
        return 0;
    }
    if (strcmp(k, "auth_query") == 0) {
        take_str(&db->auth_query, value);
        return 0;
    }
    if (strcmp(k, "pool_mode") == 0) {
        if (cfg__parse_pool_mode(v, &mode) == 0)
            db->pool_mode = (int)mode;
        else
            cfg__error(l, l->line,
                       "database '%s': pool_mode: expected session or transaction, got '%s'",
                       db->name, v);
        return 0;
    }
    long min = strcmp(k, "pool_size") == 0 ? 1 : 0;
    if (cfg__parse_int(v, CFG__INT_MAX, &n) != 0 || n < min) {
        cfg__error(l, l->line,
                   "database '%s': %s: expected a whole number from %ld to %d, got '%s'", db->name,
                   k, min, CFG__INT_MAX, v);
        return 0;
    }
    if (min)
        db->pool_size = (int)n;
    else
        db->max_db_connections = (int)n;
    return 0;
}

int cfg__add_database(cfg__loader *l, const char *name, const char *value)
{
    cfg *c = l->c;
    for (size_t i = 0; i < c->n_dbs; i++)
        if (strcmp(c->dbs[i].name, name) == 0) {
            cfg__error(l, l->line, "database '%s' is defined twice (first on line %d)", name,
                       c->dbs[i].line);
            return 0;
        }
    cfg_kv *kv;
    size_t n;
    bool oom;
    if (split(l, "database", name, value, &kv, &n, &oom) != 0)
        return oom ? -1 : 0;

    cfg_database db = {.pool_size = -1, .pool_mode = -1, .max_db_connections = -1, .line = l->line};
    db.name = strdup(name);
    /* conn[] keeps the pairs in file order; kv[] gives up the ones moved there. */
    db.conn = calloc(n ? n : 1, sizeof *db.conn);
    cfg_database *grown = realloc(c->dbs, (c->n_dbs + 1) * sizeof *c->dbs);
    if (grown)
        c->dbs = grown;
    if (!db.name || !db.conn || !grown) {
        free(db.name);
        free(db.conn);
        free_pairs(kv, n);
        return -1;
    }
    for (size_t i = 0; i < n && !oom; i++) {
        if (in_list(pool_keys, kv[i].key)) {
            pool_key(l, &db, kv[i].key, &kv[i].value);
        } else if (check_libpq_keyword(l, name, kv[i].key, &oom)) {
            db.conn[db.n_conn++] = kv[i];
            kv[i].key = kv[i].value = NULL;
        }
    }
    free_pairs(kv, n);
    /* Stored even when oom, so that cfg_free releases it. */
    c->dbs[c->n_dbs++] = db;
    return oom ? -1 : 0;
}

static int set_str(char **field, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return -1;
    free(*field);
    *field = s;
    return 0;
}

static int mongo_key(cfg__loader *l, cfg_mongo *m, const char *k, const char *v)
{
    long n;
    uint64_t ms;
    if (strcmp(k, "listen_addr") == 0)
        return set_str(&m->listen_addr, v);
    if (strcmp(k, "uri") == 0)
        return set_str(&m->uri, v);
    char **tls_str = strcmp(k, "client_tls_key_file") == 0    ? &m->client_tls_key_file
                     : strcmp(k, "client_tls_cert_file") == 0 ? &m->client_tls_cert_file
                     : strcmp(k, "client_tls_ca_file") == 0   ? &m->client_tls_ca_file
                     : strcmp(k, "client_tls_protocols") == 0 ? &m->client_tls_protocols
                     : strcmp(k, "client_tls_ciphers") == 0   ? &m->client_tls_ciphers
                                                              : NULL;
    if (tls_str)
        return set_str(tls_str, v);
    if (strcmp(k, "client_tls_sslmode") == 0) {
        cfg_tls_mode mode;
        if (cfg__parse_tls_mode(v, &mode) == 0)
            m->client_tls_sslmode = (int)mode;
        else
            cfg__error(l, l->line,
                       "mongodb entry '%s': client_tls_sslmode: expected disable, allow, prefer, "
                       "require, verify-ca or verify-full, got '%s'",
                       m->name, v);
        return 0;
    }
    if (strcmp(k, "listen_port") == 0 || strcmp(k, "pool_size") == 0 ||
        strcmp(k, "max_client_conn") == 0) {
        bool port = strcmp(k, "listen_port") == 0;
        long max = port ? 65535 : CFG__INT_MAX;
        if (cfg__parse_int(v, max, &n) != 0 || n < 1)
            cfg__error(l, l->line,
                       "mongodb entry '%s': %s: expected a whole number from 1 to %ld, got '%s'",
                       m->name, k, max, v);
        else if (port)
            m->listen_port = (int)n;
        else if (strcmp(k, "pool_size") == 0)
            m->pool_size = (int)n;
        else
            m->max_client_conn = (int)n;
        return 0;
    }
    if (strcmp(k, "min_pool_size") == 0 || strcmp(k, "max_db_connections") == 0) {
        /* 0 is meaningful for both: no connection kept, no limit. */
        if (cfg__parse_int(v, CFG__INT_MAX, &n) != 0)
            cfg__error(l, l->line,
                       "mongodb entry '%s': %s: expected a whole number from 0 to %d, got '%s'",
                       m->name, k, CFG__INT_MAX, v);
        else if (strcmp(k, "min_pool_size") == 0)
            m->min_pool_size = (int)n;
        else
            m->max_db_connections = (int)n;
        return 0;
    }
    if (strcmp(k, "query_timeout") == 0 || strcmp(k, "query_wait_timeout") == 0 ||
        strcmp(k, "max_idle_time") == 0) {
        if (cfg__parse_duration_ms(v, &ms) != 0)
            cfg__error(l, l->line,
                       "mongodb entry '%s': %s: expected seconds (e.g. 15, 0.5) or a number "
                       "with ms, s, min or h, got '%s'",
                       m->name, k, v);
        else if (strcmp(k, "query_timeout") == 0)
            m->query_timeout_ms = ms;
        else if (strcmp(k, "max_idle_time") == 0)
            m->max_idle_time_ms = ms;
        else
            m->query_wait_timeout_ms = ms;
        return 0;
    }
    if (strcmp(k, "auth_type") == 0) {
        /* MongoDB's own methods: SCRAM (both of its SHA variants) or none. */
        if (strcmp(v, "trust") == 0)
            m->auth_type = CFG_AUTH_TRUST;
        else if (strcmp(v, "scram-sha-256") == 0)
            m->auth_type = CFG_AUTH_SCRAM;
        else
            cfg__error(l, l->line,
                       "mongodb entry '%s': auth_type: expected trust or scram-sha-256, got '%s'",
                       m->name, v);
        return 0;
    }
    char where[256];
    snprintf(where, sizeof where, " in mongodb entry '%s'", m->name);
    cfg__unknown(l, "key", k, where, mongo_keys, sizeof(char *));
    return 0;
}

int cfg__add_mongo(cfg__loader *l, const char *name, const char *value)
{
    cfg *c = l->c;
    for (size_t i = 0; i < c->n_mongo; i++)
        if (strcmp(c->mongo[i].name, name) == 0) {
            cfg__error(l, l->line, "mongodb entry '%s' is defined twice (first on line %d)", name,
                       c->mongo[i].line);
            return 0;
        }
    cfg_kv *kv;
    size_t n;
    bool oom;
    if (split(l, "mongodb entry", name, value, &kv, &n, &oom) != 0)
        return oom ? -1 : 0;

    cfg_mongo *grown = realloc(c->mongo, (c->n_mongo + 1) * sizeof *c->mongo);
    if (!grown) {
        free_pairs(kv, n);
        return -1;
    }
    c->mongo = grown;
    cfg_mongo *m = &c->mongo[c->n_mongo];
    /* UINT64_MAX and -1 mark "not given": cfg.c fills them from [sluice] once the file is read,
     * since [sluice] may come later in the file. */
    *m = (cfg_mongo){.pool_size = -1,
                     .client_tls_sslmode = -1,
                     .max_db_connections = -1,
                     .query_timeout_ms = UINT64_MAX,
                     .query_wait_timeout_ms = UINT64_MAX,
                     .line = l->line};
    m->name = strdup(name);
    if (!m->name) {
        free_pairs(kv, n);
        return -1;
    }
    c->n_mongo++;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = mongo_key(l, m, kv[i].key, kv[i].value);
    free_pairs(kv, n);
    if (rc != 0)
        return -1;
    if (!m->uri)
        cfg__error(l, l->line, "mongodb entry '%s': uri= is required", name);
    if (!m->listen_port)
        cfg__error(l, l->line, "mongodb entry '%s': listen_port= is required", name);
    return 0;
}
