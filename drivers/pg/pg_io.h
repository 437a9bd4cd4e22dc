/*
 * pg_io: what the shell's files share among themselves (never included by the core): the
 * end-of-iteration flush, the read buffer callback, accepting clients, freeing the gateway.
 */
#ifndef SLUICE_PG_IO_H
#define SLUICE_PG_IO_H

#include <stdbool.h>
#include <uv.h>

#include "drivers/pg/pg_int.h"

/* Runs the ready list: processes marked input, writes output, re-evaluates reading. */
void pg_gateway_run_ready(pg_gateway *gw);
int pg_conn_flush(pg_conn *c);
void pg_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
/* The gateway is freed once its own handles are closed and no client or server is left. */
void pg_gateway_maybe_free(pg_gateway *gw);
/* pg_accept.c */
void pg_client_accept(pg_gateway *gw, uv_stream_t *listener, bool is_unix);

#endif
