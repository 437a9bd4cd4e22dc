/*
 * pg_relay: what the relay's files (pg_reqq, pg_front, pg_sync, pg_back) share among
 * themselves; their API for the rest of the core is in pg_int.h.
 */
#ifndef SLUICE_PG_RELAY_H
#define SLUICE_PG_RELAY_H

#include "drivers/pg/pg_int.h"

/* The oldest unanswered request of s, or NULL. */
pg_req *pg_reqq_head(pg_server *s);
/* Drops the head request (its responses are complete). */
void pg_reqq_pop(pg_server *s);
/* An extended-protocol error: the server skips to Sync; so does the queue, undoing what the
 * skipped requests assumed. */
void pg_reqq_error_pop(pg_server *s);
/* The server surely has no unnamed statement (a simple query or a Close dropped it). */
void pg_relay_unnamed_none(pg_server *s);
void pg_relay_unnamed_unknown(pg_server *s);
/* Appends a CommandComplete with tag. 0 or -ENOMEM (nothing appended). */
int pg_relay_build_tag(gw_buf *out, gw_bufpool *bufs, const char *tag);

#endif
