/*
 * pg_io: what the shell's files share among themselves (never included by the core): the
 * handles that go with clients and servers, the end-of-iteration flush, the read buffer
 * callback, accepting clients, freeing the gateway.
 */
#ifndef SLUICE_PG_IO_H
#define SLUICE_PG_IO_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <uv.h>

#include "drivers/pg/pg_int.h"
#include "gateway/gw.h"

/* A connection's stream; handle.data points at its pg_conn. */
typedef union pg_stream {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} pg_stream;

/* A client or server is allocated together with the handles the shell keeps for it (one
 * allocation, and no pointer to follow on the hot path); it is freed in the last close callback,
 * after pg_client_closed / pg_server_closed. */
typedef struct pg_io_client {
    pg_stream h;
    pg_client c;
} pg_io_client;

typedef struct pg_io_server {
    pg_stream h;
    PGconn *pq;      /* owned: libpq made the connection and closes it (PQfinish) */
    uv_poll_t *poll; /* connect phase only; freed in its close callback */
    int poll_fd;
    /* Sluice's own login (pg_dial.c; pq is NULL then): the connect request, and the host name
     * lookup, which holds the server while in flight. */
    uv_connect_t connect;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    pg_server s;
} pg_io_server;

static inline pg_io_server *pg_io_server_of(pg_server *s)
{
    return gw_container_of(s, pg_io_server, s);
}

static inline pg_stream *pg_conn_stream(pg_conn *c)
{
    if (c->kind == PG_CONN_CLIENT)
        return &gw_container_of(c, pg_io_client, c.conn)->h;
    return &gw_container_of(c, pg_io_server, s.conn)->h;
}

/* Runs the ready list: processes marked input, writes output, re-evaluates reading. */
void pg_gateway_run_ready(pg_gateway *gw);
int pg_conn_flush(pg_conn *c);
void pg_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
/* The gateway is freed once its own handles are closed and no client or server is left. */
void pg_gateway_maybe_free(pg_gateway *gw);
/* pg_connect.c: frees a closing server once nothing holds it any more. */
void pg_io_server_maybe_free(pg_io_server *io);
/* pg_dial.c: a connection for pg_login (see pg_shell_connect). */
pg_server *pg_dial_connect(pg_pool *pool);
/* pg_accept.c */
void pg_client_accept(pg_gateway *gw, uv_stream_t *listener, bool is_unix);

#endif
