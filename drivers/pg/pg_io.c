/*
 * pg_io (shell): reading and writing clients and servers through their gw_transport (plain, or
 * TLS for clients that asked for it), and the transport's callbacks.
 *
 * Output the core builds while handling events goes on the gateway's ready list. The list is run
 * at the end of every read callback, so what a read produced is written before the next ready
 * connection is read: the server starts on a query while the loop serves the rest of the poll's
 * batch (deferring the writes to the end of the batch added the whole batch's work to every round
 * trip under load, and a chatty transaction holds its server for several). A read's messages
 * still leave as one write. uv_prepare and uv_check run the list too, for what timers, write
 * completions and connects marked. Whether a connection is read is the
 * core's decision (pg_conn_wants_input: reading one side pauses while the other side has
 * PG_HIGH_WATER bytes unsent, which bounds memory for large results and COPY); this file only
 * applies it. Calls up through pg_conn_input, pg_conn_input_ended, pg_conn_close (and, for a
 * direct-TLS client without ALPN, pg_client_fatal).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

/* A queued write ended: output drained, so the other side may read again, and a client that
 * stopped for its own output bound may go on. */
static void on_written(gw_transport *t, size_t len, int status)
{
    (void)len;
    pg_conn *c = gw_transport_owner(t);
    /* The transport's own count: it also holds the TLS session's records (handshake, alerts)
     * that no flush of ours queued, so counting our writes up and every write down would wrap. */
    c->pending = t->queued;
    if (status < 0) {
        if (!pg_conn_closing(c))
            pg_conn_close(c, PG_END_IO_ERROR, uv_strerror(status));
        return;
    }
    pg_conn *p = pg_conn_peer(c);
    if (p && p->reading == false)
        pg_conn_mark(p);
    if (c->in_blocked)
        pg_conn_mark_process(c);
    else if (!c->reading)
        pg_conn_mark(c);
}

int pg_conn_flush(pg_conn *c)
{
    if (c->out.len == 0 || !c->stream_open)
        return 0;
    if (c->kind == PG_CONN_CLIENT && ((pg_client *)c)->pool)
        GW_STAT_ADD(((pg_client *)c)->pool->stats.bytes_sent, c->out.len);
    gw_transport *t = pg_conn_transport(c);
    long q = gw_transport_send(t, &c->out);
    if (q < 0)
        return (int)q;
    c->pending = t->queued;
    return 0;
}

void pg_conn_start_reading(pg_conn *c)
{
    if (c->reading || pg_conn_closing(c) || !c->stream_open)
        return;
    gw_transport *t = pg_conn_transport(c);
    if (t->tls_ended)
        return; /* its end was reported; the close is under way */
    int rc = gw_transport_read_start(t);
    if (rc == 0)
        c->reading = true;
    else
        pg_conn_close(c, PG_END_IO_ERROR,
                      uv_strerror(rc)); /* a connection never read again would hang its peer */
}

void pg_conn_stop_reading(pg_conn *c)
{
    if (!c->reading)
        return;
    gw_transport_read_stop(pg_conn_transport(c));
    c->reading = false;
}

static void update_reading(pg_conn *c)
{
    if (pg_conn_closing(c))
        return;
    if (pg_conn_wants_input(c))
        pg_conn_start_reading(c);
    else
        pg_conn_stop_reading(c);
}

void pg_gateway_run_ready(pg_gateway *gw)
{
    gw_list *it;
    while ((it = gw_list_first(&gw->ready)) != NULL) {
        gw_list_remove(it);
        pg_conn *c = gw_container_of(it, pg_conn, ready);
        if (pg_conn_closing(c))
            continue;
        if (c->need_process) {
            c->need_process = false;
            pg_conn_input(c);
            if (pg_conn_closing(c))
                continue;
        }
        if (pg_conn_flush(c) != 0) {
            pg_conn_close(c, PG_END_IO_ERROR, "write failed");
            continue;
        }
        update_reading(c);
        pg_conn *p = pg_conn_peer(c);
        if (p && !pg_conn_closing(p))
            update_reading(p);
    }
}

/* A client whose first byte starts a TLS record (a ClientHello: 0x16) asks for TLS directly,
 * without an SSLRequest (PostgreSQL 17's sslnegotiation=direct). No startup packet can begin
 * with that byte: its length would exceed any packet's. Without a TLS context the core refuses
 * it as a bad startup packet. */
static bool direct_tls(pg_conn *c, gw_transport *t)
{
    if (c->kind != PG_CONN_CLIENT || t->tls)
        return false;
    pg_io_client *io = gw_container_of(c, pg_io_client, c.conn);
    bool first = !io->c.io_saw_input;
    io->c.io_saw_input = true;
    if (!first || c->in.len == 0 || c->in.data[0] != 0x16 || !pg_ctx(c)->client_tls)
        return false;
    pg_client *cl = &io->c;
    if (cl->state != PG_CL_STARTUP)
        return false;
    io->c.io_direct = true;
    int rc = gw_transport_start_tls(t, pg_ctx(c)->client_tls, true);
    if (rc != 0) {
        gw_info(pg_ctx(c), "client: direct TLS handshake failed: %s",
                rc == -ENOMEM ? "out of memory" : gw_tls_error(t->tls));
        pg_client_close(cl, PG_END_PROTOCOL, "TLS handshake failed");
    }
    return true;
}

static void on_input(gw_transport *t)
{
    pg_conn *c = gw_transport_owner(t);
    if (direct_tls(c, t) && (pg_conn_closing(c) || c->in.len == 0))
        return;
    pg_conn_input(c);
    if (!pg_conn_closing(c))
        pg_conn_mark(c);
    pg_gateway_run_ready(c->gw);
}

static void on_ended(gw_transport *t, bool eof, bool tls_failed, const char *detail)
{
    pg_conn *c = gw_transport_owner(t);
    if (pg_conn_closing(c))
        return;
    if (tls_failed) {
        gw_info(pg_ctx(c), "%s: TLS failed: %s", c->kind == PG_CONN_CLIENT ? "client" : "server",
                detail);
        pg_server *s = c->kind == PG_CONN_SERVER ? (pg_server *)c : NULL;
        if (s && s->state == PG_SV_CONNECTING) {
            /* Sluice's own login: its waiting clients learn why. */
            char msg[300];
            snprintf(msg, sizeof msg, "TLS handshake with the server failed: %s", detail);
            pg_server_connect_failed(s, msg);
        } else
            pg_conn_close(c, PG_END_PROTOCOL, detail);
        return;
    }
    pg_conn_input_ended(c, eof, detail);
}

/* The handshake completed: output held back goes now; a direct-TLS client must have said it
 * speaks postgresql through ALPN (PostgreSQL 17 refuses it otherwise, so a client cannot be
 * steered into another protocol by a TLS-terminating middlebox). */
static void on_tls_ready(gw_transport *t)
{
    pg_conn *c = gw_transport_owner(t);
    if (pg_conn_closing(c))
        return;
    if (c->kind == PG_CONN_SERVER) {
        gw_debug(pg_ctx(c), "server: TLS established (%s, %s)", gw_tls_version(t->tls),
                 gw_tls_cipher(t->tls));
        pg_login_tls_ready((pg_server *)c);
        return;
    }
    pg_io_client *io = gw_container_of(c, pg_io_client, c.conn);
    gw_debug(pg_ctx(c), "client: TLS established (%s%s)", gw_tls_version(t->tls),
             io->c.io_direct ? ", direct" : "");
    if (io->c.io_direct && !gw_tls_alpn_ok(t->tls)) {
        pg_client_fatal(&io->c, PG_END_PROTOCOL, "08P01",
                        "received direct SSL connection request without ALPN protocol "
                        "negotiation extension");
        return;
    }
    pg_conn_mark(c);
}

const gw_transport_cbs pg_transport_cbs = {
    .input = on_input,
    .ended = on_ended,
    .written = on_written,
    .tls_ready = on_tls_ready,
};
