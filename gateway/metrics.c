/* gw_metrics: the routes of the operations endpoint and what each one answers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    gw_metrics_reach_fn *const *reach;
    size_t n_reach;
};

/* Why Sluice is not ready (into why), or NULL when it is. */
static const char *not_ready(const gw_metrics *m, char *why, size_t n)
{
    gw_ctx *ctx = m->ctx;
    if (ctx->stopping)
        return "shutting down";
    if (!ctx->pg || (ctx->cfg->n_mongo > 0 && !ctx->mongo))
        return "not listening";
    for (size_t i = 0; i < m->n_reach; i++)
        if (!m->reach[i](ctx, why, n))
            return why;
    return NULL;
}

static void serve_ready(gw_metrics *m, gw_http_reply *r)
{
    char buf[512];
    const char *why = not_ready(m, buf, sizeof buf);
    if (why) {
        r->status = 503;
        fprintf(r->body, "not ready: %s\n", why);
    } else {
        fputs("ready\n", r->body);
    }
}

/* The process_* families, named as the Prometheus client libraries name them. */
static void write_process(FILE *f)
{
    gw_process_view p;
    if (gw_process_read(&p) != 0)
        return;
    gw_prom_family(f, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.");
    gw_prom_double(f, "process_cpu_seconds_total", NULL, 0,
                   (double)(p.cpu_user_us + p.cpu_sys_us) / 1e6);
    gw_prom_family(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    gw_prom_u64(f, "process_resident_memory_bytes", NULL, 0, p.rss_bytes);
    gw_prom_family(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    gw_prom_u64(f, "process_virtual_memory_bytes", NULL, 0, p.vsize_bytes);
    gw_prom_family(f, "process_open_fds", "gauge", "Number of open file descriptors.");
    gw_prom_u64(f, "process_open_fds", NULL, 0, p.open_fds);
    gw_prom_family(f, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    gw_prom_u64(f, "process_max_fds", NULL, 0, p.max_fds);
    gw_prom_family(f, "process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.");
    gw_prom_double(f, "process_start_time_seconds", NULL, 0, (double)p.start_at / 1e6);
}

static void serve_metrics(gw_metrics *m, gw_http_reply *r)
{
    r->content_type = GW_PROM_CONTENT_TYPE;
    gw_prom_family(r->body, "sluice_up", "gauge", "1 while Sluice runs and is not shutting down.");
    gw_prom_u64(r->body, "sluice_up", NULL, 0, m->ctx->stopping ? 0 : 1);
    if (gw_metrics__pools(r->body, m->ctx) != 0)
        r->status = 500; /* a partial exposition would read as pools gone */
    write_process(r->body);
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

int gw_metrics_start(gw_ctx *ctx, gw_metrics_reach_fn *const *reach, size_t n_reach,
                     gw_metrics **out)
{
    *out = NULL;
    const cfg *c = ctx->cfg;
    if (c->metrics_port == 0)
        return 0;
    gw_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    *m = (gw_metrics){.ctx = ctx, .reach = reach, .n_reach = n_reach};
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
