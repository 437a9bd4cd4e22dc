/*
 * pg_gateway: the PostgreSQL front end's listeners, its loop hooks (the once-per-iteration
 * flush) and the janitor timer, whose tick drives the core's timeouts (pg_tick.c). Part of the
 * shell (pg_shell.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/pg/pg.h"
#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"
#include "gateway/admin.h"
#include "gateway/listen.h"

#define PG_JANITOR_MS 100

/* The front end as the shell allocates it: the core's part with the gateway's own handles. */
typedef struct pg_io_gateway {
    pg_gateway gw;
    uv_tcp_t tcp;  /* listen_addr; for "*" the IPv6 wildcard */
    uv_tcp_t tcp4; /* "*" on a host without IPv6: the IPv4 wildcard */
    uv_pipe_t unix_sock;
    uv_timer_t janitor;
    uv_prepare_t prepare;
    uv_check_t check;
    gw_transport_class client_class, server_class; /* pg_io_transport_class */
    int open_handles; /* handles of the gateway itself not yet closed */
    bool tcp_open, tcp4_open, unix_open, janitor_open, prepare_open, check_open;
    char *unix_path;
    /* The socket file this process bound: with so_reuseport a successor may have replaced it
     * at the same path, and that one must survive our exit. The inode number alone does not
     * tell them apart (ext4 gives a freed number to the next file). */
    dev_t unix_dev;
    ino_t unix_ino;
    struct timespec unix_ctime;
} pg_io_gateway;

static pg_io_gateway *io_of(pg_gateway *gw)
{
    return gw_container_of(gw, pg_io_gateway, gw);
}

const gw_transport_class *pg_io_transport_class(pg_gateway *gw, pg_conn_kind kind)
{
    pg_io_gateway *io = io_of(gw);
    return kind == PG_CONN_CLIENT ? &io->client_class : &io->server_class;
}

void pg_gateway_maybe_free(pg_gateway *gw)
{
    pg_io_gateway *io = io_of(gw);
    if (!gw->stopping || io->open_handles > 0 || gw->live > 0 || gw->pending_cancels > 0)
        return;
    pg_core_free(gw);
    if (gw->ctx->pg == gw)
        gw->ctx->pg = NULL;
    free(io->unix_path);
    free(io);
}

static void on_handle_closed(uv_handle_t *h)
{
    pg_gateway *gw = h->data;
    io_of(gw)->open_handles--;
    pg_gateway_maybe_free(gw);
}

/* Counts a gateway handle whose init succeeded: from now on it must be closed (close_own). */
static void own(pg_gateway *gw, void *handle, bool *open)
{
    ((uv_handle_t *)handle)->data = gw;
    *open = true;
    io_of(gw)->open_handles++;
}

static void close_own(void *handle, bool *open)
{
    if (*open)
        uv_close(handle, on_handle_closed);
    *open = false;
}

/* Both end a phase of the loop: what the counting clock read belongs to it (gw_ctx). */
static void on_prepare(uv_prepare_t *h)
{
    pg_gateway *gw = h->data;
    pg_gateway_run_ready(gw);
    gw->ctx->stats_clock_us = 0;
}

static void on_check(uv_check_t *h)
{
    pg_gateway *gw = h->data;
    pg_gateway_run_ready(gw);
    gw->ctx->stats_clock_us = 0;
}

static void close_quiet_listeners(pg_io_gateway *io);

static void on_janitor(uv_timer_t *h)
{
    pg_gateway *gw = h->data;
    uint64_t now = gw_now(gw->ctx);
    if (gw->draining)
        close_quiet_listeners(io_of(gw));
    pg_core_tick(gw, now);
    pg_admin_tick(gw);
    gw_admin_tick(gw->ctx);
    pg_gateway_run_ready(gw);
}

static void on_connection(uv_stream_t *listener, int status)
{
    pg_gateway *gw = listener->data;
    if (status < 0) {
        gw_warn(gw->ctx, "accept: %s", uv_strerror(status));
        return;
    }
    pg_client_accept(gw, listener, listener == (uv_stream_t *)&io_of(gw)->unix_sock);
}

/* Opens a TCP listener on handle; on failure the handle (if it was initialised) is closing and
 * *open is false again. */
static int listen_on(pg_gateway *gw, uv_tcp_t *handle, bool *open, const struct sockaddr *sa)
{
    int rc = gw_tcp_init(gw->ctx->loop, handle, sa);
    if (rc != 0)
        return rc;
    own(gw, handle, open);
    rc = gw_tcp_bind(handle, sa, gw->ctx->cfg->so_reuseport);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)handle, 4096, on_connection);
    if (rc != 0)
        close_own(handle, open);
    return rc;
}

static int listen_tcp(pg_gateway *gw)
{
    pg_io_gateway *io = io_of(gw);
    gw_ctx *ctx = gw->ctx;
    const char *addr = ctx->cfg->listen_addr;
    int port = ctx->cfg->listen_port;
    struct sockaddr_storage ss;
    int rc;
    if (strcmp(addr, "*") == 0)
        rc = uv_ip6_addr("::", port, (struct sockaddr_in6 *)&ss);
    else if (strchr(addr, ':'))
        rc = uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss);
    if (rc != 0) {
        gw_error(ctx, "listen_addr %s: %s", addr, uv_strerror(rc));
        return rc;
    }
    rc = listen_on(gw, &io->tcp, &io->tcp_open, (struct sockaddr *)&ss);
    if (rc != 0 && strcmp(addr, "*") == 0) {
        /* No IPv6 on this host: fall back to every IPv4 address, on a handle of its own (the
         * first one may still be closing). */
        gw_info(ctx, "no IPv6 listener (%s), listening on IPv4 only", uv_strerror(rc));
        rc = uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
        if (rc == 0)
            rc = listen_on(gw, &io->tcp4, &io->tcp4_open, (struct sockaddr *)&ss);
    }
    if (rc != 0) {
        gw_error(ctx, "could not listen on %s:%d: %s", addr, port, uv_strerror(rc));
        return rc;
    }
    gw_info(ctx, "listening on %s:%d", addr, port);
    return 0;
}

static int listen_unix(pg_gateway *gw)
{
    pg_io_gateway *io = io_of(gw);
    gw_ctx *ctx = gw->ctx;
    const char *dir = ctx->cfg->unix_socket_dir;
    if (!dir || !*dir)
        return 0;
    size_t n = strlen(dir) + 32;
    io->unix_path = malloc(n);
    if (!io->unix_path)
        return -ENOMEM;
    snprintf(io->unix_path, n, "%s/.s.PGSQL.%d", dir, ctx->cfg->listen_port);
    struct stat st;
    /* A socket left behind by a process that died, or one of a running Sluice this one
     * replaces (so_reuseport: the TCP bind would have failed otherwise). */
    if (lstat(io->unix_path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(io->unix_path);
    int rc = uv_pipe_init(ctx->loop, &io->unix_sock, 0);
    if (rc != 0) {
        gw_error(ctx, "could not listen on %s: %s", io->unix_path, uv_strerror(rc));
        return rc;
    }
    own(gw, &io->unix_sock, &io->unix_open);
    rc = gw_pipe_bind(&io->unix_sock, io->unix_path);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&io->unix_sock, 4096, on_connection);
    if (rc != 0) {
        gw_error(ctx, "could not listen on %s: %s", io->unix_path, uv_strerror(rc));
        return rc;
    }
    chmod(io->unix_path, 0777);
    if (lstat(io->unix_path, &st) == 0) {
        io->unix_dev = st.st_dev;
        io->unix_ino = st.st_ino;
        io->unix_ctime = st.st_ctim;
    }
    gw_info(ctx, "listening on %s", io->unix_path);
    return 0;
}

void pg_scrub_environment(void)
{
    extern char **environ;
    /* Collect first: unsetenv changes environ under the walk. */
    for (;;) {
        char name[128];
        size_t n = 0;
        for (char **e = environ; e && *e; e++) {
            if (strncmp(*e, "PG", 2) != 0)
                continue;
            n = strcspn(*e, "=");
            if (n < sizeof name) {
                memcpy(name, *e, n);
                name[n] = 0;
                break;
            }
            n = 0;
        }
        if (n == 0 || unsetenv(name) != 0)
            return;
    }
}

int pg_gateway_start(gw_ctx *ctx)
{
    pg_io_gateway *io = calloc(1, sizeof *io);
    if (!io)
        return -ENOMEM;
    pg_gateway *gw = &io->gw;
    ctx->pg = gw;
    pg_core_init(gw, ctx);
    io->client_class =
        GW_TRANSPORT_CLASS(pg_transport_cbs, gw->bufs, pg_io_client, t, c.conn, c.conn.in);
    io->server_class =
        GW_TRANSPORT_CLASS(pg_transport_cbs, gw->bufs, pg_io_server, t, s.conn, s.conn.in);
    pg_stats_register(gw);
    if (uv_random(NULL, NULL, &gw->rng, sizeof gw->rng, 0, NULL) != 0)
        gw->rng = (uint64_t)uv_hrtime();

    /* On any failure the caller stops the gateway, which closes what was opened. */
    int rc = uv_timer_init(ctx->loop, &io->janitor);
    if (rc == 0) {
        own(gw, &io->janitor, &io->janitor_open);
        rc = uv_timer_start(&io->janitor, on_janitor, PG_JANITOR_MS, PG_JANITOR_MS);
    }
    if (rc == 0 && (rc = uv_prepare_init(ctx->loop, &io->prepare)) == 0) {
        own(gw, &io->prepare, &io->prepare_open);
        rc = uv_prepare_start(&io->prepare, on_prepare);
    }
    if (rc == 0 && (rc = uv_check_init(ctx->loop, &io->check)) == 0) {
        own(gw, &io->check, &io->check_open);
        rc = uv_check_start(&io->check, on_check);
    }
    if (rc != 0) {
        gw_error(ctx, "could not start the PostgreSQL front end: %s", uv_strerror(rc));
        return rc;
    }
    rc = listen_tcp(gw);
    if (rc == 0)
        rc = listen_unix(gw);
    return rc;
}

/* Removes the socket file if it is still the one this process bound. */
static void unlink_own_socket(pg_io_gateway *io)
{
    struct stat st;
    if (io->unix_open && lstat(io->unix_path, &st) == 0 && st.st_dev == io->unix_dev &&
        st.st_ino == io->unix_ino && st.st_ctim.tv_sec == io->unix_ctime.tv_sec &&
        st.st_ctim.tv_nsec == io->unix_ctime.tv_nsec)
        unlink(io->unix_path);
}

/* A listener is closed once no connection waits in its queue (gw_listener_quiet); the janitor
 * tries again while draining. */
static void close_quiet(void *handle, bool *open)
{
    if (*open && gw_listener_quiet(handle))
        close_own(handle, open);
}

static void close_quiet_listeners(pg_io_gateway *io)
{
    close_quiet(&io->tcp, &io->tcp_open);
    close_quiet(&io->tcp4, &io->tcp4_open);
    if (io->unix_open && gw_listener_quiet((uv_stream_t *)&io->unix_sock)) {
        unlink_own_socket(io);
        close_own(&io->unix_sock, &io->unix_open);
    }
}

static void close_listeners(pg_io_gateway *io)
{
    close_own(&io->tcp, &io->tcp_open);
    close_own(&io->tcp4, &io->tcp4_open);
    unlink_own_socket(io);
    close_own(&io->unix_sock, &io->unix_open);
}

void pg_gateway_drain(gw_ctx *ctx, bool wait_clients)
{
    pg_gateway *gw = ctx->pg;
    if (!gw || gw->stopping || gw->draining)
        return;
    gw->draining = true;
    gw->drain_clients = wait_clients;
    close_quiet_listeners(io_of(gw));
    pg_core_drain(gw);
    pg_gateway_run_ready(gw);
}

bool pg_gateway_drained(const gw_ctx *ctx, bool wait_clients)
{
    (void)wait_clients; /* either way the drain ends when the last client has gone */
    pg_gateway *gw = ctx->pg;
    if (!gw)
        return true;
    const pg_io_gateway *io = io_of(gw);
    return !io->tcp_open && !io->tcp4_open && !io->unix_open && gw_list_empty(&gw->clients);
}

void pg_gateway_reconfigure(gw_ctx *ctx)
{
    pg_gateway *gw = ctx->pg;
    if (!gw || gw->stopping)
        return;
    for (gw_list *it = gw->pools.next; it != &gw->pools; it = it->next)
        pg_pool_refresh(gw_container_of(it, pg_pool, node), ctx);
    pg_gateway_run_ready(gw);
}

void pg_gateway_stop(gw_ctx *ctx)
{
    pg_gateway *gw = ctx->pg;
    if (!gw || gw->stopping)
        return;
    pg_io_gateway *io = io_of(gw);
    gw->stopping = true;
    pg_stats_unregister(gw);
    close_listeners(io);
    close_own(&io->janitor, &io->janitor_open);
    close_own(&io->prepare, &io->prepare_open);
    close_own(&io->check, &io->check_open);
    pg_core_shutdown(gw);
    pg_gateway_maybe_free(gw);
}
