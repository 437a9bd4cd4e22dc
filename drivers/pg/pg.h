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

/* Closes listeners, clients and servers so the loop can finish; frees ctx->pg when done. */
void pg_gateway_stop(gw_ctx *ctx);

#endif
