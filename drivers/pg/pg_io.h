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
#include "gateway/transport.h"

/* The callbacks of every client's and server's transport (pg_io.c); the owner is the pg_conn. */
extern const gw_transport_cbs pg_transport_cbs;

/* A client or server is allocated together with the handles the shell keeps for it (one
 * allocation, and no pointer to follow on the hot path); it is freed in the last close callback,
 * after pg_client_closed / pg_server_closed. */
typedef struct pg_io_client {
    gw_transport t; /* plain, or TLS once the client asked for it */
    pg_client c;    /* (with the shell's flags io_saw_input and io_direct) */
} pg_io_client;

typedef struct pg_io_server {
    gw_transport t;  /* plain, or TLS: libpq's session adopted, or Sluice's own (pg_dial.c) */
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

static inline gw_transport *pg_conn_transport(pg_conn *c)
{
    if (c->kind == PG_CONN_CLIENT)
        return &gw_container_of(c, pg_io_client, c.conn)->t;
    return &gw_container_of(c, pg_io_server, s.conn)->t;
}

static inline gw_stream *pg_conn_stream(pg_conn *c)
{
    return &pg_conn_transport(c)->h;
}

/* The class of the gateway's client transports (pg_io_client) or server transports
 * (pg_io_server), by kind (pg_gateway.c). */
const gw_transport_class *pg_io_transport_class(pg_gateway *gw, pg_conn_kind kind);

/* Sets up the transport t of a client's or server's allocation (pg_io_client or pg_io_server,
 * by kind: the class tells where its pg_conn lies), plain. */
static inline void pg_conn_transport_init(gw_transport *t, pg_gateway *gw, pg_conn_kind kind)
{
    gw_transport_init(t, pg_io_transport_class(gw, kind));
}

/* Runs the ready list: processes marked input, writes output, re-evaluates reading. */
void pg_gateway_run_ready(pg_gateway *gw);
int pg_conn_flush(pg_conn *c);
/* The gateway is freed once its own handles are closed and no client or server is left. */
void pg_gateway_maybe_free(pg_gateway *gw);
/* pg_connect.c: frees a closing server once nothing holds it any more. */
void pg_io_server_maybe_free(pg_io_server *io);
/* pg_dial.c: a connection for pg_login (see pg_shell_connect). */
pg_server *pg_dial_connect(pg_pool *pool);
/* pg_stats.c: the front end's stats source and console controls, in ctx (gateway/stats.h,
 * gateway/admin.h) from its start to its stop. */
void pg_stats_register(pg_gateway *gw);
void pg_stats_unregister(pg_gateway *gw);
/* pg_accept.c */
void pg_client_accept(pg_gateway *gw, uv_stream_t *listener, bool is_unix);

#endif
