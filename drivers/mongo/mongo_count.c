/*
 * mongo_count: the statistics a [mongodb] entry keeps on the request path, with PgBouncer's
 * meanings carried over: every command is a query; a command outside a multi-statement
 * transaction is a transaction of its own, and a transaction runs from its first statement to
 * the reply to its commitTransaction or abortTransaction. GW_STATS_OFF leaves these empty.
 */
#include <string.h>

#include "drivers/mongo/mongo_core.h"

void mongo__count_request(mongo_client *c, const char *cmd)
{
#if GW_STATS_ON
    gw_pool_stats *st = &c->front->stats;
    GW_STAT_ADD(st->mongo_cmds[gw_mongo_cmd_of(cmd, strlen(cmd))], 1);
    c->req_start_us = gw_stats_now_us();
#else
    (void)c, (void)cmd;
#endif
}

void mongo__count_reply(mongo_client *c)
{
#if GW_STATS_ON
    if (c->req_start_us == 0)
        return;
    gw_pool_stats *st = &c->front->stats;
    uint64_t now = gw_stats_now_us();
    uint64_t q = now - c->req_start_us;
    GW_STAT_ADD(st->queries, 1);
    GW_STAT_ADD(st->query_time_us, q);
    GW_STAT_HIST(&st->query_hist, q);
    uint64_t start = c->req_start_us;
    c->req_start_us = 0;
    if (c->r.in_txn) {
        if (c->r.starts_txn || c->xact_start_us == 0)
            c->xact_start_us = start;
        if (strcmp(c->r.cmd, "commitTransaction") != 0 && strcmp(c->r.cmd, "abortTransaction") != 0)
            return;
        start = c->xact_start_us;
        c->xact_start_us = 0;
    }
    GW_STAT_ADD(st->xacts, 1);
    GW_STAT_ADD(st->xact_time_us, now - start);
    GW_STAT_HIST(&st->xact_hist, now - start);
#else
    (void)c;
#endif
}
