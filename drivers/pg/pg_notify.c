/*
 * pg_notify: LISTEN/NOTIFY in transaction mode (core): which clients listen on which channels,
 * and which notifications reach whom.
 *
 * A LISTEN run on a pooled server would stay in that server's session: its notifications would
 * reach whichever client uses the server next, and stop reaching the client that listened. So a
 * client's query made only of LISTEN and UNLISTEN statements never goes to a pooled server.
 * Each pool has one connection of its own for listening (the shell's, pg_listen.c: opened by
 * the first LISTEN); Sluice LISTENs there on every channel some client listens on, and hands
 * each notification to exactly the clients that listen on its channel. A client's LISTEN is
 * answered once the listening connection has confirmed it, so a NOTIFY committed after the
 * client saw "LISTEN" reaches it, as with PostgreSQL. A LISTEN inside a transaction or mixed
 * with other statements pins the client instead (pg_pin.c).
 *
 * The shell runs the commands asked for with pg_shell_listen_send in order and reports each
 * end with pg_notify_cmd_done, so counting them is enough to know which are done.
 *
 * Notifications reach a client only at message boundaries: while a server is half-way through
 * streaming a message to it they wait in c->listen->held (pg_notify_flush).
 *
 * A client's own part (its channels, its LISTEN being confirmed, notifications held back) is
 * allocated at its first LISTEN or UNLISTEN: most clients never listen.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_sql.h"
#include "drivers/pg/pg_wire.h"

/* A client that does not read is closed once this much output waits for it. */
#define PG_NOTIFY_MAX (4u * 1024u * 1024u)
/* A lost listening connection with listeners left is opened again after this long. */
#define PG_LISTEN_RETRY_MS 1000
/* Channels one client may listen on: each costs Sluice memory, not the server. */
#define PG_LISTEN_MAX_CHANNELS 1024u

typedef enum pg_notify_state {
    PG_NS_DOWN,       /* no listening connection; the next LISTEN (or the tick) opens one */
    PG_NS_CONNECTING, /* the shell is connecting; commands wait in its queue */
    PG_NS_READY,      /* connected: the shell runs the commands one at a time */
} pg_notify_state;

typedef struct pg_channel {
    gw_list node;   /* notify->channels */
    gw_hnode hnode; /* notify->by_name */
    gw_list subs;   /* pg_sub.chan_node */
    bool on_server; /* a LISTEN for it was sent and no UNLISTEN since */
    char name[64];
} pg_channel;

typedef struct pg_sub {
    gw_list chan_node;   /* channel->subs */
    gw_list client_node; /* client->listen->subs */
    pg_channel *ch;
    pg_client *c;
} pg_sub;

/* A client's LISTEN state (pg_client.listen), freed with the client. */
typedef struct pg_client_listen {
    pg_client *c;
    gw_list subs;      /* pg_sub.client_node */
    gw_list node;      /* notify->waiters while c->listen_wait */
    uint64_t seq;      /* the listening connection's command its answer waits for */
    gw_buf reply;      /* the command tags of that query, sent with its answer */
    const char *error; /* SQLSTATE of a LISTEN refused for a limit, else NULL */
    gw_buf held;       /* notifications held while a server message to it is half-way through */
} pg_client_listen;

struct pg_notify {
    pg_pool *pool;
    pg_notify_state state;
    uint64_t since; /* entered the current state */
    gw_list channels;
    gw_htable by_name; /* channels by name: clients choose them, so the table is keyed */
    gw_list waiters;   /* pg_client_listen.node: LISTENs waiting for done_seq >= their seq */
    uint64_t next_seq; /* number of the last command sent to the shell */
    uint64_t done_seq; /* number of the last command the shell finished */
};

static pg_channel *find_channel(pg_notify *n, const char *name)
{
    uint64_t h = gw_hash_bytes(name, strlen(name));
    for (gw_hnode *hn = gw_htable_chain(&n->by_name, h); hn; hn = hn->next) {
        pg_channel *ch = gw_container_of(hn, pg_channel, hnode);
        if (hn->hash == h && strcmp(ch->name, name) == 0)
            return ch;
    }
    return NULL;
}

static void channel_free(pg_notify *n, pg_channel *ch)
{
    gw_htable_remove(&n->by_name, &ch->hnode);
    gw_list_remove(&ch->node);
    free(ch);
}

/* 0, or -1 when the shell could not take the command (out of memory). */
static int send_cmd(pg_notify *n, bool listen, const char *channel)
{
    if (pg_shell_listen_send(n->pool, listen, channel) != 0)
        return -1;
    n->next_seq++;
    return 0;
}

static void answer(pg_client *c, const char *error)
{
    pg_gateway *gw = c->conn.gw;
    pg_client_listen *l = c->listen;
    gw_list_remove(&l->node);
    c->listen_wait = false;
    /* The command tags were built while the query was walked, in statement order. */
    int rc = error ? pg_build_error(&c->conn.out, gw->bufs, "ERROR", "08006", error)
                   : gw_buf_append(&c->conn.out, gw->bufs, l->reply.data, l->reply.len);
    gw_buf_release(&l->reply, gw->bufs);
    rc = rc ? rc : pg_build_ready(&c->conn.out, gw->bufs, 'I');
    if (rc != 0) {
        pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
        return;
    }
    pg_conn_mark_process(&c->conn);
}

/* Answers the clients whose commands are all done (or all of them with an error). */
static void wake_waiters(pg_notify *n, const char *error)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &n->waiters)
    {
        pg_client_listen *l = gw_container_of(it, pg_client_listen, node);
        if (error || n->done_seq >= l->seq)
            answer(l->c, error);
    }
}

/* The listening connection is gone (the shell has dropped it and its commands): waiting
 * clients get an error, and the channels are LISTENed again when a new connection opens. */
static void lost(pg_notify *n, const char *why)
{
    pg_pool *p = n->pool;
    char msg[300];
    snprintf(msg, sizeof msg, "could not LISTEN through Sluice's listening connection: %s", why);
    gw_warn(p->gw->ctx, "listening connection of %s/%s lost: %s", p->dbname, p->user, why);
    n->state = PG_NS_DOWN;
    n->since = gw_now(p->gw->ctx);
    n->done_seq = n->next_seq;
    for (gw_list *it = n->channels.next; it != &n->channels; it = it->next)
        gw_container_of(it, pg_channel, node)->on_server = false;
    wake_waiters(n, msg);
}

/* Opens the listening connection and asks for a LISTEN on every channel that has listeners. */
static void open_conn(pg_notify *n)
{
    pg_pool *p = n->pool;
    if (pg_shell_listen_open(p) != 0) {
        lost(n, "the connection could not be started");
        return;
    }
    n->state = PG_NS_CONNECTING;
    n->since = gw_now(p->gw->ctx);
    for (gw_list *it = n->channels.next; it != &n->channels; it = it->next) {
        pg_channel *ch = gw_container_of(it, pg_channel, node);
        if (!gw_list_empty(&ch->subs) && !ch->on_server) {
            if (send_cmd(n, true, ch->name) != 0) {
                pg_shell_listen_close(p);
                lost(n, "out of memory");
                return;
            }
            ch->on_server = true;
        }
    }
}

static void sub_free(pg_notify *n, pg_sub *sub)
{
    pg_channel *ch = sub->ch;
    gw_list_remove(&sub->chan_node);
    gw_list_remove(&sub->client_node);
    free(sub);
    if (!gw_list_empty(&ch->subs))
        return;
    /* The last listener left: stop listening on the server (the reply is not waited for; when
     * the command cannot be sent, notifications for the channel find no one and are dropped). */
    if (ch->on_server && n->state != PG_NS_DOWN)
        send_cmd(n, false, ch->name);
    channel_free(n, ch);
}

/* 0, or -1 when out of memory or over the client's channel limit (c->listen->error says). */
static int do_listen(pg_notify *n, pg_client *c, const char *name)
{
    /* The client's own list is the short one (bounded below); a channel's may hold thousands. */
    uint32_t mine = 0;
    gw_list *subs = &c->listen->subs;
    for (gw_list *it = subs->next; it != subs; it = it->next, mine++)
        if (strcmp(gw_container_of(it, pg_sub, client_node)->ch->name, name) == 0)
            return 0; /* listening already */
    if (mine >= PG_LISTEN_MAX_CHANNELS) {
        c->listen->error = "54000";
        return -1;
    }
    pg_channel *ch = find_channel(n, name);
    if (!ch) {
        ch = calloc(1, sizeof *ch);
        if (!ch)
            return -1;
        snprintf(ch->name, sizeof ch->name, "%s", name);
        gw_list_init(&ch->subs);
        if (gw_htable_insert(&n->by_name, &ch->hnode, gw_hash_bytes(name, strlen(name))) != 0) {
            free(ch);
            return -1;
        }
        gw_list_push_tail(&n->channels, &ch->node);
    }
    pg_sub *sub = calloc(1, sizeof *sub);
    if (!sub) {
        if (gw_list_empty(&ch->subs))
            channel_free(n, ch);
        return -1;
    }
    sub->ch = ch;
    sub->c = c;
    gw_list_push_tail(&ch->subs, &sub->chan_node);
    gw_list_push_tail(&c->listen->subs, &sub->client_node);
    if (!ch->on_server && n->state != PG_NS_DOWN) {
        if (send_cmd(n, true, ch->name) != 0)
            return -1;
        ch->on_server = true;
    }
    return 0;
}

static void do_unlisten(pg_notify *n, pg_client *c, const char *name)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &c->listen->subs)
    {
        pg_sub *sub = gw_container_of(it, pg_sub, client_node);
        if (!name || strcmp(sub->ch->name, name) == 0)
            sub_free(n, sub);
    }
}

typedef struct listen_walk {
    pg_notify *n;
    pg_client *c;
    bool failed;
    bool listens; /* the query has a LISTEN */
} listen_walk;

/* The channel as a C string (pg_sql_listen_each already truncates it to 63 bytes). */
static void channel_name(char name[64], const char *channel, size_t len)
{
    if (len > 63)
        len = 63;
    memcpy(name, channel, len);
    name[len] = 0;
}

static void on_stmt(char kind, const char *channel, size_t len, void *arg)
{
    listen_walk *w = arg;
    char name[64];
    channel_name(name, channel, len);
    size_t m;
    gw_bufpool *bufs = w->c->conn.gw->bufs;
    gw_buf *reply = &w->c->listen->reply;
    int rc = pg_msg_begin(reply, bufs, 'C', &m);
    rc = rc ? rc : pg_msg_put_str(reply, bufs, kind == 'L' ? "LISTEN" : "UNLISTEN");
    if (pg_msg_finish(reply, m, rc) != 0)
        w->failed = true;
    if (kind == 'L') {
        w->listens = true;
        if (!w->failed && do_listen(w->n, w->c, name) != 0)
            w->failed = true;
    } else {
        do_unlisten(w->n, w->c, kind == '*' ? NULL : name);
    }
}

static void on_failed_stmt(char kind, const char *channel, size_t len, void *arg)
{
    listen_walk *w = arg;
    char name[64];
    if (kind != 'L')
        return;
    channel_name(name, channel, len);
    do_unlisten(w->n, w->c, name);
}

static pg_notify *notify_get(pg_pool *p)
{
    if (p->notify)
        return p->notify;
    pg_notify *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->pool = p;
    n->state = PG_NS_DOWN;
    gw_list_init(&n->channels);
    gw_htable_init(&n->by_name);
    gw_list_init(&n->waiters);
    p->notify = n;
    return n;
}

int pg_notify_query(pg_client *c, const char *sql, size_t len)
{
    /* Only the statement kinds are checked first, so a query with anything else in it goes to
     * the server untouched (and pins the client there). */
    if (pg_sql_listen_each(sql, len, NULL, NULL) <= 0)
        return 0;
    pg_notify *n = notify_get(c->pool);
    if (n && !c->listen && (c->listen = calloc(1, sizeof *c->listen)) != NULL) {
        c->listen->c = c;
        gw_list_init(&c->listen->subs);
        gw_list_init(&c->listen->node);
    }
    if (!n || !c->listen) {
        pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return -1;
    }
    listen_walk w = {n, c, false, false};
    pg_sql_listen_each(sql, len, on_stmt, &w);
    if (w.failed) {
        if (c->listen->error)
            pg_client_fatal(c, PG_END_LIMIT, c->listen->error,
                            "too many LISTEN channels (at most %u a client)",
                            PG_LISTEN_MAX_CHANNELS);
        else
            pg_client_fatal(c, PG_END_NO_MEMORY, "53200", "out of memory");
        return -1;
    }
    if (n->state == PG_NS_DOWN && !gw_list_empty(&n->channels))
        open_conn(n);
    if (n->state == PG_NS_DOWN && w.listens) {
        /* No listening connection: the LISTENs of this query did not happen. */
        pg_sql_listen_each(sql, len, on_failed_stmt, &w);
        c->listen_wait = true;
        answer(c, "could not open Sluice's listening connection for LISTEN");
        return pg_conn_closing(&c->conn) ? -1 : 1;
    }
    /* Answered once every command sent so far is done (at once when there is none, as for an
     * UNLISTEN with no listening connection). */
    c->listen->seq = n->next_seq;
    c->listen_wait = true;
    gw_list_push_tail(&n->waiters, &c->listen->node);
    if (n->done_seq >= c->listen->seq)
        answer(c, NULL);
    return pg_conn_closing(&c->conn) ? -1 : 1;
}

void pg_notify_client_gone(pg_client *c)
{
    if (!c->listen)
        return;
    gw_list_remove(&c->listen->node);
    c->listen_wait = false;
    if (c->pool && c->pool->notify)
        do_unlisten(c->pool->notify, c, NULL);
}

void pg_notify_client_free(pg_client *c)
{
    pg_client_listen *l = c->listen;
    if (!l)
        return;
    gw_buf_release(&l->reply, c->conn.gw->bufs);
    gw_buf_release(&l->held, c->conn.gw->bufs);
    free(l);
    c->listen = NULL;
}

void pg_notify_flush(pg_client *c)
{
    gw_buf *held = c->listen ? &c->listen->held : NULL;
    if (!held || held->len == 0 || pg_client_out_mid_message(c))
        return;
    pg_gateway *gw = c->conn.gw;
    if (gw_buf_append(&c->conn.out, gw->bufs, held->data, held->len) != 0) {
        pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
        return;
    }
    gw_buf_release(held, gw->bufs);
    pg_conn_mark(&c->conn);
}

void pg_notify_tick(pg_pool *p, uint64_t now)
{
    pg_notify *n = p->notify;
    if (!n || p->gw->stopping)
        return;
    uint64_t limit = p->gw->ctx->cfg->server_connect_timeout_ms;
    if (n->state == PG_NS_CONNECTING && limit && now - n->since > limit) {
        pg_shell_listen_close(p);
        lost(n, "server_connect_timeout reached");
    }
    /* Listeners are left: notifications sent until the new connection LISTENs are lost. */
    if (n->state == PG_NS_DOWN && !gw_list_empty(&n->channels) &&
        now - n->since >= PG_LISTEN_RETRY_MS)
        open_conn(n);
}

void pg_notify_stop(pg_pool *p)
{
    pg_notify *n = p->notify;
    if (!n || n->state == PG_NS_DOWN)
        return;
    pg_shell_listen_close(p);
    n->state = PG_NS_DOWN;
    n->done_seq = n->next_seq;
}

void pg_notify_free(pg_pool *p)
{
    pg_notify *n = p->notify;
    if (!n)
        return;
    pg_notify_stop(p);
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &n->channels)
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
    gw_htable_free(&n->by_name);
    free(n);
    p->notify = NULL;
}

/* ---- Events from the shell's listening connection ---- */

void pg_notify_opened(pg_pool *p)
{
    pg_notify *n = p->notify;
    gw_assert(n && n->state == PG_NS_CONNECTING);
    n->state = PG_NS_READY;
    n->since = gw_now(p->gw->ctx);
    gw_info(p->gw->ctx, "listening connection of %s/%s open", p->dbname, p->user);
}

void pg_notify_cmd_done(pg_pool *p)
{
    pg_notify *n = p->notify;
    gw_assert(n && n->state == PG_NS_READY && n->done_seq < n->next_seq);
    n->done_seq++;
    wake_waiters(n, NULL);
}

void pg_notify_lost(pg_pool *p, const char *why)
{
    pg_notify *n = p->notify;
    gw_assert(n && n->state != PG_NS_DOWN);
    lost(n, why);
}

void pg_notify_deliver(pg_pool *p, const char *channel, uint32_t be_pid, const char *payload)
{
    pg_notify *n = p->notify;
    pg_channel *ch = n ? find_channel(n, channel) : NULL;
    if (!ch)
        return;
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &ch->subs)
    {
        pg_client *c = gw_container_of(it, pg_sub, chan_node)->c;
        pg_gateway *gw = c->conn.gw;
        if (pg_conn_closing(&c->conn))
            continue;
        /* A subscribed client has its LISTEN state. */
        gw_buf *held = &c->listen->held;
        if (c->conn.out.len + c->conn.pending + held->len > PG_NOTIFY_MAX) {
            pg_client_fatal(c, PG_END_LIMIT, "54000",
                            "notifications are not being read: more than %u bytes wait",
                            PG_NOTIFY_MAX);
            continue;
        }
        /* Half-way through a streamed server message, the client's output is no place for a
         * message of its own: it waits for the boundary. */
        gw_buf *out = pg_client_out_mid_message(c) ? held : &c->conn.out;
        size_t m;
        uint8_t pid[4];
        pg_put_u32(pid, be_pid);
        int rc = pg_msg_begin(out, gw->bufs, 'A', &m);
        rc = rc ? rc : pg_msg_put(out, gw->bufs, pid, 4);
        rc = rc ? rc : pg_msg_put_str(out, gw->bufs, channel);
        rc = rc ? rc : pg_msg_put_str(out, gw->bufs, payload ? payload : "");
        if (pg_msg_finish(out, m, rc) != 0) {
            pg_client_close(c, PG_END_NO_MEMORY, "out of memory");
            continue;
        }
        pg_conn_mark(&c->conn);
    }
}
