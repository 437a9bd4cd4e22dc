/* mongo_ready: whether the [mongodb] entries can reach their servers (see mongo_ready.h). */
#include <stdio.h>

#include "drivers/mongo/mongo_int.h"
#include "drivers/mongo/mongo_ready.h"

bool mongo_servers_reachable(gw_ctx *ctx, char *why, size_t n)
{
    mongo_gateway *gw = ctx->mongo;
    if (!gw)
        return true;
    for (size_t i = 0; i < gw->n_fronts; i++) {
        const mongo_front *f = &gw->fronts[i]->core;
        if (f->last_fail && mongo_shell_now(f) - f->last_fail < MONGO_READY_WINDOW_MS) {
            snprintf(why, n, "%s: %s", f->name, f->last_error);
            return false;
        }
    }
    return true;
}
