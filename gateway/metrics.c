/* gw_metrics: the routes of the operations endpoint and what each one answers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/http.h"
#include "gateway/metrics.h"
#include "gateway/prom.h"

/* A scrape is a few kB of request at most; the limits only have to stop abuse. */
static const gw_http_limits limits = {
    .max_request = 8192,
    .request_deadline_ms = 5000,
    .write_deadline_ms = 30000,
    .max_conns = 16,
};

struct gw_metrics {
    gw_ctx *ctx;
    gw_http *http;
    double start_time; /* Unix time of gw_metrics_start, for process_start_time_seconds */
};

/* Why Sluice is not ready, or NULL when it is. */
static const char *not_ready(const gw_metrics *m)
{
    const gw_ctx *ctx = m->ctx;
    if (ctx->stopping)
        return "shutting down";
    if (!ctx->pg || (ctx->cfg->n_mongo > 0 && !ctx->mongo))
        return "not listening";
    return NULL;
}

static void serve_ready(gw_metrics *m, gw_http_reply *r)
{
    const char *why = not_ready(m);
    if (why) {
        r->status = 503;
        fprintf(r->body, "not ready: %s\n", why);
    } else {
        fputs("ready\n", r->body);
    }
}

static void serve_metrics(gw_metrics *m, gw_http_reply *r)
{
    r->content_type = GW_PROM_CONTENT_TYPE;
    gw_prom_family(r->body, "sluice_up", "gauge", "1 while Sluice runs and is not shutting down.");
    gw_prom_u64(r->body, "sluice_up", NULL, 0, m->ctx->stopping ? 0 : 1);
    gw_metrics__process(r->body, m->start_time);
}

static void route(void *arg, const char *path, gw_http_reply *r)
{
    gw_metrics *m = arg;
    if (strcmp(path, "/metrics") == 0)
        serve_metrics(m, r);
    else if (strcmp(path, "/health") == 0)
        fputs("ok\n", r->body);
    else if (strcmp(path, "/ready") == 0)
        serve_ready(m, r);
    else
        r->status = 404;
}

int gw_metrics_start(gw_ctx *ctx, gw_metrics **out)
{
    *out = NULL;
    const cfg *c = ctx->cfg;
    if (c->metrics_port == 0)
        return 0;
    gw_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    *m = (gw_metrics){.ctx = ctx, .start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9};
    int rc = gw_http_start(ctx, c->metrics_addr, c->metrics_port, &limits, route, m, &m->http);
    if (rc != 0) {
        gw_error(ctx, "could not listen for metrics on %s:%d: %s", c->metrics_addr, c->metrics_port,
                 uv_strerror(rc));
        free(m);
        return rc;
    }
    gw_info(ctx, "metrics on http://%s:%d/metrics", c->metrics_addr, c->metrics_port);
    *out = m;
    return 0;
}

void gw_metrics_stop(gw_metrics *m)
{
    if (!m)
        return;
    gw_http_stop(m->http);
    free(m); /* the server holds no pointer to m once stopped: no request is served after */
}
