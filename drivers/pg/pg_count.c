/*
 * pg_count: the statistics the PostgreSQL core keeps on the message path, with PgBouncer's
 * meanings: a query lasts from the first request after a ReadyForQuery to the ReadyForQuery
 * that answers it; a transaction from its first query to the ReadyForQuery that reports idle.
 * A few adds per query, and the clock read once per loop iteration (gw_ctx.stats_clock_us)
 * for every query that begins or ends in it; GW_STATS_OFF leaves the functions empty.
 */
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_wire.h"

#if GW_STATS_ON
static uint64_t now_us(gw_ctx *ctx)
{
    if (!ctx->stats_clock_us)
        ctx->stats_clock_us = gw_stats_now_us();
    return ctx->stats_clock_us;
}
#endif

void pg_count_wait(pg_client *c, pg_client_state old, pg_client_state st)
{
#if GW_STATS_ON
    if (st == PG_CL_WAITING) {
        c->wait_start_us = now_us(pg_ctx(&c->conn));
    } else if (old == PG_CL_WAITING && c->pool) {
        uint64_t waited = now_us(pg_ctx(&c->conn)) - c->wait_start_us;
        GW_STAT_ADD(c->pool->stats.wait_time_us, waited);
        GW_STAT_HIST(&c->pool->stats.wait_hist, waited);
        c->wait_start_us = 0;
    }
#else
    (void)c, (void)old, (void)st;
#endif
}

void pg_count_request(pg_server *s, uint8_t t)
{
#if GW_STATS_ON
    gw_pool_stats *st = &s->pool->stats;
    if (t == 'P') {
        GW_STAT_ADD(st->client_parses, 1);
        GW_STAT_ADD(st->server_parses, 1);
    } else if (t == 'B') {
        GW_STAT_ADD(st->binds, 1);
    }
    if (s->query_start_us == 0) {
        s->query_start_us = s->request_us = now_us(pg_ctx(&s->conn));
        if (s->xact_start_us == 0)
            s->xact_start_us = s->query_start_us;
    }
#else
    (void)s, (void)t;
#endif
}

void pg_count_ready(pg_server *s)
{
#if GW_STATS_ON
    if (s->query_start_us == 0)
        return;
    gw_pool_stats *st = &s->pool->stats;
    uint64_t now = now_us(pg_ctx(&s->conn));
    uint64_t q = now - s->query_start_us;
    GW_STAT_ADD(st->queries, 1);
    GW_STAT_ADD(st->query_time_us, q);
    GW_STAT_HIST(&st->query_hist, q);
    s->query_start_us = 0;
    if (s->tx == 'I' && s->xact_start_us) {
        uint64_t x = now - s->xact_start_us;
        GW_STAT_ADD(st->xacts, 1);
        GW_STAT_ADD(st->xact_time_us, x);
        GW_STAT_HIST(&st->xact_hist, x);
        s->xact_start_us = 0;
    }
#else
    (void)s;
#endif
}

void pg_count_error(pg_pool *p, const uint8_t *body, size_t len)
{
#if GW_STATS_ON
    const char *code = pg_error_field(body, len, 'C');
    size_t n = code ? strnlen(code, 5) : 0;
    GW_STAT_CODE(&p->stats.errors, code ? code : "", n >= 2 ? 2 : 0);
#else
    (void)p, (void)body, (void)len;
#endif
}
