/*
 * The fake shell (see fuzz_pg_core_shell.h): implements drivers/pg/pg_shell.h with no I/O, so
 * the core can be driven byte by byte from a unit test or a fuzzer.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_shell.h"
#include "drivers/pg/pg_wire.h"
#include "tests/fuzz/fuzz_pg_core_shell.h"

#define FK_MAX_DEAD    64
#define FK_MAX_CANCELS 16

/* What the fake keeps besides the world the test sees: one world at a time. */
static struct {
    fk_world *w;
    pg_conn *dead[FK_MAX_DEAD]; /* closed by the core, freed at the end of the step */
    size_t n_dead;
    uint32_t cancels[FK_MAX_CANCELS]; /* server ids whose cancel completes next step */
    size_t n_cancels;
    gw_buf closed_out;    /* what clients closed in this step were sent last */
    pg_pool *listen_pool; /* the pool whose listening connection is open, or NULL */
    bool listen_opening;  /* it has not logged in yet */
    size_t listen_cmds;   /* commands sent to it and not yet confirmed */
} fk;

static const char default_config[] = "[sluice]\n"
                                     "listen_port = 6432\n"
                                     "pool_mode = transaction\n"
                                     "log_level = error\n"
                                     "[databases]\n"
                                     "db = host=127.0.0.1 port=1 dbname=db\n";

/* ---- pg_shell.h ---- */

void pg_conn_start_reading(pg_conn *c)
{
    c->reading = !pg_conn_closing(c);
}

void pg_conn_stop_reading(pg_conn *c)
{
    c->reading = false;
}

/* No TLS in the fake shell: SSLRequest gets 'N'. */
int pg_shell_client_tls_start(pg_client *c)
{
    (void)c;
    return 1;
}

bool pg_shell_client_tls(const pg_client *c)
{
    (void)c;
    return false;
}

size_t pg_shell_client_tls_end_point(const pg_client *c, const uint8_t **data)
{
    (void)c;
    *data = NULL;
    return 0;
}

int pg_shell_client_cert_cn(const pg_client *c, char *out, size_t cap)
{
    (void)c, (void)out, (void)cap;
    return 0;
}

pg_server *pg_shell_connect(pg_pool *pool)
{
    pg_server *s = calloc(1, sizeof *s);
    if (!s) {
        pg_server_start_failed(pool, "out of memory");
        return NULL;
    }
    s->conn.gw = pool->gw;
    pool->gw->live++;
    fk.w->connects++;
    pg_server_init(s, pool);
    return s;
}

static void bury(pg_conn *c)
{
    gw_assert(fk.n_dead < FK_MAX_DEAD);
    fk.dead[fk.n_dead++] = c;
    fk.w->closes++;
}

void pg_shell_client_close(pg_client *c, bool flush)
{
    if (flush && c->conn.out.len)
        gw_buf_append(&fk.closed_out, c->conn.gw->bufs, c->conn.out.data, c->conn.out.len);
    fk.w->last_client_end = c->conn.end;
    bury(&c->conn);
}

void pg_shell_server_close(pg_server *s)
{
    fk.w->last_server_end = s->conn.end;
    bury(&s->conn);
}

bool pg_shell_server_tls_capable(pg_server *s)
{
    (void)s;
    return fk.w->server_tls;
}

int pg_shell_server_start_tls(pg_server *s)
{
    (void)s;
    fk.w->tls_starts++;
    return 0;
}

void pg_shell_cancel(pg_server *s)
{
    if (s->state != PG_SV_ACTIVE || fk.n_cancels == FK_MAX_CANCELS)
        return;
    fk.w->cancels++;
    s->cancels++;
    s->conn.gw->pending_cancels++;
    fk.cancels[fk.n_cancels++] = s->id;
}

/* The listening connection logs in and confirms every command at the end of the step they
 * were sent in (one pool at a time: the first to open it). */
int pg_shell_listen_open(pg_pool *p)
{
    gw_assert(!p->listen_conn && !fk.listen_pool);
    p->listen_conn = (pg_listen_conn *)&fk; /* only ever compared with NULL by the core */
    fk.listen_pool = p;
    fk.listen_opening = true;
    fk.w->listen_opens++;
    return 0;
}

int pg_shell_listen_send(pg_pool *p, bool listen, const char *channel)
{
    gw_assert(p == fk.listen_pool);
    (void)channel;
    fk.listen_cmds++;
    if (listen)
        fk.w->listens++;
    else
        fk.w->unlistens++;
    return 0;
}

void pg_shell_listen_close(pg_pool *p)
{
    gw_assert(p == fk.listen_pool);
    p->listen_conn = NULL;
    fk.listen_pool = NULL;
    fk.listen_opening = false;
    fk.listen_cmds = 0;
}

/* Confirms what the listening connection was asked for. */
static void listen_confirm(void)
{
    pg_pool *p = fk.listen_pool;
    if (!p)
        return;
    if (fk.listen_opening) {
        fk.listen_opening = false;
        pg_notify_opened(p);
    }
    while (fk.listen_cmds && fk.listen_pool == p) {
        fk.listen_cmds--;
        pg_notify_cmd_done(p);
    }
}

/* ---- the world ---- */

int fk_init(fk_world *w, const char *config)
{
    memset(w, 0, sizeof *w);
    memset(&fk, 0, sizeof fk);
    fk.w = w;
    if (uv_loop_init(&w->loop) != 0)
        return -1;
    w->ctx.loop = &w->loop;
    w->ctx.cfg_gen = 1; /* 0 means "never derived" to the pools */
    gw_bufpool_init(&w->ctx.bufs, 1024);
    if (cfg_load_string(config ? config : default_config, "fake.ini", &w->ctx.cfg, NULL) != 0) {
        uv_loop_close(&w->loop);
        return -1;
    }
    pg_gateway *gw = calloc(1, sizeof *gw);
    if (!gw)
        abort();
    w->ctx.pg = gw;
    pg_core_init(gw, &w->ctx);
    gw->rng = 1;
    w->gw = gw;
    return 0;
}

static void free_dead(void)
{
    pg_gateway *gw = fk.w->gw;
    for (size_t i = 0; i < fk.n_dead; i++) {
        pg_conn *c = fk.dead[i];
        if (c->kind == PG_CONN_CLIENT)
            pg_client_closed((pg_client *)c);
        else
            pg_server_closed((pg_server *)c);
        free(c);
        gw->live--;
    }
    fk.n_dead = 0;
}

void fk_step(fk_world *w)
{
    pg_gateway *gw = w->gw;
    for (int round = 0; round < 2; round++) {
        gw_list *it;
        while ((it = gw_list_first(&gw->ready)) != NULL) {
            gw_list_remove(it);
            pg_conn *c = gw_container_of(it, pg_conn, ready);
            if (pg_conn_closing(c) || !c->need_process)
                continue;
            c->need_process = false;
            pg_conn_input(c);
        }
        listen_confirm();
        /* Cancels the shell sent land now (in the real shell, a thread-pool round later). */
        size_t n = fk.n_cancels;
        fk.n_cancels = 0;
        for (size_t i = 0; i < n; i++) {
            gw->pending_cancels--;
            pg_server_cancel_done(gw, fk.cancels[i]);
        }
    }
    free_dead();
}

void fk_fini(fk_world *w)
{
    pg_gateway *gw = w->gw;
    gw->stopping = true;
    pg_core_shutdown(gw);
    fk_step(w);
    gw_assert(gw->live == 0);
    gw_buf_release(&fk.closed_out, gw->bufs);
    pg_core_free(gw);
    free(gw);
    gw_bufpool_destroy(&w->ctx.bufs);
    cfg_free(w->ctx.cfg);
    uv_loop_close(&w->loop);
    fk.w = NULL;
}

size_t fk_startup(uint8_t *buf)
{
    static const char kv[] = "user\0u\0database\0db\0";
    pg_put_u32(buf + 4, PG_PROTO_30);
    memcpy(buf + 8, kv, sizeof kv);
    size_t n = 8 + sizeof kv;
    pg_put_u32(buf, (uint32_t)n);
    return n;
}

pg_client *fk_client(fk_world *w)
{
    /* At least a pg_server's size: GCC cannot tell which kind pg_conn_closing reads once it
     * is inlined here, and warns of a pg_client smaller than a pg_server (the real shell
     * allocates a client together with its handles, which is larger). */
    pg_client *c = calloc(1, sizeof *c < sizeof(pg_server) ? sizeof(pg_server) : sizeof *c);
    if (!c)
        abort();
    w->gw->live++;
    if (pg_client_start(c, w->gw) != 0)
        abort();
    pg_conn_start_reading(&c->conn);
    return c;
}

static void input(fk_world *w, pg_conn *c, const void *data, size_t len)
{
    if (len && gw_buf_append(&c->in, w->gw->bufs, data, len) != 0)
        abort();
    pg_conn_input(c);
    fk_step(w);
}

void fk_client_input(fk_world *w, pg_client *c, const void *data, size_t len)
{
    input(w, &c->conn, data, len);
}

void fk_server_input(fk_world *w, pg_server *s, const void *data, size_t len)
{
    input(w, &s->conn, data, len);
}

void fk_notify(fk_world *w, const char *channel, const char *payload)
{
    if (fk.listen_pool)
        pg_notify_deliver(fk.listen_pool, channel, 4243, payload);
    fk_step(w);
}

void fk_server_eof(fk_world *w, pg_server *s)
{
    pg_conn_input_ended(&s->conn, true, NULL);
    fk_step(w);
}

static const char *const server_params[] = {
    "application_name",
    "",
    "client_encoding",
    "UTF8",
    "DateStyle",
    "ISO, MDY",
    "integer_datetimes",
    "on",
    "server_encoding",
    "UTF8",
    "server_version",
    "16.0",
    "standard_conforming_strings",
    "on",
    "TimeZone",
    "UTC",
    NULL,
};

void fk_connect_all(fk_world *w, bool fail)
{
    pg_gateway *gw = w->gw;
again:
    for (gw_list *pi = gw->pools.next; pi != &gw->pools; pi = pi->next) {
        pg_pool *p = gw_container_of(pi, pg_pool, node);
        for (gw_list *it = p->servers.next; it != &p->servers; it = it->next) {
            pg_server *s = gw_container_of(it, pg_server, pool_node);
            if (s->state != PG_SV_CONNECTING)
                continue;
            if (fail) {
                pg_server_connect_failed(s, "connection to server at \"127.0.0.1\", port 1 "
                                            "failed: FATAL:  28P01: password authentication "
                                            "failed for user \"u\"\n");
            } else {
                for (int i = 0; server_params[i]; i += 2)
                    if (pg_params_set(&s->params, server_params[i], server_params[i + 1]) != 0)
                        abort();
                pg_server_connected(s, 4242);
            }
            goto again; /* the lists may have changed under the walk */
        }
    }
    fk_step(w);
}

pg_server *fk_first_server(fk_world *w)
{
    pg_gateway *gw = w->gw;
    for (gw_list *pi = gw->pools.next; pi != &gw->pools; pi = pi->next) {
        pg_pool *p = gw_container_of(pi, pg_pool, node);
        if (!gw_list_empty(&p->servers))
            return gw_container_of(p->servers.next, pg_server, pool_node);
    }
    return NULL;
}

bool fk_client_alive(fk_world *w, const pg_client *c)
{
    for (gw_list *it = w->gw->clients.next; it != &w->gw->clients; it = it->next)
        if (gw_container_of(it, pg_client, node) == c)
            return true;
    return false;
}

static size_t take(fk_world *w, gw_buf *b, uint8_t *out, size_t cap)
{
    size_t n = b->len;
    if (out && n)
        memcpy(out, b->data, n < cap ? n : cap);
    gw_buf_release(b, w->gw->bufs);
    return n;
}

size_t fk_client_output(fk_world *w, pg_client *c, uint8_t *out, size_t cap)
{
    if (!c)
        return take(w, &fk.closed_out, out, cap);
    size_t n = take(w, &c->conn.out, out, cap);
    if (c->conn.in_blocked)
        pg_conn_mark_process(&c->conn); /* what stopped it for its output bound is gone */
    return n;
}

size_t fk_server_output(fk_world *w, pg_server *s, uint8_t *out, size_t cap)
{
    return take(w, &s->conn.out, out, cap);
}

/* ---- authentication ---- */

int pg_shell_client_peer(const pg_client *c, struct sockaddr_storage *out)
{
    (void)c;
    if (fk.w->peer_unix)
        return 0;
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    memset(out, 0, sizeof *out);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(fk.w->peer_ipv4 ? fk.w->peer_ipv4 : 0x7f000001u);
    return 1;
}

int pg_shell_auth_lookup(pg_client *c)
{
    fk.w->lookups++;
    if (fk.w->lookup_unavailable)
        return -1;
    fk.w->lookup_client = c;
    return 0;
}

void pg_shell_auth_lookup_cancel(pg_client *c)
{
    gw_assert(fk.w->lookup_client == c);
    fk.w->lookup_client = NULL;
    fk.w->lookup_cancels++;
}

void fk_feed_server(fk_world *w, pg_client *c, const uint8_t *data, size_t size, size_t chunk,
                    bool connected_only)
{
    for (size_t pos = 0; pos < size;) {
        pg_server *s = fk_first_server(w);
        if (!s || (connected_only && s->state == PG_SV_CONNECTING))
            break;
        fk_server_output(w, s, NULL, 0);
        size_t k = size - pos < chunk ? size - pos : chunk;
        fk_server_input(w, s, data + pos, k);
        pos += k;
        if (fk_client_alive(w, c))
            fk_client_output(w, c, NULL, 0);
    }
}
