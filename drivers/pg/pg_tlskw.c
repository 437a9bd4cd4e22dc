/*
 * pg_tlskw: server_tls_* keys as libpq keywords (see pg_tlskw.h).
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_tlskw.h"
#include "gateway/tls.h"

static const char *line_value(const cfg_database *db, const char *kw)
{
    for (size_t i = 0; db && i < db->n_conn; i++)
        if (strcmp(db->conn[i].key, kw) == 0)
            return db->conn[i].value;
    return NULL;
}

const char *pg_tlskw_sslmode(const cfg *c, const cfg_database *db)
{
    const char *v = line_value(db, "sslmode");
    return v ? v : cfg_tls_mode_name(c->server_tls_sslmode);
}

/* Adds kw = value (copied) unless the line sets kw or value is empty. */
static int add(pg_tlskw *k, const cfg_database *db, const char *kw, const char *value)
{
    if (!value || !*value || line_value(db, kw))
        return 0;
    char *v = strdup(value);
    if (!v)
        return -1;
    k->kw[k->n] = kw;
    k->val[k->n++] = v;
    return 0;
}

/* A path key resolved against the config file's directory, as the client_tls_* paths are. */
static int add_path(pg_tlskw *k, const cfg *c, const cfg_database *db, const char *kw,
                    const char *path)
{
    if (!path || !*path)
        return 0;
    char *p = cfg_resolve_path(c, path);
    if (!p)
        return -1;
    int rc = add(k, db, kw, p);
    free(p);
    return rc;
}

int pg_tlskw_build(const cfg *c, const cfg_database *db, pg_tlskw *out)
{
    *out = (pg_tlskw){0};
    int min, max;
    if (gw_tls_parse_protocols(c->server_tls_protocols, &min, &max) != 0)
        return -1;
    if (add(out, db, "sslmode", cfg_tls_mode_name(c->server_tls_sslmode)) != 0 ||
        add_path(out, c, db, "sslrootcert", c->server_tls_ca_file) != 0 ||
        add_path(out, c, db, "sslkey", c->server_tls_key_file) != 0 ||
        add_path(out, c, db, "sslcert", c->server_tls_cert_file) != 0 ||
        add(out, db, "ssl_min_protocol_version", gw_tls_protocol_name(min)) != 0 ||
        add(out, db, "ssl_max_protocol_version", gw_tls_protocol_name(max)) != 0) {
        pg_tlskw_free(out);
        return -1;
    }
    return 0;
}

void pg_tlskw_free(pg_tlskw *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->val[i]);
    *k = (pg_tlskw){0};
}
