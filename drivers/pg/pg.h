/*
 * pg: the PostgreSQL front end and pooler. Listens on TCP and a Unix socket, speaks protocol 3.0 to
 * clients and multiplexes them onto pools of libpq-established server connections.
 */
#ifndef SLUICE_PG_H
#define SLUICE_PG_H

#include "gateway/gw.h"

/* Opens the listeners from ctx->cfg. Returns 0 or a negative errno-style code (already logged).
 * Sets ctx->pg. */
int pg_gateway_start(gw_ctx *ctx);
/* Removes libpq's PG* variables from the environment, so server logins use only what the
 * config gives: a PGPASSWORD, PGPASSFILE or PGSERVICE of Sluice's own must not log clients in.
 * Call once at start-up, before any thread exists. */
void pg_scrub_environment(void);

/* Graceful shutdown: closes the listeners; then every client is closed as soon as it has no
 * transaction under way, or with wait_clients only when it leaves. */
void pg_gateway_drain(gw_ctx *ctx, bool wait_clients);
/* Whether the drain is over (no client left); true when the front end is not running. */
bool pg_gateway_drained(const gw_ctx *ctx, bool wait_clients);
/* After a reload replaced ctx->cfg: every pool applies its database's new line now. */
void pg_gateway_reconfigure(gw_ctx *ctx);

/* Closes listeners, clients and servers so the loop can finish; frees ctx->pg when done. */
void pg_gateway_stop(gw_ctx *ctx);

#endif
