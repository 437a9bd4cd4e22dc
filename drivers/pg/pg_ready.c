/* pg_ready: whether the PostgreSQL pools can reach their servers (see pg_ready.h). */
#include <stdio.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_ready.h"

bool pg_servers_reachable(gw_ctx *ctx, char *why, size_t n)
{
    pg_gateway *gw = ctx->pg;
    if (!gw)
        return true;
    uint64_t now = gw_now(ctx);
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &gw->pools)
    {
        const pg_pool *p = gw_container_of(it, pg_pool, node);
        if (p->last_fail && !p->last_sqlstate[0] && now - p->last_fail < PG_READY_WINDOW_MS) {
            snprintf(why, n, "%s/%s: %s", p->dbname, p->user, p->last_error);
            return false;
        }
    }
    return true;
}
