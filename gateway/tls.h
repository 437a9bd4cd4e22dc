/*
 * gw_tls: TLS as a filter between a socket and a connection's plaintext buffers, with no I/O of
 * its own. Ciphertext read from the socket goes in through gw_tls_unseal, plaintext comes out
 * into the connection's input buffer; plaintext to send goes in through gw_tls_seal, ciphertext
 * comes out into a wire buffer the caller writes. OpenSSL reads and writes only through a BIO
 * that points at those buffers, so it never blocks and never touches a socket; the loop drives
 * the handshake by feeding what arrives (gateway/transport.c).
 *
 * gw_tls_conf is the SSL_CTX built from the client_tls_* keys. It is refcounted: every session
 * holds a reference, so a reload that builds a new one leaves running sessions on the old.
 * Includes no OpenSSL header.
 */
#ifndef SLUICE_GW_TLS_H
#define SLUICE_GW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/buf.h"

typedef struct gw_tls_conf gw_tls_conf;
typedef struct gw_tls gw_tls;

/* What a server-side TLS context is built from (the client_tls_* keys; paths resolved). */
typedef struct gw_tls_settings {
    const char *key_file, *cert_file; /* both required */
    const char *ca_file;              /* "" or NULL: none */
    const char *protocols;            /* PgBouncer's syntax: "secure", "all", "tlsv1.2,tlsv1.3" */
    const char *ciphers;              /* TLS 1.2 cipher list; "" = OpenSSL's default */
    const char *ecdhcurve;            /* groups list, "auto" or "" = OpenSSL's default */
    const char *dheparams;            /* "none", "auto", "legacy" (DHE key exchange) */
    bool verify_peer;                 /* ask for a client certificate and require it */
    bool verify_optional;             /* ask for one and check it when given (cert auth) */
    bool alpn_postgresql;             /* PostgreSQL: a client offering ALPN must offer it */
} gw_tls_settings;

/* Builds a context. 0 and *out (one reference, caller releases); or -1 with a one-line reason
 * in err (no partial object). */
int gw_tls_conf_new(const gw_tls_settings *s, gw_tls_conf **out, char *err, size_t errlen);

/* ---- Client side (Sluice connecting to a server over TLS) ----
 *
 * A client context and its sessions work through the same gw_tls_unseal / gw_tls_seal; a
 * session's first gw_tls_unseal (with no bytes) produces its ClientHello. A session may be made
 * and driven on one thread and handed to another (under a lock): it is used by one thread at a
 * time, and the context's reference count is atomic. */

/* What a client-side context (Sluice connecting to a server itself: PostgreSQL's own-dial
 * logins, MongoDB backends) is built from. */
typedef struct gw_tls_client_settings {
    const char *ca_file;              /* "" or NULL: see default_ca */
    const char *cert_file, *key_file; /* Sluice's certificate, when both are given (they may
                                         name one PEM file holding both) */
    const char *protocols;            /* as gw_tls_settings; NULL: "secure" */
    const char *ciphers;              /* as gw_tls_settings; NULL: OpenSSL's default */
    bool verify;                      /* the server's certificate must chain to a trusted CA */
    bool default_ca; /* without ca_file, trust the system's CA store (MongoDB's rule); otherwise
                        verify needs a CA file (libpq's rule, which Sluice keeps) */
} gw_tls_client_settings;

/* Builds a client-side context; as gw_tls_conf_new. */
int gw_tls_client_conf_new(const gw_tls_client_settings *s, gw_tls_conf **out, char *err,
                           size_t errlen);
void gw_tls_conf_ref(gw_tls_conf *c);
/* Drops a reference; the last one frees the context. NULL is ignored. */
void gw_tls_conf_release(gw_tls_conf *c);
/* The tls-server-end-point channel binding data of the context's certificate (RFC 5929: its
 * hash with its signature's digest, SHA-256 for MD5 and SHA-1), computed once when the context
 * was built: its length with *data pointing into the context, or 0 when the certificate's
 * signature names no single digest (Ed25519), and then there is no binding. */
size_t gw_tls_conf_end_point(const gw_tls_conf *c, const uint8_t **data);
/* Parses a protocols value into the lowest and highest versions (TLS1_2_VERSION...); 0 or -1. */
int gw_tls_parse_protocols(const char *s, int *min, int *max);
/* A version from gw_tls_parse_protocols by libpq's name for it ("TLSv1.2"); NULL if unknown. */
const char *gw_tls_protocol_name(int v);

/* A server-side session on conf (takes a reference). direct: the client began with a TLS
 * ClientHello instead of an SSLRequest, so ALPN "postgresql" is required (PostgreSQL 17).
 * NULL when out of memory. */
gw_tls *gw_tls_new(gw_tls_conf *conf, bool direct);
/* A client-side session on a context from gw_tls_client_conf_new (takes a reference). host:
 * the server's name, sent as SNI unless it is an address; check_name: the certificate must also
 * be for host (name or address). The first gw_tls_unseal (zero bytes will do) writes the
 * ClientHello. NULL when out of memory. */
gw_tls *gw_tls_client_new(gw_tls_conf *conf, const char *host, bool check_name);
/* Takes over a client-side session whose handshake another owner (libpq) completed on the
 * socket: session is an SSL *. A reference is taken (SSL_up_ref), the session's BIOs become this
 * filter's (renegotiation refused, record buffers kept), and the result is ready at once. The other
 * owner must never read or write the session again; once this session is freed, its SSL_shutdown
 * does nothing and its SSL_write fails without touching the socket, so it may still free its
 * reference (PQfinish). Plaintext OpenSSL already decrypted is not lost: the first gw_tls_unseal
 * (zero bytes will do) returns it. NULL when out of memory or the session is not a finished
 * client-side handshake. */
gw_tls *gw_tls_adopt(void *session);
/* Frees the session (an adopted one: drops this reference, see gw_tls_adopt). NULL ignored.
 * Its gw_tls_bufs must be empty by then. */
void gw_tls_free(gw_tls *t);
/* The ciphertext buffers of the transport that runs the session (gateway/transport.c), kept
 * here so that a plain connection carries none: the read in progress, and ciphertext built but
 * not yet handed to the socket. Both hold no memory while the connection is idle; the
 * transport releases them to its pool before gw_tls_free. */
typedef struct gw_tls_bufs {
    gw_buf raw;
    gw_buf wire;
} gw_tls_bufs;
gw_tls_bufs *gw_tls_bufs_of(gw_tls *t);
/* Whether the negotiated cipher is in list (client_tls_ciphers' syntax): 1 yes, or TLS 1.3, or
 * list is empty; 0 no; -1 when the list names no cipher. */
int gw_tls_cipher_allowed(const gw_tls *t, const char *list);
/* Whether list names at least one cipher: 1 yes (or empty: OpenSSL's default), else -1. */
int gw_tls_cipher_list_ok(const char *list);
/* The negotiated cipher's name, for logs. */
const char *gw_tls_cipher(const gw_tls *t);

/* Results of gw_tls_unseal besides 0 ("nothing more to do for now"). */
#define GW_TLS_EOF (-1000) /* the peer sent close_notify */

/* Feeds n ciphertext bytes from the socket (all consumed: a partial record is kept inside the
 * session). Plaintext they carried is appended to plain; ciphertext the session must send (its
 * handshake messages, alerts) to wire. 0; GW_TLS_EOF; or a negative errno-style error with
 * gw_tls_error saying why (the handshake failed, a bad record, a renegotiation attempt). */
int gw_tls_unseal(gw_tls *t, const uint8_t *data, size_t n, gw_buf *plain, gw_buf *wire,
                  gw_bufpool *pool);
/* Encrypts n plaintext bytes into wire. Only once gw_tls_ready. 0 or negative error. */
int gw_tls_seal(gw_tls *t, const uint8_t *data, size_t n, gw_buf *wire, gw_bufpool *pool);
/* Appends a close_notify alert to wire (best effort). */
void gw_tls_close_notify(gw_tls *t, gw_buf *wire, gw_bufpool *pool);
/* The handshake completed. */
bool gw_tls_ready(const gw_tls *t);
/* Why the last call failed (static or session-owned text). */
const char *gw_tls_error(const gw_tls *t);
/* Whether ALPN selected "postgresql". */
bool gw_tls_alpn_ok(const gw_tls *t);
/* The peer presented a certificate that verified against the CA file: copies its subject CN
 * (NUL-terminated) and returns 1; 0 without one; -1 when the CN is missing, too long or holds
 * a NUL. */
int gw_tls_peer_cn(const gw_tls *t, char *out, size_t cap);
/* gw_tls_conf_end_point of the session's context, once the handshake completed (0 before);
 * *data lives as long as the session. */
size_t gw_tls_end_point(const gw_tls *t, const uint8_t **data);
/* The protocol version's name ("TLSv1.3"), for logs. */
const char *gw_tls_version(const gw_tls *t);

#endif
