/*
 * pg_limits: how many servers a pool may have. Its own bound is pool_size, plus
 * reserve_pool_size while its first client has waited reserve_pool_timeout; the bounds it
 * shares with other pools are max_db_connections (the pools of one database) and
 * max_user_connections (the pools of one user). A shared bound is handed out by age: the pool
 * whose first client has waited longest gets the next server, so a busy pool that keeps all
 * of its servers busy cannot starve the others. Counting walks the pool list: that happens when
 * a server is opened or placed, never per message.
 */
#include <string.h>

#include "drivers/pg/pg_int.h"

enum { SHARE_DB = 1, SHARE_USER = 2 };

/* The shared bounds a and b are both under (SHARE_* bits). */
static unsigned shared(const pg_pool *a, const pg_pool *b)
{
    unsigned w = 0;
    if (a->db_max > 0 && strcmp(a->dbname, b->dbname) == 0)
        w |= SHARE_DB;
    if (a->gw->ctx->cfg->max_user_connections > 0 && strcmp(a->user, b->user) == 0)
        w |= SHARE_USER;
    return w;
}

uint32_t pg_pool_db_servers(pg_gateway *gw, const char *dbname)
{
    uint32_t n = 0;
    for (const gw_list *it = gw->pools.next; it != &gw->pools; it = it->next) {
        const pg_pool *q = gw_container_of(it, pg_pool, node);
        if (strcmp(q->dbname, dbname) == 0)
            n += q->n_servers;
    }
    return n;
}

/* The shared bounds that `more` servers more would take p past (SHARE_* bits). */
static unsigned full(const pg_pool *p, uint32_t more)
{
    uint32_t db = 0, user = 0;
    for (const gw_list *it = p->gw->pools.next; it != &p->gw->pools; it = it->next) {
        const pg_pool *q = gw_container_of(it, pg_pool, node);
        unsigned w = shared(p, q);
        db += w & SHARE_DB ? q->n_servers : 0;
        user += w & SHARE_USER ? q->n_servers : 0;
    }
    int user_max = p->gw->ctx->cfg->max_user_connections;
    return (p->db_max > 0 && db + more > (uint32_t)p->db_max ? SHARE_DB : 0) |
           (user_max > 0 && user + more > (uint32_t)user_max ? SHARE_USER : 0);
}

/* When the first client of p began to wait, or UINT64_MAX when none waits. */
static uint64_t first_wait(const pg_pool *p)
{
    gw_list *it = gw_list_first(&p->waiters);
    return it ? gw_container_of(it, pg_client, wait_node)->since : UINT64_MAX;
}

uint32_t pg_limits_pool_max(const pg_pool *p, uint64_t now)
{
    const cfg *conf = p->gw->ctx->cfg;
    uint32_t max = (uint32_t)p->size;
    uint64_t since = first_wait(p);
    if (conf->reserve_pool_size > 0 && since != UINT64_MAX &&
        now - since >= conf->reserve_pool_timeout_ms)
        max += (uint32_t)conf->reserve_pool_size;
    return max;
}

/* The pool under one of the bounds in `which` whose first client has waited longer than any of
 * p's and that has room of its own, or NULL. */
static pg_pool *older_waiter(pg_pool *p, unsigned which, uint64_t now)
{
    pg_pool *best = NULL;
    uint64_t best_since = first_wait(p);
    for (gw_list *it = p->gw->pools.next; it != &p->gw->pools; it = it->next) {
        pg_pool *q = gw_container_of(it, pg_pool, node);
        uint64_t since = first_wait(q);
        if (q == p || !(shared(p, q) & which) || since >= best_since ||
            q->n_servers >= pg_limits_pool_max(q, now))
            continue;
        best = q;
        best_since = since;
    }
    return best;
}

/* The idle server that has waited longest in a pool sharing one of `which` with p. */
static pg_server *idle_elsewhere(pg_pool *p, unsigned which)
{
    pg_server *victim = NULL;
    for (gw_list *it = p->gw->pools.next; it != &p->gw->pools; it = it->next) {
        pg_pool *q = gw_container_of(it, pg_pool, node);
        if (q == p || !(shared(p, q) & which) || gw_list_empty(&q->idle))
            continue;
        /* The idle list is LIFO: its tail has been idle longest. */
        pg_server *s = gw_container_of(q->idle.prev, pg_server, idle_node);
        if (!victim || s->since < victim->since)
            victim = s;
    }
    return victim;
}

bool pg_limits_may_open(pg_pool *p, uint64_t now)
{
    if (p->n_servers >= pg_limits_pool_max(p, now))
        return false;
    /* The last free server of a shared bound goes to the client that waited longest; the
     * janitor, or a server released by p, opens it for that pool. */
    unsigned last = full(p, 2);
    if (last && older_waiter(p, last, now))
        return false;
    unsigned reached = full(p, 1);
    if (!reached)
        return true;
    /* Only a client that waits may take another pool's idle server: pools kept at
     * min_pool_size would otherwise take each other's in turn. */
    if (gw_list_empty(&p->waiters) && gw_list_empty(&p->login_waiters))
        return false;
    pg_server *victim = idle_elsewhere(p, reached);
    if (!victim)
        return false;
    pg_server_close(victim, PG_END_MAKE_ROOM,
                    "a pool under the same max_db_connections or max_user_connections needs a "
                    "server");
    return full(p, 1) == 0;
}

pg_pool *pg_limits_longer_waiter(pg_pool *p)
{
    if (!shared(p, p))
        return NULL; /* no shared bound: no walk over the pools each time a server comes back */
    unsigned reached = full(p, 1);
    return reached ? older_waiter(p, reached, gw_now(p->gw->ctx)) : NULL;
}
