/*
 * pg_authq: the shell's side of client authentication: the client's address, and auth_query
 * lookups. The lookup of a user missing from auth_file (a query on a server connection of
 * auth_user) is not built yet: every lookup reports "not available", and the core treats the
 * user as unknown (the client gets 28P01 after a full exchange, the log says why).
 */
#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

int pg_shell_client_peer(const pg_client *c, struct sockaddr_storage *out)
{
    pg_stream *h = pg_conn_stream((pg_conn *)&c->conn);
    if (h->handle.type != UV_TCP)
        return 0;
    int len = (int)sizeof *out;
    return uv_tcp_getpeername(&h->tcp, (struct sockaddr *)out, &len) == 0 ? 1 : -1;
}

int pg_shell_auth_lookup(pg_client *c)
{
    gw_warn(pg_ctx(&c->conn), "auth_query: lookups are not available yet (user \"%s\")",
            pg_auth_user(c));
    return -1;
}

void pg_shell_auth_lookup_cancel(pg_client *c)
{
    (void)c; /* no lookup is ever under way */
}
