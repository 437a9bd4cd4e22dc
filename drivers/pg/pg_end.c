/* pg_end: names and SQLSTATEs of the reasons a connection ended (see pg_end.h). */
#include <stddef.h>

#include "drivers/pg/pg_end.h"

static const struct {
    const char *name, *sqlstate;
} ends[] = {
    [PG_END_NONE] = {"none", NULL},
    [PG_END_CLIENT_LEFT] = {"client_left", NULL},
    [PG_END_CANCEL_REQUEST] = {"cancel_request", NULL},
    [PG_END_PROTOCOL] = {"protocol", "08P01"},
    [PG_END_TOO_BIG] = {"too_big", "54000"},
    [PG_END_LOGIN_REFUSED] = {"login_refused", "28000"},
    [PG_END_LIMIT] = {"limit", "53300"},
    [PG_END_LOGIN_TIMEOUT] = {"login_timeout", "08P01"},
    [PG_END_WAIT_TIMEOUT] = {"wait_timeout", "08P01"},
    [PG_END_IDLE_TX_TIMEOUT] = {"idle_transaction_timeout", "25P03"},
    [PG_END_QUERY_TIMEOUT] = {"query_timeout", "57014"},
    [PG_END_CONNECT_FAILED] = {"connect_failed", "08006"},
    [PG_END_SERVER_GONE] = {"server_gone", "08006"},
    [PG_END_CLIENT_GONE] = {"client_gone", NULL},
    [PG_END_RESET_FAILED] = {"reset_failed", NULL},
    [PG_END_POOL_SHRINK] = {"pool_shrink", NULL},
    [PG_END_NO_MEMORY] = {"no_memory", "53200"},
    [PG_END_IO_ERROR] = {"io_error", NULL},
    [PG_END_SHUTDOWN] = {"shutdown", "57P01"},
    [PG_END_AUTH_FAILED] = {"auth_failed", "28P01"},
    [PG_END_ADMIN] = {"admin", "57P01"},
    [PG_END_LIFETIME] = {"server_lifetime", NULL},
    [PG_END_SERVER_IDLE] = {"server_idle_timeout", NULL},
    [PG_END_CHECK_FAILED] = {"server_check_failed", NULL},
    [PG_END_CLIENT_IDLE] = {"client_idle_timeout", "08P01"},
    [PG_END_MAKE_ROOM] = {"make_room", NULL},
    [PG_END_AUTODB_IDLE] = {"autodb_idle_timeout", NULL},
    [PG_END_RECONFIGURED] = {"reconfigured", NULL},
};

const char *pg_end_name(pg_end why)
{
    return (unsigned)why < sizeof ends / sizeof ends[0] ? ends[why].name : "unknown";
}

const char *pg_end_sqlstate(pg_end why)
{
    return (unsigned)why < sizeof ends / sizeof ends[0] ? ends[why].sqlstate : NULL;
}
