/*
 * process: start-up, signals and shutdown of the sluice process (gateway/process.h).
 *
 * A graceful shutdown closes the listeners and asks each front end to drain in the requested
 * mode; a timer checks every DRAIN_POLL_MS whether they have, and at shutdown_timeout closes
 * what is left. Once the front ends are stopped, the loop ends when their last handle closes.
 */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "drivers/mongo/mongo.h"
#include "drivers/mongo/mongo_ready.h"
#include "drivers/pg/pg.h"
#include "drivers/pg/pg_ready.h"
#include "gateway/admin.h"
#include "gateway/metrics.h"
#include "gateway/process.h"
#include "gateway/sdnotify.h"
#include "gateway/tls.h"

#define DRAIN_POLL_MS 50
/* Free pooled memory the loop keeps: up to 16 MB of 16 kB blocks, as much again in 64 kB blocks,
 * and as many write requests (gw_bufpool_init). */
#define GW_CTX_BUFS_KEEP 1024

static gw_process *process_of(gw_ctx *ctx)
{
    return (gw_process *)ctx;
}

static void on_closed(uv_handle_t *h)
{
    (void)h; /* the handles live in gw_process, which outlives the loop */
}

/* Closes every session now; the loop then runs out. */
static void stop_now(gw_process *pr, const char *why)
{
    gw_ctx *ctx = &pr->ctx;
    if (pr->stopped)
        return;
    pr->stopped = true;
    ctx->stopping = true;
    gw_info(ctx, "shutting down: %s", why);
    pg_gateway_stop(ctx);
    mongo_gateway_stop(ctx);
    if (pr->drain_open) {
        uv_close((uv_handle_t *)&pr->drain, on_closed);
        pr->drain_open = false;
    }
    if (pr->signals_open) {
        uv_close((uv_handle_t *)&pr->sig_int, on_closed);
        uv_close((uv_handle_t *)&pr->sig_term, on_closed);
        uv_close((uv_handle_t *)&pr->sig_hup, on_closed);
        pr->signals_open = false;
    }
}

static void on_drain_tick(uv_timer_t *t)
{
    gw_process *pr = t->data;
    gw_ctx *ctx = &pr->ctx;
    bool wait_clients = pr->mode == GW_SHUTDOWN_WAIT_FOR_CLIENTS;
    if (pg_gateway_drained(ctx, wait_clients) && mongo_gateway_drained(ctx, wait_clients)) {
        stop_now(pr, wait_clients ? "every client has left" : "every transaction has ended");
        return;
    }
    if (pr->drain_deadline && gw_now(ctx) >= pr->drain_deadline) {
        gw_warn(ctx, "shutdown_timeout (%.1f s) reached: closing the sessions that are left",
                ctx->cfg->shutdown_timeout_ms / 1000.0);
        stop_now(pr, "shutdown_timeout");
    }
}

static const char *mode_name(gw_shutdown_mode mode)
{
    switch (mode) {
    case GW_SHUTDOWN_IMMEDIATE:
        return "immediate";
    case GW_SHUTDOWN_WAIT_FOR_SERVERS:
        return "waiting for transactions to end";
    case GW_SHUTDOWN_WAIT_FOR_CLIENTS:
        return "waiting for clients to leave";
    }
    return "?";
}

/* gw_process_ops.shutdown. A request while a drain is under way does not wait: an operator
 * who asks twice wants it over (PgBouncer does the same with a second signal). */
static void process_shutdown(gw_ctx *ctx, gw_shutdown_mode mode)
{
    gw_process *pr = process_of(ctx);
    if (pr->stopped)
        return;
    gw_sd_notify(ctx, "STOPPING=1\nSTATUS=shutting down (%s)", mode_name(mode));
    if (mode == GW_SHUTDOWN_IMMEDIATE || pr->draining) {
        stop_now(pr, pr->draining ? "a second request does not wait" : "immediate");
        return;
    }
    pr->draining = true;
    pr->mode = mode;
    ctx->stopping = true;
    uint64_t limit = ctx->cfg->shutdown_timeout_ms;
    pr->drain_deadline = limit ? gw_now(ctx) + limit : 0;
    gw_info(ctx, "shutdown requested: no new connections, %s (shutdown_timeout %.1f s)",
            mode_name(mode), limit / 1000.0);
    bool wait_clients = mode == GW_SHUTDOWN_WAIT_FOR_CLIENTS;
    pg_gateway_drain(ctx, wait_clients);
    mongo_gateway_drain(ctx, wait_clients);
    int rc = uv_timer_init(ctx->loop, &pr->drain);
    if (rc == 0) {
        pr->drain_open = true;
        pr->drain.data = pr;
        rc = uv_timer_start(&pr->drain, on_drain_tick, 0, DRAIN_POLL_MS);
    }
    if (rc != 0) {
        gw_error(ctx, "cannot time the shutdown: %s", uv_strerror(rc));
        stop_now(pr, "no timer for a graceful shutdown");
    }
}

static const gw_process_ops process_ops = {.reload = gw_process_reload,
                                           .shutdown = process_shutdown};

static void on_signal(uv_signal_t *h, int signum)
{
    gw_ctx *ctx = h->data;
    switch (signum) {
    case SIGHUP:
        if (!ctx->stopping)
            gw_process_reload(ctx);
        break;
    case SIGTERM:
        process_shutdown(ctx, GW_SHUTDOWN_WAIT_FOR_SERVERS);
        break;
    default:
        process_shutdown(ctx, GW_SHUTDOWN_IMMEDIATE);
        break;
    }
}

int gw_process_init(gw_process *pr, uv_loop_t *loop, cfg *conf, struct gw_tls_conf *client_tls)
{
    *pr = (gw_process){.ctx = {.loop = loop,
                               .cfg = conf,
                               .cfg_gen = 1,
                               .client_tls = client_tls,
                               .process = &process_ops}};
    gw_bufpool_init(&pr->ctx.bufs, GW_CTX_BUFS_KEEP);
    uv_signal_t *sigs[] = {&pr->sig_int, &pr->sig_term, &pr->sig_hup};
    const int nums[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < 3; i++) {
        /* uv_signal_init cannot fail on Linux (no allocation): the handles are closed as a
         * group. */
        int rc = uv_signal_init(loop, sigs[i]);
        if (rc != 0)
            return rc;
        sigs[i]->data = &pr->ctx;
    }
    pr->signals_open = true;
    for (size_t i = 0; i < 3; i++) {
        int rc = uv_signal_start(sigs[i], on_signal, nums[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* What /ready asks the front ends. */
static gw_metrics_reach_fn *const reach[] = {pg_servers_reachable, mongo_servers_reachable};

int gw_process_run(gw_process *pr)
{
    gw_ctx *ctx = &pr->ctx;
    const cfg *conf = ctx->cfg;
    int exit_code = 0;
    if (gw_metrics_start(ctx, reach, 2, &pr->metrics) != 0 || pg_gateway_start(ctx) != 0 ||
        (conf->n_mongo > 0 && mongo_gateway_start(ctx) != 0)) {
        exit_code = 1;
        stop_now(pr, "start-up failed");
    } else {
        gw_info(ctx, "sluice started (pool_mode=%s)", cfg_pool_mode_name(conf->pool_mode));
        gw_sd_notify(ctx, "READY=1\nSTATUS=accepting connections\nMAINPID=%lu",
                     (unsigned long)getpid());
    }
    uv_run(ctx->loop, UV_RUN_DEFAULT);
    /* The metrics endpoint answers (/ready: 503) while the front ends drain, and does not keep
     * the loop alive; close it now that they are done. */
    gw_metrics_stop(pr->metrics);
    pr->metrics = NULL;
    uv_run(ctx->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(ctx->loop) != 0) {
        gw_error(ctx, "event loop closed with handles still open");
        exit_code = 1;
    }
    gw_admin_free(ctx);
    gw_bufpool_destroy(&ctx->bufs);
    cfg_free(ctx->cfg);
    ctx->cfg = NULL;
    gw_tls_conf_release(ctx->client_tls);
    ctx->client_tls = NULL;
    return exit_code;
}
