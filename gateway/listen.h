/*
 * listen: TCP listening sockets as both front ends open them, with SO_REUSEPORT when the
 * so_reuseport key asks for it (libuv before 1.49 has no flag for it).
 */
#ifndef SLUICE_GW_LISTEN_H
#define SLUICE_GW_LISTEN_H

#include <stdbool.h>

#include "gateway/gw.h"

/* Initialises h with a socket of sa's address family, so an option can be set before the bind.
 * On success h must be closed with uv_close. 0 or a libuv error. */
int gw_tcp_init(uv_loop_t *loop, uv_tcp_t *h, const struct sockaddr *sa);

/* Binds h (from gw_tcp_init) to sa, first setting SO_REUSEPORT when reuseport is true. Then
 * another process that also sets it can bind the same address: the kernel spreads new
 * connections over the listeners. 0 or a libuv error. */
int gw_tcp_bind(uv_tcp_t *h, const struct sockaddr *sa, bool reuseport);

/* Binds h (initialised, not yet opened) to a Unix socket at path. Unlike uv_pipe_bind, libuv
 * does not unlink path when h closes: the owner removes the file itself, and only while it is
 * still its own (a successor sharing the directory may have replaced it). 0 or a libuv
 * error. */
int gw_pipe_bind(uv_pipe_t *h, const char *path);

/* Whether no connection waits in h's accept queue. A listener closed with connections queued
 * resets them; with SO_REUSEPORT they might have gone to the process that replaces this one,
 * so a graceful shutdown closes a listener only once it is quiet. */
bool gw_listener_quiet(const uv_stream_t *h);

#endif
