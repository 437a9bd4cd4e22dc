/*
 * pg_listen: the listening connection of LISTEN/NOTIFY emulation (shell). One libpq connection
 * per pool, driven on the loop through a uv_poll: it runs the LISTEN and UNLISTEN commands the
 * core asks for, one at a time and in order, and reports up through pg_notify_opened,
 * pg_notify_cmd_done, pg_notify_lost and pg_notify_deliver. Which clients listen on which
 * channels is the core's business (pg_notify.c).
 *
 * Commands are sent from the poll callback, never from pg_shell_listen_send itself, so a
 * failure is reported up from the loop and never into the middle of the core's own call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"

/* One SQL command for the listening connection. */
typedef struct pg_lcmd {
    gw_list node;
    char sql[];
} pg_lcmd;

struct pg_listen_conn {
    pg_pool *pool;
    PGconn *pq;
    uv_poll_t *poll; /* freed in its close callback */
    int poll_fd;
    bool ready;   /* logged in: commands may be sent */
    bool sent;    /* the head command was sent and its results are pending */
    gw_list cmds; /* queued, the head is in flight once sent */
};

static void listener_io(uv_poll_t *h, int status, int events);

static void on_poll_closed(uv_handle_t *h)
{
    free(h);
}

static void free_cmds(pg_listen_conn *l)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &l->cmds)
    {
        gw_list_remove(it);
        free(gw_container_of(it, pg_lcmd, node));
    }
}

/* Drops the connection and its queue; the core hears nothing of it. */
static void listen_conn_free(pg_listen_conn *l)
{
    if (l->poll)
        uv_close((uv_handle_t *)l->poll, on_poll_closed);
    if (l->pq)
        PQfinish(l->pq);
    free_cmds(l);
    l->pool->listen_conn = NULL;
    free(l);
}

/* The connection failed: it is dropped, then the core is told why. */
static void broken(pg_listen_conn *l, const char *why)
{
    pg_pool *p = l->pool;
    /* why is often libpq's PQerrorMessage, which PQfinish frees. */
    char msg[256];
    snprintf(msg, sizeof msg, "%s", why);
    listen_conn_free(l);
    pg_notify_lost(p, msg);
}

static int watch(pg_listen_conn *l, int events)
{
    int fd = PQsocket(l->pq);
    if (fd < 0)
        return -1;
    if (l->poll && l->poll_fd != fd) {
        uv_close((uv_handle_t *)l->poll, on_poll_closed);
        l->poll = NULL;
    }
    if (!l->poll) {
        l->poll = malloc(sizeof *l->poll);
        if (!l->poll || uv_poll_init(l->pool->gw->ctx->loop, l->poll, fd) != 0) {
            free(l->poll);
            l->poll = NULL;
            return -1;
        }
        l->poll->data = l;
        l->poll_fd = fd;
    }
    return uv_poll_start(l->poll, events, listener_io) == 0 ? 0 : -1;
}

/* Sends the next command when none is in flight; flushes libpq's output. 0, or -1 when the
 * connection broke (l is freed, the core told). */
static int pump(pg_listen_conn *l)
{
    gw_list *it = gw_list_first(&l->cmds);
    if (it && !l->sent) {
        if (!PQsendQuery(l->pq, gw_container_of(it, pg_lcmd, node)->sql)) {
            broken(l, PQerrorMessage(l->pq));
            return -1;
        }
        l->sent = true;
    }
    int f = PQflush(l->pq);
    if (f < 0) {
        broken(l, PQerrorMessage(l->pq));
        return -1;
    }
    /* Writable also while a command waits behind the one in flight: harmless, and it is sent
     * from this callback as soon as that one ends. */
    if (watch(l, UV_READABLE | (f > 0 ? UV_WRITABLE : 0)) != 0) {
        broken(l, "cannot watch the socket");
        return -1;
    }
    return 0;
}

/* 0, or -1 when l is gone (broken, or closed by the core during one of the reports). */
static int read_results(pg_listen_conn *l)
{
    pg_pool *p = l->pool;
    if (!PQconsumeInput(l->pq)) {
        broken(l, PQerrorMessage(l->pq));
        return -1;
    }
    while (l->sent && !PQisBusy(l->pq)) {
        PGresult *r = PQgetResult(l->pq);
        if (r) {
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                gw_warn(p->gw->ctx, "listening connection: %s", PQresultErrorMessage(r));
            PQclear(r);
            continue;
        }
        /* NULL: the head command is complete. */
        gw_list *it = gw_list_first(&l->cmds);
        gw_list_remove(it);
        free(gw_container_of(it, pg_lcmd, node));
        l->sent = false;
        pg_notify_cmd_done(p);
        if (p->listen_conn != l || pump(l) != 0)
            return -1;
    }
    PGnotify *n;
    while ((n = PQnotifies(l->pq)) != NULL) {
        pg_notify_deliver(p, n->relname, (uint32_t)n->be_pid, n->extra);
        PQfreemem(n);
        if (p->listen_conn != l)
            return -1;
    }
    return 0;
}

static void listener_io(uv_poll_t *h, int status, int events)
{
    (void)events;
    pg_listen_conn *l = h->data;
    if (status < 0) {
        broken(l, uv_strerror(status));
        return;
    }
    if (!l->ready) {
        switch (PQconnectPoll(l->pq)) {
        case PGRES_POLLING_READING:
            if (watch(l, UV_READABLE) != 0)
                broken(l, "cannot watch the socket");
            return;
        case PGRES_POLLING_WRITING:
            if (watch(l, UV_WRITABLE) != 0)
                broken(l, "cannot watch the socket");
            return;
        case PGRES_POLLING_OK:
            PQsetnonblocking(l->pq, 1);
            l->ready = true;
            pg_notify_opened(l->pool);
            pump(l);
            return;
        default:
            broken(l, PQerrorMessage(l->pq));
            return;
        }
    }
    if (read_results(l) == 0)
        pump(l);
}

int pg_shell_listen_open(pg_pool *p)
{
    gw_assert(!p->listen_conn);
    pg_listen_conn *l = calloc(1, sizeof *l);
    if (!l)
        return -1;
    l->pool = p;
    gw_list_init(&l->cmds);
    p->listen_conn = l;
    l->pq = PQconnectStartParams((const char *const *)p->kw, (const char *const *)p->val, 0);
    if (!l->pq || PQstatus(l->pq) == CONNECTION_BAD || watch(l, UV_WRITABLE) != 0) {
        gw_warn(p->gw->ctx, "listening connection of %s/%s: %s", p->dbname, p->user,
                l->pq ? PQerrorMessage(l->pq) : "out of memory");
        listen_conn_free(l);
        return -1;
    }
    return 0;
}

int pg_shell_listen_send(pg_pool *p, bool listen, const char *channel)
{
    pg_listen_conn *l = p->listen_conn;
    gw_assert(l);
    /* The channel as a quoted identifier: any name a client used is safe to send. */
    const char *verb = listen ? "LISTEN" : "UNLISTEN";
    size_t n = strlen(verb) + 2 * strlen(channel) + 8;
    pg_lcmd *cmd = malloc(sizeof *cmd + n);
    if (!cmd)
        return -1;
    char *d = cmd->sql;
    d += strlen(strcpy(d, verb));
    *d++ = ' ';
    *d++ = '"';
    for (const char *s = channel; *s; s++) {
        if (*s == '"')
            *d++ = '"';
        *d++ = *s;
    }
    *d++ = '"';
    *d = 0;
    /* Logged in and idle: the poll callback sends it as soon as the socket is writable. */
    if (l->ready && !l->sent && gw_list_empty(&l->cmds) &&
        watch(l, UV_READABLE | UV_WRITABLE) != 0) {
        free(cmd);
        return -1;
    }
    gw_list_push_tail(&l->cmds, &cmd->node);
    return 0;
}

void pg_shell_listen_close(pg_pool *p)
{
    if (p->listen_conn)
        listen_conn_free(p->listen_conn);
}
