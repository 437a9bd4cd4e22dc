/*
 * cfg_auth: the authentication files and the checks between auth keys. The users file and the
 * hba file are read as part of the load, so `--check` validates them and a reload (which builds
 * a whole new cfg) re-reads them; their errors name file:line and fail the load like any other.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "config/cfg_int.h"

/* path as given when absolute, else relative to the config file's directory. Caller frees. */
static char *resolve(const char *cfg_path, const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    const char *slash = strrchr(cfg_path, '/');
    size_t dir = slash ? (size_t)(slash - cfg_path) + 1 : 0;
    size_t len = strlen(path);
    char *out = malloc(dir + len + 1);
    if (!out)
        return NULL;
    memcpy(out, cfg_path, dir);
    memcpy(out + dir, path, len + 1);
    return out;
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

/* Whether some user can be looked up with auth_query: a query, and a user to run it as, in
 * [sluice] or on some database line. */
static bool has_lookup(const cfg *c)
{
    if (!nonempty(c->auth_user)) {
        bool any = false;
        for (size_t i = 0; i < c->n_dbs && !any; i++)
            any = nonempty(c->dbs[i].auth_user) != NULL;
        if (!any)
            return false;
    }
    if (nonempty(c->auth_query))
        return true;
    for (size_t i = 0; i < c->n_dbs; i++)
        if (nonempty(c->dbs[i].auth_query))
            return true;
    return false;
}

/* Where auth_type was set, or 0. */
static int key_line(const cfg__loader *l, const char *name)
{
    return l->key_line[cfg__key(name) - cfg__keys];
}

/* Loads one file through load(); a failed load counts as an error (the loader has said why). */
static int load_file(cfg__loader *l, const char *key, const char *given,
                     int (*load)(const char *, void **, FILE *), void **out)
{
    char *path = resolve(l->name, given);
    if (!path)
        return -1;
    /* The auth loaders need a stream; a caller without one still gets the failure. */
    FILE *diag = l->diag ? l->diag : fopen("/dev/null", "w");
    if (load(path, out, diag) != 0)
        cfg__error(l, key_line(l, key), "%s: '%s' could not be loaded", key, path);
    if (diag && diag != l->diag)
        fclose(diag);
    free(path);
    return 0;
}

static int load_users(const char *path, void **out, FILE *diag)
{
    return auth_userlist_load(path, (auth_userlist **)out, diag);
}

static int load_hba(const char *path, void **out, FILE *diag)
{
    return auth_hba_load(path, (auth_hba **)out, diag);
}

int cfg__load_auth(cfg__loader *l)
{
    cfg *c = l->c;
    if (nonempty(c->auth_file) &&
        load_file(l, "auth_file", c->auth_file, load_users, (void **)&c->users) != 0)
        return -1;
    if (nonempty(c->auth_hba_file) &&
        load_file(l, "auth_hba_file", c->auth_hba_file, load_hba, (void **)&c->hba) != 0)
        return -1;
    int line = key_line(l, "auth_type");
    switch (c->auth_type) {
    case CFG_AUTH_HBA:
        if (!nonempty(c->auth_hba_file))
            cfg__error(l, line, "auth_type hba needs auth_hba_file");
        break;
    case CFG_AUTH_PLAIN:
    case CFG_AUTH_MD5:
    case CFG_AUTH_SCRAM:
        if (!nonempty(c->auth_file) && !has_lookup(c))
            cfg__error(l, line,
                       "auth_type %s needs auth_file, or auth_user and auth_query to look users "
                       "up",
                       cfg_auth_type_name(c->auth_type));
        break;
    case CFG_AUTH_TRUST:
    case CFG_AUTH_CERT:
        break;
    }
    return 0;
}

const char *cfg_db_auth_user(const cfg *c, const cfg_database *db)
{
    return db && db->auth_user ? nonempty(db->auth_user) : nonempty(c->auth_user);
}

const char *cfg_db_auth_dbname(const cfg *c, const cfg_database *db)
{
    return db && db->auth_dbname ? nonempty(db->auth_dbname) : nonempty(c->auth_dbname);
}

const char *cfg_db_auth_query(const cfg *c, const cfg_database *db)
{
    return db && db->auth_query ? nonempty(db->auth_query) : nonempty(c->auth_query);
}
