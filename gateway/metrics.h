/*
 * gw_metrics: the operations endpoint from the metrics_addr / metrics_port keys. GET /metrics
 * answers in the Prometheus text format (pools, clients, servers, counters and histograms of
 * both front ends, and the process_* metrics); GET /health answers 200 while the process runs;
 * GET /ready answers 200 while Sluice listens, is not shutting down and every pool can reach
 * its server, else 503 with the reason.
 */
#ifndef SLUICE_GW_METRICS_H
#define SLUICE_GW_METRICS_H

#include <stdio.h>

#include "gateway/gw.h"

typedef struct gw_metrics gw_metrics;

/* Starts the endpoint when ctx->cfg->metrics_port is not 0. Returns 0 with the endpoint in *out
 * (NULL when it is off), or a negative errno-style code (logged). Like gw_http, it never keeps
 * the loop alive: after uv_run returns, call gw_metrics_stop and run the loop again. */
int gw_metrics_start(gw_ctx *ctx, gw_metrics **out);
/* Closes the endpoint; released once its handles have closed. NULL is allowed. */
void gw_metrics_stop(gw_metrics *m);

/* Internal to the endpoint's files. */
void gw_metrics__process(FILE *f, double start_time); /* the process_* families */

#endif
