/* pg_ready: the PostgreSQL side of the metrics endpoint's /ready. */
#ifndef SLUICE_PG_READY_H
#define SLUICE_PG_READY_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/gw.h"

/* False, with "database/user: error" in why (n bytes), when a pool's last attempt to open a
 * server connection failed to reach the server within PG_READY_WINDOW_MS. A server that
 * answered with an error (a wrong password, a database that does not exist) was reached: a
 * client naming a bogus database through `*` must not take Sluice out of a load balancer. The
 * window keeps a pool nobody uses any more from holding /ready at 503 after its server is
 * back (no client, no new attempt). True when ctx->pg is not running. */
#define PG_READY_WINDOW_MS 30000
bool pg_servers_reachable(gw_ctx *ctx, char *why, size_t n);

#endif
