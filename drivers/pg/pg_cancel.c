/*
 * pg_cancel: CancelRequest handling. A client's cancel names Sluice's key; it is turned into a
 * cancel of the server linked to that client at this moment, and of no other. PQcancel blocks
 * (it opens a connection to the server), so it runs on libuv's thread pool with its own copy of
 * the cancel data: the server may be gone by the time the work runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_wire.h"

typedef struct cancel_work {
    uv_work_t req;
    PGcancel *cancel; /* libpq's connections; NULL for Sluice's own logins (pg_login.c) */
    struct sockaddr_storage addr; /* own logins: the server's address, and its key data */
    socklen_t addr_len;
    uint32_t be_pid, be_key;
    gw_ctx *ctx;
    pg_gateway *gw;
    uint32_t server_id;
    int ok;
    char err[256];
} cancel_work;

/* What PQcancel does, for a server libpq did not log in to: a new connection carrying the
 * 16-byte CancelRequest, then wait for the server to close it. Blocking: runs on the pool. */
static int send_cancel(cancel_work *w)
{
    int fd = socket(w->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    uint8_t pkt[16];
    pg_put_u32(pkt, 16);
    pg_put_u32(pkt + 4, PG_CODE_CANCEL);
    pg_put_u32(pkt + 8, w->be_pid);
    pg_put_u32(pkt + 12, w->be_key);
    int rc = 0;
    if (connect(fd, (struct sockaddr *)&w->addr, w->addr_len) != 0 ||
        send(fd, pkt, sizeof pkt, MSG_NOSIGNAL) != (ssize_t)sizeof pkt)
        rc = -errno;
    else
        while (recv(fd, pkt, sizeof pkt, 0) > 0)
            ;
    close(fd);
    return rc;
}

static void do_cancel(uv_work_t *req)
{
    cancel_work *w = (cancel_work *)req;
    if (w->cancel) {
        w->ok = PQcancel(w->cancel, w->err, sizeof w->err);
        return;
    }
    int rc = send_cancel(w);
    w->ok = rc == 0;
    if (rc != 0)
        snprintf(w->err, sizeof w->err, "%s", strerror(-rc));
}

static void after_cancel(uv_work_t *req, int status)
{
    cancel_work *w = (cancel_work *)req;
    if (status == 0 && !w->ok)
        gw_warn(w->ctx, "cancel of server %u failed: %s", w->server_id, w->err);
    if (w->cancel)
        PQfreeCancel(w->cancel);
    pg_gateway *gw = w->gw;
    gw->pending_cancels--;
    pg_server_cancel_done(gw, w->server_id);
    free(w);
    pg_gateway_maybe_free(gw);
}

void pg_shell_cancel(pg_server *s)
{
    pg_io_server *io = pg_io_server_of(s);
    if ((!io->pq && !s->own_login) || s->state != PG_SV_ACTIVE)
        return;
    cancel_work *w = calloc(1, sizeof *w);
    if (!w)
        return;
    w->ctx = pg_ctx(&s->conn);
    w->server_id = s->id;
    w->gw = s->conn.gw;
    bool ready;
    if (io->pq) {
        w->cancel = PQgetCancel(io->pq);
        ready = w->cancel != NULL;
    } else {
        uv_os_fd_t fd;
        w->addr_len = sizeof w->addr;
        w->be_pid = s->backend_pid;
        w->be_key = s->backend_key;
        ready = uv_fileno(&io->h.handle, &fd) == 0 &&
                getpeername(fd, (struct sockaddr *)&w->addr, &w->addr_len) == 0;
    }
    if (!ready || uv_queue_work(w->ctx->loop, &w->req, do_cancel, after_cancel) != 0) {
        PQfreeCancel(w->cancel);
        free(w);
        return;
    }
    s->cancels++;
    w->gw->pending_cancels++;
    gw_debug(w->ctx, "cancel sent to server %u", s->id);
}
