/*
 * gw_transport: what sits between a connection and its socket, so protocol code reads and writes
 * plaintext without knowing what is beneath (as Redis's connection.h puts its transports behind
 * one small vtable). Two kinds today: plain (TCP or Unix socket, bytes as they are) and TLS over
 * either (gateway/tls.h filters every byte). A connection starts plain; gw_transport_start_tls
 * switches it once the protocol has agreed on TLS (PostgreSQL's SSLRequest, or a ClientHello as
 * the first byte); gw_transport_adopt_tls carries on a TLS session libpq negotiated, and
 * gw_transport_take_tls one a MongoDB worker thread negotiated.
 *
 * Reading: plaintext is appended to the connection's input buffer (`in`, given at init) and
 * cbs->input runs. Writing: gw_transport_send takes the bytes of a plaintext buffer and writes
 * them (at once when nothing is queued and the socket takes them, else queued with uv_write;
 * cbs->written reports the end of each queued write with its size on the wire, and only of
 * those: the result of gw_transport_send says which it was). A TLS transport holds no buffer
 * while idle: its read buffer is a pooled block taken for the duration of one read callback.
 * Buffers and write requests come from the pool given at init, so the steady state allocates
 * nothing.
 *
 * Lifetime: the owner closes h.handle (uv_close) and calls gw_transport_release in the close
 * callback. Write requests own their buffers and run cbs->written even after the close began, so
 * the owner must still be valid there (libuv runs them before the close callback).
 */
#ifndef SLUICE_GW_TRANSPORT_H
#define SLUICE_GW_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "gateway/buf.h"
#include "gateway/tls.h"

typedef struct gw_transport gw_transport;

/* A connection's stream; handle.data points at its gw_transport. */
typedef union gw_stream {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} gw_stream;

/* The owner's callbacks; t->owner says whose. */
typedef struct gw_transport_cbs {
    /* Plaintext was appended to *t->in. */
    void (*input)(gw_transport *t);
    /* No more input: eof (the peer closed), or an error (detail says why; tls_failed when the
     * TLS layer refused what the peer sent). */
    void (*ended)(gw_transport *t, bool eof, bool tls_failed, const char *detail);
    /* A queued write of len wire bytes ended (status < 0: it failed). */
    void (*written)(gw_transport *t, size_t len, int status);
    /* The TLS handshake completed: plaintext held back by gw_transport_send may go now. */
    void (*tls_ready)(gw_transport *t);
    /* Optional, for an owner that keeps its own input buffers (the MongoDB core frames messages
     * in place): the room the next plain read goes to (*p, *n; *n == 0 when none can be had).
     * input then runs with *t->in pointing at the bytes read there (its data p, not the pool's);
     * the owner takes them and sets *t->in to empty without releasing it. TLS plaintext still
     * arrives in t->in's own memory. NULL: reads append to t->in. */
    void (*read_room)(gw_transport *t, uint8_t **p, size_t *n);
} gw_transport_cbs;

/* The vtable: how a kind reads and writes. */
typedef struct gw_transport_ops {
    const char *name;
    /* The buffer for the next read from the socket. */
    void (*alloc)(gw_transport *t, uv_buf_t *buf);
    /* n bytes arrived in that buffer (buf, as alloc gave it): turn them into plaintext. 0,
     * GW_TLS_EOF or < 0. */
    int (*received)(gw_transport *t, const uv_buf_t *buf, size_t n);
    /* Writes out's bytes (out is emptied when taken). Returns the wire bytes queued for a
     * callback (>= 0), or < 0. */
    long (*send)(gw_transport *t, gw_buf *out);
} gw_transport_ops;

struct gw_transport {
    gw_stream h;
    const gw_transport_ops *ops;
    const gw_transport_cbs *cbs;
    void *owner;
    gw_buf *in;       /* the owner's input buffer: plaintext goes here */
    gw_bufpool *pool; /* where buffers come from and return to */
    gw_tls *tls;      /* TLS only: the session, owned, with its ciphertext buffers */
    size_t queued;    /* wire bytes in uv_write requests not yet completed */
    bool reading;
    bool tls_ended; /* TLS failed or the peer said close_notify: nothing more is read */
};

/* Sets up a plain transport; the owner then inits h (uv_tcp_init / uv_pipe_init) and accepts
 * into it. */
void gw_transport_init(gw_transport *t, const gw_transport_cbs *cbs, void *owner, gw_buf *in,
                       gw_bufpool *pool);
/* Switches to TLS on conf (a reference is taken). direct: the ClientHello already arrived, as
 * the first bytes now in *t->in (they are moved into the TLS session and t->in emptied). 0, or
 * -ENOMEM. */
int gw_transport_start_tls(gw_transport *t, gw_tls_conf *conf, bool direct);
/* Switches to TLS on a session whose handshake was already made elsewhere (a backend connection
 * handshaken on another thread); takes ownership of tls. */
void gw_transport_take_tls(gw_transport *t, gw_tls *tls);
/* Switches to TLS as the client (Sluice connecting to a server; see gw_tls_client_new) and sends
 * the ClientHello; cbs->tls_ready reports the handshake's end, cbs->ended its failure. 0 or < 0. */
int gw_transport_start_tls_client(gw_transport *t, gw_tls_conf *conf, const char *host,
                                  bool check_name);
/* Switches an established stream to TLS on a session another owner negotiated on the same
 * connection (an SSL *, see gw_tls_adopt): ready at once. 0, or < 0 (-ENOMEM). */
int gw_transport_adopt_tls(gw_transport *t, void *session);
int gw_transport_read_start(gw_transport *t);
void gw_transport_read_stop(gw_transport *t);
/* As ops->send; a TLS transport keeps the plaintext until its handshake completed (out is then
 * left as it is). Otherwise out's memory is taken when the result is >= 0, and may be on
 * failure too. */
long gw_transport_send(gw_transport *t, gw_buf *out);
/* TLS: appends close_notify and writes it (best effort, before a shutdown). */
void gw_transport_close_notify(gw_transport *t);
/* Frees what the transport holds (call from the close callback). */
void gw_transport_release(gw_transport *t);

static inline bool gw_transport_is_tls(const gw_transport *t)
{
    return t->tls != NULL;
}

#endif
