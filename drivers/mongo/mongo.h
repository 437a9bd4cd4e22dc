/*
 * mongo: the MongoDB front end. Each [mongodb] line gets its own listener; client OP_MSG traffic
 * is forwarded over bounded pools of gateway-owned backend connections.
 */
#ifndef SLUICE_MONGO_H
#define SLUICE_MONGO_H

#include <stdio.h>

#include "config/cfg.h"
#include "gateway/gw.h"

/* Called once per process before any other mongo function (mongoc_init); and once at exit. */
void mongo_global_init(void);
/* Joins the worker threads (a bounded wait) and tears libmongoc down. False when a worker is
 * still running: the process must then leave with _exit, skipping the exit handlers that would
 * free libmongoc's and OpenSSL's state under that thread. */
bool mongo_global_cleanup(void);

/* Validates the [mongodb] entries of c (URIs parsed with mongoc_uri_t). Writes "file:line: msg"
 * lines to diag. Returns 0 when valid, -1 otherwise. Used by --check and before start. */
int mongo_config_check(const cfg *c, FILE *diag);

/* Starts listeners and pools for every [mongodb] entry of ctx->cfg. Returns 0 or a negative
 * errno-style code (already logged). Sets ctx->mongo. */
int mongo_gateway_start(gw_ctx *ctx);

/* Graceful shutdown: closes the listeners; clients are closed as their commands and
 * transactions end, or with wait_clients only when they leave. */
void mongo_gateway_drain(gw_ctx *ctx, bool wait_clients);
/* Whether the drain is over (no client left); true when the front end is not running. */
bool mongo_gateway_drained(const gw_ctx *ctx, bool wait_clients);
/* After a reload replaced ctx->cfg: each front takes its line's new settings (pool_size,
 * timeouts, max_client_conn). 0, or -1 when a change needs a restart (logged). */
int mongo_gateway_reconfigure(gw_ctx *ctx);

/* Begins shutdown: closes listeners, client and backend connections and worker threads so that
 * the loop can run to completion. Frees ctx->mongo once every handle is closed. */
void mongo_gateway_stop(gw_ctx *ctx);

#endif
