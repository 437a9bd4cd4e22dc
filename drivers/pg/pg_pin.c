/*
 * pg_pin: session state Sluice cannot carry from one server connection to another.
 *
 * In transaction mode a client's transactions run on whichever server is free. Parameters the
 * server reports (ParameterStatus) follow the client: Sluice SETs them on each server it links.
 * Everything else a statement can leave in the session (a SET of an unreported parameter, a
 * role, a temporary table, a session advisory lock, an SQL prepared statement, a cursor WITH
 * HOLD, a LISTEN that cannot be emulated, a loaded library) would reach the next client of that
 * server. A client that runs such a statement is pinned, as AWS RDS Proxy does: it keeps its
 * server until it disconnects, and the server is reset with DISCARD ALL before anyone else gets
 * it. Statements that touch nothing cost no round trip: the check is a scan of the text.
 */
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_sql.h"

typedef struct param_scan {
    const pg_pool *pool;
    bool untracked;
} param_scan;

/* A SET or RESET of a parameter the server does not report cannot be followed. */
static void on_param(const char *name, size_t n, void *arg)
{
    param_scan *ps = arg;
    char k[64];
    if (n == 0 || n >= sizeof k) {
        ps->untracked = true;
        return;
    }
    memcpy(k, name, n);
    k[n] = 0;
    if (!pg_params_get(&ps->pool->defaults, k) || !pg_param_settable(k))
        ps->untracked = true;
}

/* Checked in this order; the first that applies names the pin. */
static const struct {
    unsigned flag;
    const char *why;
} pin_reasons[] = {
    {PG_SQL_ROLE, "SET ROLE or SET SESSION AUTHORIZATION"},
    {PG_SQL_SET_CONFIG, "set_config() for the session"},
    {PG_SQL_TEMP, "a temporary object"},
    {PG_SQL_ADVISORY_LOCK, "a session-level advisory lock"},
    {PG_SQL_PREPARE, "SQL PREPARE, EXECUTE or DEALLOCATE"},
    {PG_SQL_HOLD_CURSOR, "a cursor WITH HOLD"},
    {PG_SQL_LISTEN, "LISTEN or UNLISTEN inside a transaction or with other statements"},
    {PG_SQL_LOAD, "LOAD of a library"},
    {PG_SQL_OPAQUE, "a DO block or other SQL Sluice cannot see into"},
};

const char *pg_pin_reason(const pg_pool *pool, const char *sql, size_t len, unsigned *flags)
{
    param_scan ps = {pool, false};
    unsigned f = pg_sql_scan(sql, len, on_param, &ps);
    if (flags)
        *flags = f;
    /* SETs of parameters the server reports follow the client (ParameterStatus). */
    if ((f & PG_SQL_SESSION_SET) && ps.untracked)
        return "SET or RESET of a parameter the server does not report";
    for (size_t i = 0; i < sizeof pin_reasons / sizeof pin_reasons[0]; i++)
        if (f & pin_reasons[i].flag)
            return pin_reasons[i].why;
    return NULL;
}

void pg_pin(pg_client *c, const char *reason)
{
    if (c->pinned)
        return;
    pg_gateway *gw = c->conn.gw;
    c->pinned = true;
    gw->pinned_clients++;
    gw->pinned_total++;
    gw_info(gw->ctx,
            "client %u pinned to server %u: %s (it keeps this server until it disconnects; "
            "%u clients pinned now, %llu so far)",
            c->pid, c->server ? c->server->id : 0, reason, gw->pinned_clients,
            (unsigned long long)gw->pinned_total);
}

void pg_unpin(pg_client *c)
{
    if (!c->pinned)
        return;
    c->pinned = false;
    c->conn.gw->pinned_clients--;
}
