/*
 * A fake shell for the PostgreSQL core (drivers/pg/pg_shell.h), shared by the core's unit test
 * and its fuzz harnesses: no socket, no libpq, no loop run. Clients and servers are plain
 * objects; what the core writes to them stays in their output buffers for the test to read,
 * closes are recorded and freed at the end of each step, and new server connections "connect"
 * when the test says so.
 */
#ifndef SLUICE_FUZZ_PG_CORE_SHELL_H
#define SLUICE_FUZZ_PG_CORE_SHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h> /* the fake's own loop, for the clock; the core includes no libuv */

#include "drivers/pg/pg_int.h"

typedef struct fk_world {
    gw_ctx ctx;
    uv_loop_t loop; /* never run: only its clock is read */
    pg_gateway *gw;
    unsigned closes;        /* connections the core closed so far */
    pg_end last_client_end; /* why the last client closed */
    pg_end last_server_end; /* why the last server closed */
    unsigned cancels;       /* cancels the core asked for */
    unsigned connects;      /* server connections the core asked for */
    unsigned listen_opens;  /* listening connections the core opened */
    unsigned listens;       /* LISTEN commands sent on them */
    unsigned unlistens;     /* UNLISTEN commands sent on them */
    /* Authentication: the peer the shell reports (Unix socket, else this IPv4 address in host
     * order, 127.0.0.1 when 0), and auth_query lookups: how many were asked for, the client
     * whose answer is awaited (the test answers with pg_auth_lookup_done), cancels, and
     * whether the shell says none is possible. */
    bool peer_unix;
    uint32_t peer_ipv4;
    unsigned lookups;
    pg_client *lookup_client;
    unsigned lookup_cancels;
    bool lookup_unavailable;
    /* Sluice's own login: whether server connections can carry TLS (default no), and how many
     * TLS starts the core asked for (the test reports the handshake with pg_login_tls_ready). */
    bool server_tls;
    unsigned tls_starts;
} fk_world;

/* Sets up a core with config text (NULL: one transaction-mode database "db"). Returns 0. */
int fk_init(fk_world *w, const char *config);
/* Closes everything still open and frees it all. */
void fk_fini(fk_world *w);
/* Writes a startup packet for user "u" and database "db" (under 64 bytes) to buf. */
size_t fk_startup(uint8_t *buf);
/* A client connected (what the shell's accept does). */
pg_client *fk_client(fk_world *w);
/* Bytes arrived from a client or a server: processed as the shell would, then the step ends
 * (marked connections processed, closed ones freed). */
void fk_client_input(fk_world *w, pg_client *c, const void *data, size_t len);
void fk_server_input(fk_world *w, pg_server *s, const void *data, size_t len);
/* A notification on channel arrived on the open listening connection (from backend pid 4243);
 * the step ends. */
void fk_notify(fk_world *w, const char *channel, const char *payload);
/* The server closed its end of the connection (what the shell reports at EOF); the step ends. */
void fk_server_eof(fk_world *w, pg_server *s);
/* Completes every pending connect with a fake server's parameters (fail: the server refuses
 * the login with SQLSTATE 28P01), and ends the step. */
void fk_connect_all(fk_world *w, bool fail);
/* The first open server of the gateway's pools, or NULL. */
pg_server *fk_first_server(fk_world *w);
/* Whether c is still a live client of the world (the core may have closed and freed it). */
bool fk_client_alive(fk_world *w, const pg_client *c);
/* Takes what the core wrote for a connection: up to cap bytes are copied to out (out may be
 * NULL), all of it is consumed. Returns the number of bytes there were. For a client closed in
 * this step, what it was sent before the close is kept until the next call (fk_client_output
 * with c == NULL reads it). */
size_t fk_client_output(fk_world *w, pg_client *c, uint8_t *out, size_t cap);
size_t fk_server_output(fk_world *w, pg_server *s, uint8_t *out, size_t cap);
/* Feeds data to the gateway's first server in reads of chunk bytes, draining what the core
 * writes to it and to client c (while c lives) after each read; stops early when no server is
 * left, or (connected_only) when the first one is still connecting. */
void fk_feed_server(fk_world *w, pg_client *c, const uint8_t *data, size_t size, size_t chunk,
                    bool connected_only);
/* Ends a step: runs the ready list and frees what was closed. */
void fk_step(fk_world *w);

#endif
