/*
 * mongo_gateway: the MongoDB front end's entry points. One listener, pool and worker thread per
 * [mongodb] line; a janitor timer drives the core's timeouts (query_wait_timeout, query_timeout)
 * and keeps the fronts' settings in step with reloads.
 *
 * Shell (mongo_core.h says how the layers fit): the core's fronts live inside
 * mongo_shell_front; the core is entered only through its mongo_core_* functions.
 */
#include <errno.h>
#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo.h"
#include "drivers/mongo/mongo_int.h"
#include "drivers/mongo/mongo_redact.h"
#include "drivers/mongo/mongo_wire.h"
#include "gateway/listen.h"

#define MONGO_JANITOR_MS 100

static void log_handler(mongoc_log_level_t level, const char *domain, const char *message,
                        void *user_data)
{
    (void)user_data;
    /* libmongoc's own chatter stays quiet unless it is a problem. Its messages can quote a URI
     * (its option warnings do): redacted like everything else Sluice logs. */
    if (level <= MONGOC_LOG_LEVEL_WARNING) {
        char safe[1024];
        fprintf(stderr, "libmongoc %s: %s\n", domain, mongo_redact(message, safe, sizeof safe));
    }
}

void mongo_global_init(void)
{
    mongoc_log_set_handler(log_handler, NULL);
    mongoc_init();
}

void mongo_global_cleanup(void)
{
    /* A worker thread let go of at shutdown may still be in a server selection; the process is
     * exiting, and tearing libmongoc down under it would be the only way to crash now. */
    if (!mongo__workers_running())
        mongoc_cleanup();
}

int mongo_config_check(const cfg *c, FILE *diag)
{
    int rc = 0;
    for (size_t i = 0; i < c->n_mongo; i++) {
        bson_error_t err;
        mongoc_uri_t *uri = mongoc_uri_new_with_error(c->mongo[i].uri, &err);
        if (!uri) {
            char safe[sizeof err.message];
            if (diag)
                fprintf(diag, "%s:%d: mongodb entry '%s': invalid URI: %s\n", c->path,
                        c->mongo[i].line, c->mongo[i].name,
                        mongo_redact(err.message, safe, sizeof safe));
            rc = -1;
        } else if (mongoc_uri_get_tls(uri)) {
            if (diag)
                fprintf(diag, "%s:%d: mongodb entry '%s': TLS to MongoDB is not supported yet\n",
                        c->path, c->mongo[i].line, c->mongo[i].name);
            rc = -1;
        }
        mongoc_uri_destroy(uri);
        for (size_t j = 0; j < i; j++) {
            if (c->mongo[j].listen_port == c->mongo[i].listen_port &&
                strcmp(c->mongo[j].listen_addr, c->mongo[i].listen_addr) == 0) {
                if (diag)
                    fprintf(diag,
                            "%s:%d: mongodb entry '%s': listen_port %d is already used by "
                            "'%s' (line %d)\n",
                            c->path, c->mongo[i].line, c->mongo[i].name, c->mongo[i].listen_port,
                            c->mongo[j].name, c->mongo[j].line);
                rc = -1;
            }
        }
    }
    return rc;
}

void mongo__gateway_maybe_free(mongo_gateway *gw)
{
    if (!gw->stopping || gw->open_handles > 0 || gw->live > 0)
        return;
    for (size_t i = 0; i < gw->n_fronts; i++) {
        mongo_core_front_free(&gw->fronts[i].core);
        free(gw->fronts[i].uri_string);
    }
    if (gw->ctx->mongo == gw)
        gw->ctx->mongo = NULL;
    free(gw->fronts);
    free(gw);
}

static void on_handle_closed(uv_handle_t *h)
{
    mongo_gateway *gw = h->data;
    gw->open_handles--;
    mongo__gateway_maybe_free(gw);
}

static void copy_settings(mongo_shell_front *sf, const cfg_mongo *m)
{
    mongo_front *f = &sf->core;
    f->pool_size = m->pool_size > 0 ? m->pool_size : 1;
    int main_max = sf->gw->ctx->cfg->max_client_conn;
    f->max_clients = m->max_client_conn > 0 ? m->max_client_conn : main_max > 0 ? main_max : 100;
    f->query_timeout_ms = m->query_timeout_ms;
    f->query_wait_timeout_ms = m->query_wait_timeout_ms;
    f->auth_type = m->auth_type;
}

/* The config object is replaced whole on reload: copy each front's settings from its line,
 * found again by name. A changed uri or listener needs a restart. */
void mongo__refresh_settings(mongo_gateway *gw)
{
    gw_ctx *ctx = gw->ctx;
    if (gw->cfg_gen == ctx->cfg_gen)
        return;
    gw->cfg_gen = ctx->cfg_gen;
    for (size_t i = 0; i < gw->n_fronts; i++) {
        mongo_shell_front *f = &gw->fronts[i];
        const cfg_mongo *m = NULL;
        for (size_t j = 0; j < ctx->cfg->n_mongo; j++)
            if (strcmp(ctx->cfg->mongo[j].name, f->core.name) == 0)
                m = &ctx->cfg->mongo[j];
        if (!m) {
            gw_warn(ctx, "mongo %s: removed from the configuration; it stays until a restart",
                    f->core.name);
            continue;
        }
        if (strcmp(m->uri, f->uri_string) != 0)
            gw_warn(ctx, "mongo %s: a new uri takes effect at the next restart", f->core.name);
        copy_settings(f, m);
    }
}

static void close_listener(mongo_shell_front *f);

static void on_janitor(uv_timer_t *t)
{
    mongo_gateway *gw = t->data;
    mongo__refresh_settings(gw);
    uint64_t now = gw_now(gw->ctx);
    for (size_t i = 0; i < gw->n_fronts; i++) {
        if (gw->draining && gw->fronts[i].listening &&
            gw_listener_quiet((uv_stream_t *)&gw->fronts[i].listener))
            close_listener(&gw->fronts[i]);
        if (gw->draining && !gw->drain_clients)
            mongo_core_drain(&gw->fronts[i].core);
        mongo_core_tick(&gw->fronts[i].core, now);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    mongo_shell_front *sf = listener->data;
    if (status < 0) {
        gw_warn(sf->gw->ctx, "mongo %s: accept: %s", sf->core.name, uv_strerror(status));
        return;
    }
    mongo__refresh_settings(sf->gw);
    mongo__io_accept(sf);
}

/* Everything a stop must be able to walk, even for a front that never started. */
static void init_front(mongo_gateway *gw, mongo_shell_front *sf, const cfg_mongo *m)
{
    gw_ctx *ctx = gw->ctx;
    sf->gw = gw;
    mongo_core_front_init(&sf->core, sf, m->name);
    copy_settings(sf, m);
    sf->connect_timeout_ms =
        ctx->cfg->server_connect_timeout_ms ? (int)ctx->cfg->server_connect_timeout_ms : 15000;
}

static int start_front(mongo_gateway *gw, mongo_shell_front *f, const cfg_mongo *m)
{
    gw_ctx *ctx = gw->ctx;
    f->uri_string = strdup(m->uri);
    if (!f->uri_string)
        return -ENOMEM;
    struct sockaddr_storage ss;
    const char *addr = strcmp(m->listen_addr, "*") == 0 ? "0.0.0.0" : m->listen_addr;
    int rc = strchr(addr, ':') ? uv_ip6_addr(addr, m->listen_port, (struct sockaddr_in6 *)&ss)
                               : uv_ip4_addr(addr, m->listen_port, (struct sockaddr_in *)&ss);
    if (rc == 0)
        rc = gw_tcp_init(ctx->loop, &f->listener, (struct sockaddr *)&ss);
    if (rc == 0) {
        f->listener.data = f;
        f->listening = true; /* closed by the stop from here on */
        gw->open_handles++;
        rc = gw_tcp_bind(&f->listener, (struct sockaddr *)&ss, ctx->cfg->so_reuseport);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&f->listener, 4096, on_connection);
    }
    if (rc != 0) {
        gw_error(ctx, "mongo %s: could not listen on %s:%d: %s", f->core.name, m->listen_addr,
                 m->listen_port, uv_strerror(rc));
        return rc;
    }
    rc = mongo__worker_start(f);
    if (rc != 0) {
        gw_error(ctx, "mongo %s: could not start its worker thread", f->core.name);
        return rc;
    }
    char safe_uri[1024];
    gw_info(ctx, "mongo %s: listening on %s:%d for %s (pool_size %d, max_client_conn %d)",
            f->core.name, m->listen_addr, m->listen_port,
            mongo_redact(m->uri, safe_uri, sizeof safe_uri), f->core.pool_size,
            f->core.max_clients);
    /* Learn the backend's limits (and warm the pool) before the first client's hello. */
    mongo_core_start(&f->core);
    return 0;
}

int mongo_gateway_start(gw_ctx *ctx)
{
    mongo_gateway *gw = calloc(1, sizeof *gw);
    if (!gw)
        return -ENOMEM;
    gw->ctx = ctx;
    gw->cfg_gen = ctx->cfg_gen;
    ctx->mongo = gw;
    gw->fronts = calloc(ctx->cfg->n_mongo, sizeof *gw->fronts);
    if (!gw->fronts)
        return -ENOMEM; /* the stop frees gw: nothing is open yet */
    gw->n_fronts = ctx->cfg->n_mongo;
    for (size_t i = 0; i < gw->n_fronts; i++)
        init_front(gw, &gw->fronts[i], &ctx->cfg->mongo[i]);
    int rc = uv_timer_init(ctx->loop, &gw->janitor);
    if (rc != 0) {
        gw_error(ctx, "mongo: cannot create its timer: %s", uv_strerror(rc));
        return rc;
    }
    gw->janitor.data = gw;
    gw->janitor_open = true;
    gw->open_handles++;
    rc = uv_timer_start(&gw->janitor, on_janitor, MONGO_JANITOR_MS, MONGO_JANITOR_MS);
    if (rc != 0) {
        gw_error(ctx, "mongo: cannot start its timer: %s", uv_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < gw->n_fronts; i++)
        if ((rc = start_front(gw, &gw->fronts[i], &ctx->cfg->mongo[i])) != 0)
            return rc < 0 ? rc : -1;
    return 0;
}

static void close_listener(mongo_shell_front *f)
{
    if (f->listening) {
        f->listener.data = f->gw;
        uv_close((uv_handle_t *)&f->listener, on_handle_closed);
        f->listening = false;
    }
}

void mongo_gateway_drain(gw_ctx *ctx, bool wait_clients)
{
    mongo_gateway *gw = ctx->mongo;
    if (!gw || gw->stopping || gw->draining)
        return;
    gw->draining = true;
    gw->drain_clients = wait_clients;
    /* The janitor closes each listener once its accept queue is empty (gw_listener_quiet) and
     * closes clients as they finish. */
}

bool mongo_gateway_drained(const gw_ctx *ctx, bool wait_clients)
{
    (void)wait_clients; /* either way the drain ends when the last client has gone */
    const mongo_gateway *gw = ctx->mongo;
    if (!gw)
        return true;
    for (size_t i = 0; i < gw->n_fronts; i++)
        if (gw->fronts[i].listening || gw->fronts[i].core.n_clients > 0)
            return false;
    return true;
}

int mongo_gateway_reconfigure(gw_ctx *ctx)
{
    mongo_gateway *gw = ctx->mongo;
    if (gw && !gw->stopping)
        mongo__refresh_settings(gw);
    return 0;
}

void mongo_gateway_stop(gw_ctx *ctx)
{
    mongo_gateway *gw = ctx->mongo;
    if (!gw || gw->stopping)
        return;
    gw->stopping = true;
    if (gw->janitor_open)
        uv_close((uv_handle_t *)&gw->janitor, on_handle_closed);
    for (size_t i = 0; i < gw->n_fronts; i++) {
        mongo_shell_front *f = &gw->fronts[i];
        f->wake.data = gw;
        mongo__worker_stop(f, on_handle_closed);
        close_listener(f);
        mongo_core_stop(&f->core);
    }
    mongo__gateway_maybe_free(gw);
}
