/*
 * mongo_gateway: the MongoDB front end's entry points. One listener, pool and worker thread per
 * [mongodb] line; a janitor timer drives the core's timeouts (query_wait_timeout, query_timeout)
 * and keeps the fronts' settings in step with reloads.
 *
 * A reload adds a front for a new line, retires the front of a removed line (its listener
 * closes, its clients leave as their commands and transactions end, then it stops and is
 * freed), and replaces the front of a line whose uri or listener changed: the new front takes
 * over the listening socket when the address is the same, so no connection is refused, while
 * the old one drains on its own backends.
 *
 * Shell (mongo_core.h says how the layers fit): the core's fronts live inside
 * mongo_shell_front; the core is entered only through its mongo_core_* functions.
 */
#include <errno.h>
#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/mongo/mongo.h"
#include "drivers/mongo/mongo_int.h"
#include "drivers/mongo/mongo_redact.h"
#include "drivers/mongo/mongo_wire.h"
#include "gateway/tls_cfg.h"
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

/* How long exit waits for the worker threads let go of at shutdown. One that is only destroying
 * its libmongoc client ends in microseconds, and a handshake ends at once on its shut-down
 * socket; only a server selection or a connect outlasts this, and no exit should wait for that. */
#define MONGO_EXIT_JOIN_MS 1000

bool mongo_global_cleanup(void)
{
    if (!mongo__workers_join(MONGO_EXIT_JOIN_MS))
        return false; /* tearing libmongoc down under that thread would crash it */
    mongoc_cleanup();
    return true;
}

/* The TLS context for m's clients (NULL when its client_tls_sslmode is disable). */
static int line_tls(const cfg *c, const cfg_mongo *m, gw_tls_conf **out, char *err, size_t errlen)
{
    gw_tls_keys k = {
        .sslmode = (cfg_tls_mode)m->client_tls_sslmode,
        .key_file = m->client_tls_key_file,
        .cert_file = m->client_tls_cert_file,
        .ca_file = m->client_tls_ca_file,
        .protocols = m->client_tls_protocols,
        .ciphers = m->client_tls_ciphers,
    };
    return gw_tls_conf_from_keys(c, &k, out, err, errlen);
}

int mongo_config_check(const cfg *c, FILE *diag)
{
    int rc = 0;
    for (size_t i = 0; i < c->n_mongo; i++) {
        /* Built and dropped: a key or certificate that cannot be loaded fails the check, the
         * start and a reload alike. */
        gw_tls_conf *tls;
        char tls_err[256];
        if (line_tls(c, &c->mongo[i], &tls, tls_err, sizeof tls_err) != 0) {
            if (diag)
                fprintf(diag, "%s:%d: mongodb entry '%s': client TLS: %s\n", c->path,
                        c->mongo[i].line, c->mongo[i].name, tls_err);
            rc = -1;
        }
        gw_tls_conf_release(tls);
        bson_error_t err;
        mongoc_uri_t *uri = mongoc_uri_new_with_error(c->mongo[i].uri, &err);
        if (!uri) {
            char safe[sizeof err.message];
            if (diag)
                fprintf(diag, "%s:%d: mongodb entry '%s': invalid URI: %s\n", c->path,
                        c->mongo[i].line, c->mongo[i].name,
                        mongo_redact(err.message, safe, sizeof safe));
            rc = -1;
        } else {
            gw_tls_conf *server_tls;
            bool verify_host;
            if (mongo__uri_tls(uri, &server_tls, &verify_host, tls_err, sizeof tls_err) != 0) {
                if (diag)
                    fprintf(diag, "%s:%d: mongodb entry '%s': %s\n", c->path, c->mongo[i].line,
                            c->mongo[i].name, tls_err);
                rc = -1;
            }
            gw_tls_conf_release(server_tls);
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

static void free_front(mongo_shell_front *sf)
{
    mongo_core_front_free(&sf->core);
    free(sf->uri_string);
    gw_tls_conf_release(sf->client_tls);
    free(sf);
}

void mongo__gateway_maybe_free(mongo_gateway *gw)
{
    if (!gw->stopping || gw->open_handles > 0 || gw->live > 0)
        return;
    for (size_t i = 0; i < gw->n_fronts; i++)
        free_front(gw->fronts[i]);
    if (gw->ctx->mongo == gw)
        gw->ctx->mongo = NULL;
    free(gw->fronts);
    free(gw);
}

void mongo__front_maybe_free(mongo_shell_front *sf)
{
    mongo_gateway *gw = sf->gw;
    if (!sf->retired || !sf->stopped || sf->open_handles > 0 || sf->live > 0 || gw->stopping)
        return; /* a stopping gateway frees every front at once */
    for (size_t i = 0; i < gw->n_fronts; i++)
        if (gw->fronts[i] == sf) {
            gw->fronts[i] = gw->fronts[--gw->n_fronts];
            break;
        }
    gw_info(gw->ctx, "mongo %s: retired front closed", sf->core.name);
    free_front(sf);
}

static void on_handle_closed(uv_handle_t *h)
{
    mongo_gateway *gw = h->data;
    gw->open_handles--;
    mongo__gateway_maybe_free(gw);
}

/* The close callback of a front's own handles (its listener and its worker's wake). */
static void on_front_handle_closed(uv_handle_t *h)
{
    mongo_shell_front *sf = h->data;
    mongo_gateway *gw = sf->gw;
    sf->open_handles--;
    gw->open_handles--;
    mongo__front_maybe_free(sf);
    mongo__gateway_maybe_free(gw);
}

void mongo__front_own_handle(mongo_shell_front *sf, uv_handle_t *h)
{
    h->data = sf;
    sf->open_handles++;
    sf->gw->open_handles++;
}

static void copy_settings(mongo_shell_front *sf, const cfg_mongo *m)
{
    mongo_front *f = &sf->core;
    f->pool_size = m->pool_size > 0 ? m->pool_size : 1;
    /* One deployment is one database as far as max_db_connections goes. */
    if (m->max_db_connections > 0 && m->max_db_connections < f->pool_size)
        f->pool_size = m->max_db_connections;
    f->min_pool_size = m->min_pool_size < f->pool_size ? m->min_pool_size : f->pool_size;
    f->max_idle_ms = m->max_idle_time_ms;
    int main_max = sf->gw->ctx->cfg->max_client_conn;
    f->max_clients = m->max_client_conn > 0 ? m->max_client_conn : main_max > 0 ? main_max : 100;
    f->query_timeout_ms = m->query_timeout_ms;
    f->query_wait_timeout_ms = m->query_wait_timeout_ms;
    f->auth_type = m->auth_type;
    /* The files were loaded by the config check just before; should they fail now, the line
     * keeps the context it had (at start none: TLS clients fail their handshake). */
    gw_tls_conf *tls;
    char err[256];
    if (line_tls(sf->gw->ctx->cfg, m, &tls, err, sizeof err) != 0) {
        gw_error(sf->gw->ctx, "mongo %s: client TLS: %s; keeping the previous settings", f->name,
                 err);
        if (!sf->client_tls) /* fail closed: a line that requires TLS refuses cleartext */
            sf->client_tls_mode = (cfg_tls_mode)m->client_tls_sslmode;
        return;
    }
    gw_tls_conf_release(sf->client_tls);
    sf->client_tls = tls;
    sf->client_tls_mode = (cfg_tls_mode)m->client_tls_sslmode;
}

static const cfg_mongo *find_line(const cfg *c, const char *name)
{
    for (size_t j = 0; j < c->n_mongo; j++)
        if (strcmp(c->mongo[j].name, name) == 0)
            return &c->mongo[j];
    return NULL;
}

/* The config object is replaced whole on reload: each serving front copies its settings from
 * its line, found again by name (mongo_gateway_reconfigure has retired the others). */
void mongo__refresh_settings(mongo_gateway *gw)
{
    gw_ctx *ctx = gw->ctx;
    if (gw->cfg_gen == ctx->cfg_gen)
        return;
    gw->cfg_gen = ctx->cfg_gen;
    for (size_t i = 0; i < gw->n_fronts; i++) {
        mongo_shell_front *f = gw->fronts[i];
        const cfg_mongo *m = f->retired ? NULL : find_line(ctx->cfg, f->core.name);
        if (m)
            copy_settings(f, m);
    }
}

static void close_listener(mongo_shell_front *f)
{
    if (f->listening) {
        uv_close((uv_handle_t *)&f->listener, on_front_handle_closed);
        f->listening = false;
    }
}

/* Lets go of the worker, the listener and every connection of sf. */
static void stop_front(mongo_shell_front *sf)
{
    if (sf->stopped)
        return;
    sf->stopped = true;
    mongo__worker_stop(sf, on_front_handle_closed);
    close_listener(sf);
    mongo_core_stop(&sf->core);
}

/* A front that drains: a graceful shutdown's, or a retired one's. Its listener closes once
 * no connection waits in its queue; clients leave as they finish. */
static void drain_front(mongo_shell_front *sf, bool close_finished)
{
    if (sf->listening && gw_listener_quiet((uv_stream_t *)&sf->listener))
        close_listener(sf);
    if (close_finished)
        mongo_core_drain(&sf->core);
}

static void on_janitor(uv_timer_t *t)
{
    mongo_gateway *gw = t->data;
    mongo__refresh_settings(gw);
    uint64_t now = gw_now(gw->ctx);
    /* Backwards: a retired front may be freed (and swapped out of its slot) on the way. */
    for (size_t i = gw->n_fronts; i-- > 0;) {
        mongo_shell_front *sf = gw->fronts[i];
        if (sf->retired) {
            drain_front(sf, true);
            if (!sf->listening && sf->core.n_clients == 0) {
                stop_front(sf);
                mongo__front_maybe_free(sf);
                continue;
            }
        } else if (gw->draining) {
            drain_front(sf, !gw->drain_clients);
        }
        if (!sf->stopped)
            mongo_core_tick(&sf->core, now);
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

/* A front for line m, in the gateway's list (so that a stop walks it even if it never
 * started), or NULL when out of memory. */
static mongo_shell_front *new_front(mongo_gateway *gw, const cfg_mongo *m)
{
    gw_ctx *ctx = gw->ctx;
    mongo_shell_front **fronts = realloc(gw->fronts, (gw->n_fronts + 1) * sizeof *fronts);
    if (!fronts)
        return NULL;
    gw->fronts = fronts;
    mongo_shell_front *sf = calloc(1, sizeof *sf);
    if (!sf)
        return NULL;
    sf->gw = gw;
    mongo_core_front_init(&sf->core, sf, m->name, &ctx->bufs);
    copy_settings(sf, m);
    sf->connect_timeout_ms =
        ctx->cfg->server_connect_timeout_ms ? (int)ctx->cfg->server_connect_timeout_ms : 15000;
    gw->fronts[gw->n_fronts++] = sf;
    return sf;
}

/* Opens f's listener: a new socket for m's address, or a duplicate of the listening socket of
 * the front f replaces (from: its queued connections are then f's). */
static int listen_front(mongo_gateway *gw, mongo_shell_front *f, const cfg_mongo *m,
                        mongo_shell_front *from)
{
    gw_ctx *ctx = gw->ctx;
    struct sockaddr_storage ss;
    const char *addr = strcmp(m->listen_addr, "*") == 0 ? "0.0.0.0" : m->listen_addr;
    int rc = strchr(addr, ':') ? uv_ip6_addr(addr, m->listen_port, (struct sockaddr_in6 *)&ss)
                               : uv_ip4_addr(addr, m->listen_port, (struct sockaddr_in *)&ss);
    /* An inherited socket needs a handle without one of its own (uv_tcp_open). */
    if (rc == 0)
        rc = from ? uv_tcp_init(ctx->loop, &f->listener)
                  : gw_tcp_init(ctx->loop, &f->listener, (struct sockaddr *)&ss);
    if (rc != 0)
        return rc;
    mongo__front_own_handle(f, (uv_handle_t *)&f->listener);
    f->listening = true; /* closed by the stop from here on */
    if (from) {
        uv_os_fd_t fd;
        rc = uv_fileno((uv_handle_t *)&from->listener, &fd);
        int copy = rc == 0 ? dup(fd) : -1;
        if (rc == 0 && copy < 0)
            rc = uv_translate_sys_error(errno);
        if (rc == 0 && (rc = uv_tcp_open(&f->listener, copy)) != 0)
            close(copy);
    } else {
        rc = gw_tcp_bind(&f->listener, (struct sockaddr *)&ss, ctx->cfg->so_reuseport);
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&f->listener, 4096, on_connection);
    return rc;
}

static int start_front(mongo_gateway *gw, mongo_shell_front *f, const cfg_mongo *m,
                       mongo_shell_front *from)
{
    gw_ctx *ctx = gw->ctx;
    f->uri_string = strdup(m->uri);
    if (!f->uri_string)
        return -ENOMEM;
    snprintf(f->listen_addr, sizeof f->listen_addr, "%s", m->listen_addr);
    f->listen_port = m->listen_port;
    int rc = listen_front(gw, f, m, from);
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
    gw_list_init(&gw->written);
    mongo__io_class_init(gw);
    ctx->mongo = gw;
    mongo__stats_register(gw);
    int rc = uv_check_init(ctx->loop, &gw->written_check);
    if (rc != 0) {
        gw_error(ctx, "mongo: cannot create its check handle: %s", uv_strerror(rc));
        return rc;
    }
    gw->written_check.data = gw;
    gw->written_check_open = true;
    gw->open_handles++;
    rc = uv_timer_init(ctx->loop, &gw->janitor);
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
    /* On a failure the caller stops the gateway, which closes what was opened. */
    for (size_t i = 0; i < ctx->cfg->n_mongo; i++) {
        mongo_shell_front *sf = new_front(gw, &ctx->cfg->mongo[i]);
        if (!sf)
            return -ENOMEM;
        if ((rc = start_front(gw, sf, &ctx->cfg->mongo[i], NULL)) != 0)
            return rc < 0 ? rc : -1;
    }
    return 0;
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
        if (gw->fronts[i]->listening || gw->fronts[i]->core.n_clients > 0)
            return false;
    return true;
}

static bool same_listener(const cfg_mongo *m, const char *addr, int port)
{
    return m->listen_port == port && strcmp(m->listen_addr, addr) == 0;
}

/* Adds and starts a front for m (replacing old, when given). 0, or -1 (logged). */
static int add_front(mongo_gateway *gw, const cfg_mongo *m, mongo_shell_front *old)
{
    mongo_shell_front *sf = new_front(gw, m);
    if (!sf) {
        gw_error(gw->ctx, "mongo %s: out of memory starting it", m->name);
        return -1;
    }
    if (start_front(gw, sf, m, old) != 0) {
        /* Half started: it retires like a removed front. */
        sf->retired = true;
        stop_front(sf);
        mongo__front_maybe_free(sf);
        return -1;
    }
    return 0;
}

int mongo_gateway_reconfigure(gw_ctx *ctx)
{
    mongo_gateway *gw = ctx->mongo;
    if (!gw) {
        if (ctx->cfg->n_mongo == 0)
            return 0;
        int rc = mongo_gateway_start(ctx);
        if (rc != 0)
            mongo_gateway_stop(ctx);
        return rc == 0 ? 0 : -1;
    }
    if (gw->stopping || gw->draining)
        return 0;
    int rc = 0;
    size_t n = gw->n_fronts; /* fronts added below are not looked at again */
    for (size_t i = 0; i < n; i++) {
        mongo_shell_front *sf = gw->fronts[i];
        if (sf->retired)
            continue;
        const cfg_mongo *m = find_line(ctx->cfg, sf->core.name);
        if (m && strcmp(m->uri, sf->uri_string) == 0 &&
            same_listener(m, sf->listen_addr, sf->listen_port))
            continue;
        sf->retired = true;
        if (!m) {
            gw_info(ctx, "mongo %s: removed; it stops listening, its clients may finish",
                    sf->core.name);
            continue;
        }
        gw_info(ctx,
                "mongo %s: uri or listener changed; a new front takes over, the old one's "
                "clients finish on their connections",
                sf->core.name);
        bool inherit = sf->listening && same_listener(m, sf->listen_addr, sf->listen_port);
        if (add_front(gw, m, inherit ? sf : NULL) != 0) {
            gw_error(ctx, "mongo %s: keeps running with its previous uri and listener",
                     sf->core.name);
            sf->retired = false;
            rc = -1;
        } else if (inherit) {
            close_listener(sf); /* the new front holds the socket now */
        }
    }
    for (size_t j = 0; j < ctx->cfg->n_mongo; j++) {
        const cfg_mongo *m = &ctx->cfg->mongo[j];
        bool have = false;
        for (size_t i = 0; i < gw->n_fronts && !have; i++)
            have = !gw->fronts[i]->retired && strcmp(gw->fronts[i]->core.name, m->name) == 0;
        if (!have) {
            gw_info(ctx, "mongo %s: added", m->name);
            if (add_front(gw, m, NULL) != 0)
                rc = -1;
        }
    }
    mongo__refresh_settings(gw);
    return rc;
}

void mongo_gateway_stop(gw_ctx *ctx)
{
    mongo_gateway *gw = ctx->mongo;
    if (!gw || gw->stopping)
        return;
    gw->stopping = true;
    mongo__stats_unregister(gw);
    if (gw->janitor_open)
        uv_close((uv_handle_t *)&gw->janitor, on_handle_closed);
    if (gw->written_check_open) {
        /* Writes still reported are of connections closing now: the core no longer needs
         * their ends (a close reports its own). */
        gw->written_check_open = false;
        uv_close((uv_handle_t *)&gw->written_check, on_handle_closed);
    }
    for (size_t i = 0; i < gw->n_fronts; i++)
        stop_front(gw->fronts[i]);
    mongo__gateway_maybe_free(gw);
}
