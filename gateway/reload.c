/*
 * reload: SIGHUP and the admin console's RELOAD. The file is loaded and checked whole before
 * anything changes; then the keys whose reload policy is "restart" keep their running values
 * (logged by name), the new config replaces the old one whole, and each front end applies what
 * changed: pools whose [databases] line changed are rebuilt as their servers finish their
 * transactions, [mongodb] entries are started, stopped or rebuilt.
 */
#include <stdio.h>
#include <string.h>

#include "drivers/mongo/mongo.h"
#include "drivers/pg/pg.h"
#include "gateway/process.h"
#include "gateway/sdnotify.h"
#include "gateway/tls_cfg.h"

static const cfg_database *find_db(const cfg *c, const char *name)
{
    for (size_t i = 0; i < c->n_dbs; i++)
        if (strcmp(c->dbs[i].name, name) == 0)
            return &c->dbs[i];
    return NULL;
}

static bool same_db(const cfg_database *a, const cfg_database *b)
{
    if (a->n_conn != b->n_conn || a->pool_size != b->pool_size || a->pool_mode != b->pool_mode ||
        a->max_db_connections != b->max_db_connections)
        return false;
    for (size_t i = 0; i < a->n_conn; i++)
        if (strcmp(a->conn[i].key, b->conn[i].key) != 0 ||
            strcmp(a->conn[i].value, b->conn[i].value) != 0)
            return false;
    return true;
}

/* One line per [databases] entry added, removed or changed (names only: a connection string
 * may hold a password). */
static void log_database_changes(gw_ctx *ctx, const cfg *old, const cfg *next)
{
    for (size_t i = 0; i < next->n_dbs; i++) {
        const cfg_database *was = find_db(old, next->dbs[i].name);
        if (!was)
            gw_info(ctx, "reload: database %s added", next->dbs[i].name);
        else if (!same_db(was, &next->dbs[i]))
            gw_info(ctx, "reload: database %s changed", next->dbs[i].name);
    }
    for (size_t i = 0; i < old->n_dbs; i++)
        if (!find_db(next, old->dbs[i].name))
            gw_info(ctx,
                    "reload: database %s removed: new clients are refused, connected "
                    "ones may finish",
                    old->dbs[i].name);
}

/* Loads and checks the file: 0 with *out set, or -1 (reported). */
static int load_checked(gw_ctx *ctx, cfg **out, struct gw_tls_conf **tls)
{
    if (cfg_load(ctx->cfg->path, out, stderr) != 0)
        return -1;
    if (mongo_config_check(*out, stderr) != 0)
        return -1;
    char err[512];
    if (gw_tls_conf_from_cfg(*out, tls, err, sizeof err) != 0) {
        /* err begins "client TLS: " or "server TLS: ". */
        gw_error(ctx, "reload of %s refused: %s", ctx->cfg->path, err);
        return -1;
    }
    return 0;
}

int gw_process_reload(gw_ctx *ctx)
{
    uint64_t t0 = uv_hrtime();
    gw_sd_notify_reloading(ctx);
    cfg *next = NULL;
    struct gw_tls_conf *tls = NULL;
    if (load_checked(ctx, &next, &tls) != 0) {
        cfg_free(next);
        gw_error(ctx, "reload of %s failed; keeping the running configuration", ctx->cfg->path);
        gw_sd_notify(ctx, "READY=1\nSTATUS=reload failed; running the previous configuration");
        return -1;
    }
    cfg *old = ctx->cfg;
    const char *names[16];
    size_t n = cfg_restart_keys(old, next, names, sizeof names / sizeof names[0]);
    for (size_t i = 0; i < n && i < sizeof names / sizeof names[0]; i++)
        gw_warn(ctx, "reload: %s changed; it takes effect at the next restart", names[i]);
    cfg_keep_restart_keys(next, old);
    log_database_changes(ctx, old, next);

    /* Connections already in TLS keep the context they began with (they hold a reference). */
    gw_tls_conf_release(ctx->client_tls);
    ctx->client_tls = tls;
    ctx->cfg = next;
    ctx->cfg_gen++;
    pg_gateway_reconfigure(ctx);
    int rc = mongo_gateway_reconfigure(ctx);
    cfg_free(old);
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    gw_info(ctx, "configuration reloaded from %s in %.3f ms", next->path, ms);
    gw_sd_notify(ctx, "READY=1\nSTATUS=accepting connections (reloaded)");
    return rc == 0 ? 0 : -1;
}
