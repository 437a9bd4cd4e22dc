/* mongo_ready: the MongoDB side of the metrics endpoint's /ready. */
#ifndef SLUICE_MONGO_READY_H
#define SLUICE_MONGO_READY_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/gw.h"

/* False, with "entry: error" in why (n bytes), when an entry's last backend connect failed
 * within MONGO_READY_WINDOW_MS (the window: see pg_ready.h). True when ctx->mongo is not
 * running. */
#define MONGO_READY_WINDOW_MS 30000
bool mongo_servers_reachable(gw_ctx *ctx, char *why, size_t n);

#endif
