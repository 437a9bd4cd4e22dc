/*
 * pg_end: why a PostgreSQL client or server connection ended. Every close records one of these;
 * it is logged with the connection's context and, where the protocol still allows a message,
 * reaches the client as an ErrorResponse (the caller picks the SQLSTATE, pg_end_sqlstate gives
 * the usual one).
 */
#ifndef SLUICE_PG_END_H
#define SLUICE_PG_END_H

typedef enum pg_end {
    PG_END_NONE,            /* still open */
    PG_END_CLIENT_LEFT,     /* the client closed its socket or sent Terminate */
    PG_END_CANCEL_REQUEST,  /* a CancelRequest connection, done once handled */
    PG_END_PROTOCOL,        /* malformed or unexpected bytes from the peer (08P01) */
    PG_END_TOO_BIG,         /* a message over its bound (54000) */
    PG_END_LOGIN_REFUSED,   /* the startup packet names something Sluice refuses, or the login
                             * does (hba, certificate, SCRAM channel binding: 28000) */
    PG_END_LIMIT,           /* max_client_conn or another per-client limit (53300, 54000) */
    PG_END_LOGIN_TIMEOUT,   /* client_login_timeout */
    PG_END_WAIT_TIMEOUT,    /* query_wait_timeout */
    PG_END_IDLE_TX_TIMEOUT, /* idle_transaction_timeout (25P03) */
    PG_END_QUERY_TIMEOUT,   /* query_timeout, and the server ignored the cancel */
    PG_END_CONNECT_FAILED,  /* no server connection could be opened (the server's SQLSTATE) */
    PG_END_SERVER_GONE,     /* the server connection broke under a linked client (08006) */
    PG_END_CLIENT_GONE,     /* a server's client left mid-request: its end is unknown */
    PG_END_RESET_FAILED,    /* ROLLBACK or server_reset_query failed */
    PG_END_POOL_SHRINK,     /* the pool is larger than pool_size after a reload */
    PG_END_NO_MEMORY,       /* an allocation failed: only this connection ends (53200) */
    PG_END_IO_ERROR,        /* a socket read or write failed */
    PG_END_SHUTDOWN,        /* Sluice is stopping (57P01) */
    PG_END_AUTH_FAILED,     /* wrong password or unknown user (28P01) */
    PG_END_ADMIN,           /* the admin console closed it (KILL, KILL_CLIENT, RECONNECT) */
    PG_END_LIFETIME,        /* server_lifetime: the server is older than that */
    PG_END_SERVER_IDLE,     /* server_idle_timeout: idle in the pool too long */
    PG_END_CHECK_FAILED,    /* server_check_query failed, or the server went with it */
    PG_END_CLIENT_IDLE,     /* client_idle_timeout (08P01) */
    PG_END_MAKE_ROOM,       /* closed so a pool under the same max_db_connections or
                             * max_user_connections can open one */
    PG_END_AUTODB_IDLE,     /* its "*" pool is freed: autodb_idle_timeout */
    PG_END_RECONFIGURED,    /* a reload changed or removed the server's database line */
} pg_end;

/* A short stable name for logs ("client_left", "protocol", ...). */
const char *pg_end_name(pg_end why);
/* The SQLSTATE a client is usually sent for why; NULL when the client gets no message (it left,
 * or the socket failed). */
const char *pg_end_sqlstate(pg_end why);

#endif
