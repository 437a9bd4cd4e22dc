/*
 * gw_transport: what sits between a connection and its socket, so protocol code reads and writes
 * plaintext without knowing what is beneath (as Redis's connection.h puts its transports behind
 * one small vtable). Two kinds today: plain (TCP or Unix socket, bytes as they are) and TLS over
 * either (gateway/tls.h filters every byte). A connection starts plain; gw_transport_start_tls
 * switches it once the protocol has agreed on TLS (PostgreSQL's SSLRequest, or a ClientHello as
 * the first byte); gw_transport_adopt_tls carries on a TLS session libpq negotiated, and
 * gw_transport_take_tls one a MongoDB worker thread negotiated.
 *
 * Reading: plaintext is appended to the connection's input buffer (gw_transport_in) and
 * cbs->input runs. Writing: gw_transport_send takes the bytes of a plaintext buffer and writes
 * them (at once when nothing is queued and the socket takes them, else queued with uv_write;
 * cbs->written reports the end of each queued write with its size on the wire, and only of
 * those: the result of gw_transport_send says which it was). A TLS transport holds no buffer
 * while idle: its read buffer is a pooled block taken for the duration of one read callback.
 * Buffers and write requests come from the class's pool, so the steady state allocates nothing.
 *
 * Size: every idle connection carries its transport, so what all connections of one kind share
 * (the callbacks, the pool, where the owner and its input buffer lie) is in a gw_transport_class
 * they point at, and the kind (plain or TLS) follows from whether there is a TLS session.
 *
 * Lifetime: the owner closes h.handle (uv_close) and calls gw_transport_release in the close
 * callback. Write requests own their buffers and run cbs->written even after the close began, so
 * the owner must still be valid there (libuv runs them before the close callback).
 */
#ifndef SLUICE_GW_TRANSPORT_H
#define SLUICE_GW_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/* The owner's callbacks; gw_transport_owner(t) says whose. */
typedef struct gw_transport_cbs {
    /* Plaintext was appended to *gw_transport_in(t). */
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
     * input then runs with the input buffer pointing at the bytes read there (its data p, not
     * the pool's); the owner takes them and sets it to empty without releasing it. TLS plaintext
     * still arrives in the input buffer's own memory. NULL: reads append to the input buffer. */
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

/* What the transports of one kind of connection share; it outlives them. A transport is
 * embedded in its owner at a fixed place, so the owner, and the owner's input buffer (where
 * plaintext goes), are found at fixed distances from the transport. */
typedef struct gw_transport_class {
    gw_transport_cbs cbs;
    gw_bufpool *pool;          /* where buffers and write requests come from and return to */
    ptrdiff_t owner_at, in_at; /* (char *)t + owner_at is the owner, + in_at its gw_buf */
} gw_transport_class;

/* A class for transports at member tm of type, whose owner is its member om and whose input
 * buffer is its member im (pass om and im as paths, for example c.conn and c.conn.in). */
#define GW_TRANSPORT_CLASS(cbs_, pool_, type, tm, om, im)                                          \
    ((gw_transport_class){.cbs = (cbs_),                                                           \
                          .pool = (pool_),                                                         \
                          .owner_at =                                                              \
                              (ptrdiff_t)offsetof(type, om) - (ptrdiff_t)offsetof(type, tm),       \
                          .in_at = (ptrdiff_t)offsetof(type, im) - (ptrdiff_t)offsetof(type, tm)})

struct gw_transport {
    gw_stream h;
    const gw_transport_class *cls;
    gw_tls *tls;     /* TLS only: the session, owned, with its ciphertext buffers */
    uint32_t queued; /* wire bytes in uv_write requests not yet completed (a write that would
                      * take it past 4 GiB fails: the owners stop reading far below that) */
    bool reading : 1;
    bool tls_ended : 1; /* TLS failed or the peer said close_notify: nothing more is read */
};

static inline void *gw_transport_owner(const gw_transport *t)
{
    return (char *)t + t->cls->owner_at;
}

/* The owner's input buffer: plaintext goes here. */
static inline gw_buf *gw_transport_in(const gw_transport *t)
{
    return (gw_buf *)((char *)t + t->cls->in_at);
}

/* Sets up a plain transport of class cls (which must outlive it); the owner then inits h
 * (uv_tcp_init / uv_pipe_init) and accepts into it. */
void gw_transport_init(gw_transport *t, const gw_transport_class *cls);
/* Switches to TLS on conf (a reference is taken). direct: the ClientHello already arrived, as
 * the first bytes now in the input buffer (they are moved into the TLS session, and the buffer
 * emptied). 0, or
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
