/*
 * gw_metrics: the operations endpoint from the metrics_addr / metrics_port keys. GET /metrics
 * answers in the Prometheus text format (pools, clients, servers, counters and histograms of
 * both front ends, and the process_* metrics); GET /health answers 200 while the process runs;
 * GET /ready answers 200 while Sluice listens, is not shutting down and every pool can reach
 * its server, else 503 with the reason.
 */
#ifndef SLUICE_GW_METRICS_H
#define SLUICE_GW_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "gateway/gw.h"

typedef struct gw_metrics gw_metrics;

/* A front end's answer to /ready's question: false, with the reason in why (n bytes), when one
 * of its pools cannot reach its server. The gateway knows no driver, so main hands these in. */
typedef bool gw_metrics_reach_fn(gw_ctx *ctx, char *why, size_t n);

/* Starts the endpoint when ctx->cfg->metrics_port is not 0. reach: n_reach functions /ready
 * asks (the array must outlive the endpoint). Returns 0 with the endpoint in *out (NULL when it
 * is off), or a negative errno-style code (logged). Like gw_http, it never keeps the loop alive:
 * after uv_run returns, call gw_metrics_stop and run the loop again. */
int gw_metrics_start(gw_ctx *ctx, gw_metrics_reach_fn *const *reach, size_t n_reach,
                     gw_metrics **out);
/* Closes the endpoint; released once its handles have closed. NULL is allowed. */
void gw_metrics_stop(gw_metrics *m);

/* The pool families (metrics_pools.c): 0, or -ENOMEM with part of them written. */
int gw_metrics__pools(FILE *f, gw_ctx *ctx);

#endif
