/*
 * pg_shell: the one downward interface of the PostgreSQL core. The core (framing, login,
 * relay, routing, pools: pg_client, pg_server, pg_pool, pg_reqq, pg_front, pg_sync, pg_back,
 * pg_pin, pg_notify, pg_tick, pg_conn and the pure helpers) produces bytes in a connection's output
 * buffer and asks the shell for actions through these functions; the shell (pg_io, pg_accept,
 * pg_connect, pg_cancel, pg_listen, pg_gateway) owns the libuv handles and libpq and calls up
 * only through the entry points listed in pg_int.h. Link-time substitution: unit tests and fuzz
 * harnesses link the core library with a fake shell instead.
 *
 * Layering (who calls whom):
 *   pg_gateway (listeners, janitor, loop hooks) -> pg_accept, pg_io, core entry points
 *   pg_io (read/write)                           -> pg_conn_input, pg_conn_input_ended,
 *                                                   pg_conn_close, pg_conn_wants_input
 *   pg_accept, pg_connect, pg_cancel, pg_listen  -> core entry points (pg_int.h)
 *   core                                         -> this header only
 */
#ifndef SLUICE_PG_SHELL_H
#define SLUICE_PG_SHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct pg_conn;
struct pg_client;
struct pg_server;
struct pg_pool;

/* Output the core appends to a connection's out buffer, and input it wants processed again,
 * reach the shell through gw->ready (pg_conn_mark, pg_int.h): the shell runs that list at the
 * end of each loop iteration. */
void pg_conn_start_reading(struct pg_conn *c);
void pg_conn_stop_reading(struct pg_conn *c);

/* Opens a new server connection for pool: the server object, in CONNECTING, or NULL when the
 * attempt failed at once (reported through pg_server_start_failed). */
struct pg_server *pg_shell_connect(struct pg_pool *pool);
/* The core is done with the connection (its state is CLOSING): release its handles; the
 * object is freed after pg_client_closed / pg_server_closed, from the close callback. With
 * flush, the client's pending output (a last error) is written first. */
void pg_shell_client_close(struct pg_client *c, bool flush);
void pg_shell_server_close(struct pg_server *s);
/* Sends a CancelRequest for what s is running; pg_server_cancel_done follows. */
void pg_shell_cancel(struct pg_server *s);
/* Sluice's own login (pg_login.c): whether s's connection could carry TLS (a TCP one). */
bool pg_shell_server_tls_capable(struct pg_server *s);
/* Starts TLS on s after the server accepted the SSLRequest, per the pool's sslmode and the
 * server_tls_* keys; pg_login_tls_ready follows the handshake. 0, or -1 with the failure
 * reported (pg_server_connect_failed). */
int pg_shell_server_start_tls(struct pg_server *s);

/* TLS for clients (pg_accept.c owns the transport). */
/* The client sent an SSLRequest (and nothing after it): when a TLS context is configured, 'S'
 * is written and the handshake follows on the client's next bytes (0); 1 when there is none
 * (the core answers 'N'); -1 when it could not start (the core closes the client). */
int pg_shell_client_tls_start(struct pg_client *c);
/* Whether the client talks through TLS (after an SSLRequest or directly). */
bool pg_shell_client_tls(const struct pg_client *c);
/* The subject CN of the client's certificate when it presented one that verified against
 * client_tls_ca_file: 1 with out filled; 0 when there is none; -1 when its CN is unusable. */
int pg_shell_client_cert_cn(const struct pg_client *c, char *out, size_t cap);

/* The tls-server-end-point data of the client's TLS session (gw_tls_end_point): its length
 * with *data valid while the client lives, or 0 without TLS or without such data. */
size_t pg_shell_client_tls_end_point(const struct pg_client *c, const uint8_t **data);

/* Client authentication (pg_auth.c). */
/* The client's address, for hba lines and the cleartext-password rule: 1 with *out filled for
 * a TCP client, 0 for a Unix-socket client, -1 when it cannot be had. */
int pg_shell_client_peer(const struct pg_client *c, struct sockaddr_storage *out);
/* auth_query: looks up the secret of pg_auth_user(c) (as cfg_db_auth_user, in
 * cfg_db_auth_dbname or else pg_auth_dbname(c), with cfg_db_auth_query) without blocking the
 * loop; the answer comes through pg_auth_lookup_done, never from within this call. 0 when
 * under way; -1 when no lookup can be made (logged; the client then fails as an unknown user
 * would). */
int pg_shell_auth_lookup(struct pg_client *c);
/* c closes while its lookup is under way: its answer must be dropped. */
void pg_shell_auth_lookup_cancel(struct pg_client *c);

/* The listening connection of LISTEN emulation (pg_listen.c): one per pool, p->listen_conn
 * while it exists. None of these calls up into the core; the connection's events arrive
 * through pg_notify_opened, pg_notify_cmd_done, pg_notify_lost and pg_notify_deliver. */
/* Starts connecting: 0, or -1 when the attempt failed at once (logged; no event follows). */
int pg_shell_listen_open(struct pg_pool *p);
/* Queues "LISTEN channel" (listen) or "UNLISTEN channel" behind the commands queued before;
 * each command's end is reported with pg_notify_cmd_done, in order. 0, or -1 when it could not
 * be queued (nothing changed). */
int pg_shell_listen_send(struct pg_pool *p, bool listen, const char *channel);
/* Drops the connection and its queued commands; no event follows. */
void pg_shell_listen_close(struct pg_pool *p);

#endif
