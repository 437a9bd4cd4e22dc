/*
 * pg_listen: LISTEN/NOTIFY in transaction mode.
 *
 * A LISTEN run on a pooled server would stay in that server's session: its notifications would
 * reach whichever client uses the server next, and stop reaching the client that listened. So a
 * client's query made only of LISTEN and UNLISTEN statements never goes to a pooled server.
 * Each pool has one connection of its own for listening (opened by the first LISTEN, driven by
 * libpq on the loop); Sluice LISTENs there on every channel some client listens on, and hands
 * each notification to exactly the clients that listen on its channel. A client's LISTEN is
 * answered once the listening connection has confirmed it, so a NOTIFY committed after the
 * client saw "LISTEN" reaches it, as with PostgreSQL. A LISTEN inside a transaction or mixed
 * with other statements pins the client instead (pg_pin.c).
 *
 * Notifications reach a client only at message boundaries: while a server is half-way through
 * streaming a message to it they wait in c->notify (pg_listen_flush).
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_sql.h"
#include "drivers/pg/pg_wire.h"

/* A client that does not read is closed once this much output waits for it. */
#define PG_NOTIFY_MAX (4u * 1024u * 1024u)
/* A lost listening connection with listeners left is opened again after this long. */
#define PG_LISTEN_RETRY_MS 1000
/* Channels one client may listen on: each costs Sluice memory, not the server. */
#define PG_LISTEN_MAX_CHANNELS 1024u

typedef enum pg_listener_state {
    PG_LS_CONNECTING, /* libpq handshake; commands wait in the queue */
    PG_LS_READY,      /* connected: commands are sent one at a time */
    PG_LS_BROKEN,     /* the connection failed; the next LISTEN opens a new one */
} pg_listener_state;

typedef struct pg_channel {
    gw_list node;   /* listener->channels */
    gw_hnode hnode; /* listener->by_name */
    gw_list subs;   /* pg_sub.chan_node */
    bool on_server; /* a LISTEN for it was queued and no UNLISTEN since */
    char name[64];
} pg_channel;

typedef struct pg_sub {
    gw_list chan_node;   /* channel->subs */
    gw_list client_node; /* client->subs */
    pg_channel *ch;
    pg_client *c;
} pg_sub;

/* One SQL command for the listening connection. */
typedef struct pg_lcmd {
    gw_list node;
    uint64_t seq;
    char sql[];
} pg_lcmd;

struct pg_listener {
    pg_pool *pool;
    PGconn *pq;
    uv_poll_t *poll; /* freed in its close callback */
    int poll_fd;
    pg_listener_state state;
    uint64_t since; /* entered the current state */
    gw_list channels;
    gw_htable by_name; /* channels by name: clients choose them, so the table is keyed */
    gw_list cmds;      /* queued, the head is in flight once sent */
    gw_list waiters;   /* clients whose LISTEN waits for done_seq >= their listen_seq */
    bool sent;         /* the head command was sent and its results are pending */
    uint64_t next_seq; /* number of the last command queued */
    uint64_t done_seq; /* number of the last command finished */
};

static void listener_io(uv_poll_t *h, int status, int events);

static pg_channel *find_channel(pg_listener *l, const char *name)
{
    uint64_t h = gw_hash_bytes(name, strlen(name));
    for (gw_hnode *n = gw_htable_chain(&l->by_name, h); n; n = n->next) {
        pg_channel *ch = gw_container_of(n, pg_channel, hnode);
        if (n->hash == h && strcmp(ch->name, name) == 0)
            return ch;
    }
    return NULL;
}

static void channel_free(pg_listener *l, pg_channel *ch)
{
    gw_htable_remove(&l->by_name, &ch->hnode);
    gw_list_remove(&ch->node);
    free(ch);
}

static int queue_cmd(pg_listener *l, const char *verb, const char *channel)
{
    /* The channel as a quoted identifier: any name a client used is safe to send. */
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
    cmd->seq = ++l->next_seq;
    gw_list_push_tail(&l->cmds, &cmd->node);
    return 0;
}

static void answer(pg_client *c, const char *error)
{
    pg_gateway *gw = c->conn.gw;
    gw_list_remove(&c->listen_node);
    c->listen_wait = false;
    /* The command tags were built while the query was walked, in statement order. */
    int rc =
        error ? pg_build_error(&c->conn.out, &gw->bufs, "ERROR", "08006", error)
              : gw_buf_append(&c->conn.out, &gw->bufs, c->listen_reply.data, c->listen_reply.len);
    gw_buf_release(&c->listen_reply, &gw->bufs);
    rc = rc ? rc : pg_build_ready(&c->conn.out, &gw->bufs, 'I');
    if (rc != 0) {
        pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
        return;
    }
    pg_conn_mark_process(&c->conn);
}

/* Answers the clients whose commands are all done (or all of them with an error). */
static void wake_waiters(pg_listener *l, const char *error)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &l->waiters)
    {
        pg_client *c = gw_container_of(it, pg_client, listen_node);
        if (error || l->done_seq >= c->listen_seq)
            answer(c, error);
    }
}

static void close_poll(pg_listener *l);

static void on_poll_closed(uv_handle_t *h)
{
    free(h);
}

static void close_poll(pg_listener *l)
{
    if (l->poll) {
        uv_close((uv_handle_t *)l->poll, on_poll_closed);
        l->poll = NULL;
    }
}

/* The listening connection is gone: commands are dropped, waiting clients get an error, and the
 * channels are LISTENed again when a new connection opens. */
static void listener_broken(pg_listener *l, const char *why)
{
    pg_gateway *gw = l->pool->gw;
    /* why is often libpq's PQerrorMessage, which PQfinish below frees. */
    char msg[300];
    snprintf(msg, sizeof msg, "could not LISTEN through Sluice's listening connection: %s", why);
    gw_warn(gw->ctx, "listening connection of %s/%s lost: %s", l->pool->dbname, l->pool->user, why);
    close_poll(l);
    if (l->pq) {
        PQfinish(l->pq);
        l->pq = NULL;
    }
    l->state = PG_LS_BROKEN;
    l->since = gw_now(gw->ctx);
    l->sent = false;
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &l->cmds)
    {
        gw_list_remove(it);
        free(gw_container_of(it, pg_lcmd, node));
    }
    l->done_seq = l->next_seq;
    for (it = l->channels.next; it != &l->channels; it = it->next)
        gw_container_of(it, pg_channel, node)->on_server = false;
    wake_waiters(l, msg);
}

static int watch(pg_listener *l, int events)
{
    int fd = PQsocket(l->pq);
    if (fd < 0)
        return -1;
    if (l->poll && l->poll_fd != fd)
        close_poll(l);
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

static void deliver(pg_listener *l, const PGnotify *n)
{
    pg_channel *ch = find_channel(l, n->relname);
    if (!ch)
        return;
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &ch->subs)
    {
        pg_client *c = gw_container_of(it, pg_sub, chan_node)->c;
        pg_gateway *gw = c->conn.gw;
        if (pg_conn_closing(&c->conn))
            continue;
        if (c->conn.out.len + c->conn.pending + c->notify.len > PG_NOTIFY_MAX) {
            pg_client_fatal(c, PG_END_LIMIT, "54000",
                            "notifications are not being read: more than %u bytes wait",
                            PG_NOTIFY_MAX);
            continue;
        }
        /* Half-way through a streamed server message, the client's output is no place for a
         * message of its own: it waits for the boundary. */
        bool hold = c->server && c->server->conn.pass_left && !c->server->conn.pass_drop;
        gw_buf *out = hold ? &c->notify : &c->conn.out;
        size_t m;
        uint8_t pid[4];
        pg_put_u32(pid, (uint32_t)n->be_pid);
        int rc = pg_msg_begin(out, &gw->bufs, 'A', &m);
        rc = rc ? rc : pg_msg_put(out, &gw->bufs, pid, 4);
        rc = rc ? rc : pg_msg_put_str(out, &gw->bufs, n->relname);
        rc = rc ? rc : pg_msg_put_str(out, &gw->bufs, n->extra ? n->extra : "");
        if (pg_msg_finish(out, m, rc) != 0) {
            pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
            continue;
        }
        pg_conn_mark(&c->conn);
    }
}

/* Sends the next command when none is in flight; flushes libpq's output. */
static void pump(pg_listener *l)
{
    if (l->state != PG_LS_READY)
        return;
    gw_list *it = gw_list_first(&l->cmds);
    if (it && !l->sent) {
        pg_lcmd *cmd = gw_container_of(it, pg_lcmd, node);
        if (!PQsendQuery(l->pq, cmd->sql)) {
            listener_broken(l, PQerrorMessage(l->pq));
            return;
        }
        l->sent = true;
    }
    int f = PQflush(l->pq);
    if (f < 0) {
        listener_broken(l, PQerrorMessage(l->pq));
        return;
    }
    if (watch(l, UV_READABLE | (f > 0 ? UV_WRITABLE : 0)) != 0)
        listener_broken(l, "cannot watch the socket");
}

static void read_results(pg_listener *l)
{
    pg_gateway *gw = l->pool->gw;
    if (!PQconsumeInput(l->pq)) {
        listener_broken(l, PQerrorMessage(l->pq));
        return;
    }
    while (l->sent && !PQisBusy(l->pq)) {
        PGresult *r = PQgetResult(l->pq);
        if (r) {
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                gw_warn(gw->ctx, "listening connection: %s", PQresultErrorMessage(r));
            PQclear(r);
            continue;
        }
        /* NULL: the head command is complete. */
        gw_list *it = gw_list_first(&l->cmds);
        pg_lcmd *cmd = gw_container_of(it, pg_lcmd, node);
        l->done_seq = cmd->seq;
        gw_list_remove(it);
        free(cmd);
        l->sent = false;
        wake_waiters(l, NULL);
        pump(l);
        if (l->state != PG_LS_READY)
            return;
    }
    PGnotify *n;
    while ((n = PQnotifies(l->pq)) != NULL) {
        deliver(l, n);
        PQfreemem(n);
    }
}

static void listener_io(uv_poll_t *h, int status, int events)
{
    (void)events;
    pg_listener *l = h->data;
    if (status < 0) {
        listener_broken(l, uv_strerror(status));
        return;
    }
    if (l->state == PG_LS_CONNECTING) {
        switch (PQconnectPoll(l->pq)) {
        case PGRES_POLLING_READING:
            if (watch(l, UV_READABLE) != 0)
                listener_broken(l, "cannot watch the socket");
            return;
        case PGRES_POLLING_WRITING:
            if (watch(l, UV_WRITABLE) != 0)
                listener_broken(l, "cannot watch the socket");
            return;
        case PGRES_POLLING_OK:
            PQsetnonblocking(l->pq, 1);
            l->state = PG_LS_READY;
            gw_info(l->pool->gw->ctx, "listening connection of %s/%s open", l->pool->dbname,
                    l->pool->user);
            pump(l);
            return;
        default:
            listener_broken(l, PQerrorMessage(l->pq));
            return;
        }
    }
    if (l->state != PG_LS_READY)
        return;
    read_results(l);
    if (l->state == PG_LS_READY)
        pump(l);
}

/* Opens the listening connection and queues a LISTEN for every channel that has listeners. */
static int listener_open(pg_listener *l)
{
    pg_pool *p = l->pool;
    l->pq = PQconnectStartParams((const char *const *)p->kw, (const char *const *)p->val, 0);
    if (!l->pq || PQstatus(l->pq) == CONNECTION_BAD) {
        listener_broken(l, l->pq ? PQerrorMessage(l->pq) : "out of memory");
        return -1;
    }
    l->state = PG_LS_CONNECTING;
    l->since = gw_now(p->gw->ctx);
    for (gw_list *it = l->channels.next; it != &l->channels; it = it->next) {
        pg_channel *ch = gw_container_of(it, pg_channel, node);
        if (!gw_list_empty(&ch->subs) && !ch->on_server) {
            if (queue_cmd(l, "LISTEN", ch->name) != 0)
                return -1;
            ch->on_server = true;
        }
    }
    if (watch(l, UV_WRITABLE) != 0) {
        listener_broken(l, "cannot watch the socket");
        return -1;
    }
    return 0;
}

static void sub_free(pg_listener *l, pg_sub *sub)
{
    pg_channel *ch = sub->ch;
    gw_list_remove(&sub->chan_node);
    gw_list_remove(&sub->client_node);
    free(sub);
    if (!gw_list_empty(&ch->subs))
        return;
    /* The last listener left: stop listening on the server (the reply is not waited for). */
    if (ch->on_server && l->state != PG_LS_BROKEN) {
        if (queue_cmd(l, "UNLISTEN", ch->name) == 0)
            pump(l);
    }
    channel_free(l, ch);
}

/* 0, or -1 when out of memory or over the client's channel limit (c->listen_error says). */
static int do_listen(pg_listener *l, pg_client *c, const char *name)
{
    /* The client's own list is the short one (bounded below); a channel's may hold thousands. */
    uint32_t mine = 0;
    for (gw_list *it = c->subs.next; it != &c->subs; it = it->next, mine++)
        if (strcmp(gw_container_of(it, pg_sub, client_node)->ch->name, name) == 0)
            return 0; /* listening already */
    if (mine >= PG_LISTEN_MAX_CHANNELS) {
        c->listen_error = "54000";
        return -1;
    }
    pg_channel *ch = find_channel(l, name);
    if (!ch) {
        ch = calloc(1, sizeof *ch);
        if (!ch)
            return -1;
        snprintf(ch->name, sizeof ch->name, "%s", name);
        gw_list_init(&ch->subs);
        if (gw_htable_insert(&l->by_name, &ch->hnode, gw_hash_bytes(name, strlen(name))) != 0) {
            free(ch);
            return -1;
        }
        gw_list_push_tail(&l->channels, &ch->node);
    }
    pg_sub *sub = calloc(1, sizeof *sub);
    if (!sub) {
        if (gw_list_empty(&ch->subs))
            channel_free(l, ch);
        return -1;
    }
    sub->ch = ch;
    sub->c = c;
    gw_list_push_tail(&ch->subs, &sub->chan_node);
    gw_list_push_tail(&c->subs, &sub->client_node);
    if (!ch->on_server && l->state != PG_LS_BROKEN) {
        if (queue_cmd(l, "LISTEN", ch->name) != 0)
            return -1;
        ch->on_server = true;
    }
    return 0;
}

static void do_unlisten(pg_listener *l, pg_client *c, const char *name)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &c->subs)
    {
        pg_sub *sub = gw_container_of(it, pg_sub, client_node);
        if (!name || strcmp(sub->ch->name, name) == 0)
            sub_free(l, sub);
    }
}

typedef struct listen_walk {
    pg_listener *l;
    pg_client *c;
    bool failed;
} listen_walk;

/* The channel as a C string (pg_sql_listen_each already truncates it to 63 bytes). */
static void channel_name(char name[64], const char *channel, size_t n)
{
    if (n > 63)
        n = 63;
    memcpy(name, channel, n);
    name[n] = 0;
}

static void on_stmt(char kind, const char *channel, size_t n, void *arg)
{
    listen_walk *w = arg;
    char name[64];
    channel_name(name, channel, n);
    size_t m;
    gw_bufpool *bufs = &w->c->conn.gw->bufs;
    int rc = pg_msg_begin(&w->c->listen_reply, bufs, 'C', &m);
    rc = rc ? rc : pg_msg_put_str(&w->c->listen_reply, bufs, kind == 'L' ? "LISTEN" : "UNLISTEN");
    if (pg_msg_finish(&w->c->listen_reply, m, rc) != 0)
        w->failed = true;
    if (kind == 'L') {
        if (!w->failed && do_listen(w->l, w->c, name) != 0)
            w->failed = true;
    } else {
        do_unlisten(w->l, w->c, kind == '*' ? NULL : name);
    }
}

static void on_failed_stmt(char kind, const char *channel, size_t n, void *arg)
{
    listen_walk *w = arg;
    char name[64];
    if (kind != 'L')
        return;
    channel_name(name, channel, n);
    do_unlisten(w->l, w->c, name);
}

int pg_listen_query(pg_client *c, const char *sql, size_t len)
{
    pg_pool *p = c->pool;
    /* Only the statement kinds are checked first, so a query with anything else in it goes to
     * the server untouched (and pins the client there). */
    int n = pg_sql_listen_each(sql, len, NULL, NULL);
    if (n <= 0)
        return 0;
    if (!p->listener) {
        pg_listener *l = calloc(1, sizeof *l);
        if (!l) {
            pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
            return -1;
        }
        l->pool = p;
        l->state = PG_LS_BROKEN;
        gw_list_init(&l->channels);
        gw_htable_init(&l->by_name);
        gw_list_init(&l->cmds);
        gw_list_init(&l->waiters);
        p->listener = l;
    }
    pg_listener *l = p->listener;
    listen_walk w = {l, c, false};
    pg_sql_listen_each(sql, len, on_stmt, &w);
    if (w.failed) {
        if (c->listen_error)
            pg_client_fatal(c, PG_END_LIMIT, c->listen_error,
                            "too many LISTEN channels (at most %u a client)",
                            PG_LISTEN_MAX_CHANNELS);
        else
            pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return -1;
    }
    if (l->state == PG_LS_BROKEN && !gw_list_empty(&l->channels))
        listener_open(l);
    if (l->state == PG_LS_BROKEN) {
        /* No listening connection: the LISTENs of this query did not happen. */
        pg_sql_listen_each(sql, len, on_failed_stmt, &w);
        c->listen_wait = true;
        answer(c, "could not open Sluice's listening connection for LISTEN");
        return pg_conn_closing(&c->conn) ? -1 : 1;
    }
    /* Answered once every command queued so far is done (at once when there is none). */
    c->listen_seq = l->next_seq;
    c->listen_wait = true;
    gw_list_push_tail(&l->waiters, &c->listen_node);
    if (l->done_seq >= c->listen_seq)
        answer(c, NULL);
    else
        pump(l);
    return pg_conn_closing(&c->conn) ? -1 : 1;
}

void pg_listen_client_gone(pg_client *c)
{
    gw_list_remove(&c->listen_node);
    c->listen_wait = false;
    if (!c->pool || !c->pool->listener)
        return;
    do_unlisten(c->pool->listener, c, NULL);
}

void pg_listen_flush(pg_client *c)
{
    if (c->notify.len == 0 || (c->server && c->server->conn.pass_left))
        return;
    pg_gateway *gw = c->conn.gw;
    if (gw_buf_append(&c->conn.out, &gw->bufs, c->notify.data, c->notify.len) != 0) {
        pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
        return;
    }
    gw_buf_release(&c->notify, &gw->bufs);
    pg_conn_mark(&c->conn);
}

void pg_listen_tick(pg_pool *p, uint64_t now)
{
    pg_listener *l = p->listener;
    if (!l || p->gw->stopping)
        return;
    uint64_t limit = p->gw->ctx->cfg->server_connect_timeout_ms;
    if (l->state == PG_LS_CONNECTING && limit && now - l->since > limit)
        listener_broken(l, "server_connect_timeout reached");
    /* Listeners are left: notifications sent until the new connection LISTENs are lost. */
    if (l->state == PG_LS_BROKEN && !gw_list_empty(&l->channels) &&
        now - l->since >= PG_LISTEN_RETRY_MS)
        listener_open(l);
}

void pg_listen_stop(pg_pool *p)
{
    pg_listener *l = p->listener;
    if (!l)
        return;
    close_poll(l);
    if (l->pq)
        PQfinish(l->pq);
    l->pq = NULL;
    l->state = PG_LS_BROKEN;
}

void pg_listen_free(pg_pool *p)
{
    pg_listener *l = p->listener;
    if (!l)
        return;
    pg_listen_stop(p);
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &l->cmds)
    {
        gw_list_remove(it);
        free(gw_container_of(it, pg_lcmd, node));
    }
    gw_list_foreach_safe(it, tmp, &l->channels)
    {
        pg_channel *ch = gw_container_of(it, pg_channel, node);
        gw_list *s, *st;
        gw_list_foreach_safe(s, st, &ch->subs)
        {
            pg_sub *sub = gw_container_of(s, pg_sub, chan_node);
            gw_list_remove(&sub->client_node);
            free(sub);
        }
        free(ch);
    }
    gw_htable_free(&l->by_name);
    free(l);
    p->listener = NULL;
}
