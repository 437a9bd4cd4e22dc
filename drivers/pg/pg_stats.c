/*
 * pg_stats (shell): what the PostgreSQL front end shows of itself through gateway/stats.h
 * (pools, clients, servers, databases) and what the admin console may do to it
 * (gateway/admin.h: pause, kill, reconnect). Shell, because addresses come from the sockets.
 */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_io.h"
#include "gateway/admin.h"
#include "gateway/stats.h"
#include "gateway/tls.h"

#define PROTOCOL "postgresql"

static bool db_match(const char *db, const char *name)
{
    return !db || strcmp(db, name) == 0;
}

#define EACH_POOL(gw, p)                                                                           \
    for (gw_list *it_ = (gw)->pools.next; it_ != &(gw)->pools; it_ = it_->next)                    \
        for (pg_pool *p = gw_container_of(it_, pg_pool, node); p; p = NULL)

/* ---- Views ---- */

static void each_pool(void *drv, gw_pool_fn *fn, void *arg)
{
    pg_gateway *gw = drv;
    uint64_t now = gw_stats_now_us();
    EACH_POOL(gw, p)
    {
        gw_pool_view v = {.database = p->dbname,
                          .user = p->user,
                          .protocol = PROTOCOL,
                          .pool_mode = cfg_pool_mode_name(p->mode),
                          .pool_size = p->size,
                          .stats = &p->stats};
        v.cl_active = p->n_cl[PG_CL_ACTIVE] + p->n_cl[PG_CL_IDLE];
        v.cl_waiting = p->n_cl[PG_CL_WAITING] + p->n_cl[PG_CL_LOGIN_WAIT];
        for (gw_list *si = p->servers.next; si != &p->servers; si = si->next) {
            const pg_server *s = gw_container_of(si, pg_server, pool_node);
            switch (s->state) {
            case PG_SV_ACTIVE:
                v.sv_active++;
                break;
            case PG_SV_IDLE:
                v.sv_idle++;
                break;
            case PG_SV_RESETTING:
                v.sv_tested++;
                break;
            case PG_SV_CONNECTING:
                v.sv_login++;
                break;
            default:
                break;
            }
        }
        gw_list *w = gw_list_first(&p->waiters);
        if (w) {
            const pg_client *c = gw_container_of(w, pg_client, wait_node);
            v.maxwait_us = c->wait_start_us && now > c->wait_start_us ? now - c->wait_start_us : 0;
        }
        v.paused = gw_admin_paused(gw->ctx, p->dbname);
        v.disabled = gw_admin_disabled(gw->ctx, p->dbname);
        fn(&v, arg);
    }
}

/* The addresses of a connection's socket: "unix" for a Unix socket, "" when unknown. */
typedef struct addrs {
    char remote[GW_ADDR_LEN], local[GW_ADDR_LEN];
    int rport, lport;
} addrs;

static void conn_addrs(pg_conn *c, addrs *a)
{
    memset(a, 0, sizeof *a);
    uv_os_fd_t fd;
    if (!c->stream_open || uv_fileno(&pg_conn_stream(c)->handle, &fd) != 0)
        return;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        gw_stats_addr(&ss, a->remote, &a->rport);
    len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        gw_stats_addr(&ss, a->local, &a->lport);
}

static const char *client_state(const pg_client *c)
{
    switch (c->state) {
    case PG_CL_ACTIVE:
        return "active";
    case PG_CL_IDLE:
        return "idle";
    case PG_CL_WAITING:
    case PG_CL_LOGIN_WAIT:
        return "waiting";
    default:
        return "login";
    }
}

static void each_client(void *drv, gw_conn_fn *fn, void *arg)
{
    pg_gateway *gw = drv;
    uint64_t now = gw_stats_now_us(), wall = gw_stats_wall_us();
    for (gw_list *it = gw->clients.next; it != &gw->clients; it = it->next) {
        pg_client *c = gw_container_of(it, pg_client, node);
        pg_io_client *io = gw_container_of(c, pg_io_client, c);
        addrs a;
        conn_addrs(&c->conn, &a);
        char tls[64] = "";
        if (io->t.tls)
            snprintf(tls, sizeof tls, "%s", gw_tls_version(io->t.tls));
        const char *app = pg_params_get(&c->params, "application_name");
        gw_conn_view v = {
            .id = c->pid,
            .user = c->pool ? c->pool->user : pg_admin_user(c),
            .database = c->pool    ? c->pool->dbname
                        : c->admin ? "sluice"
                                   : "(nodb)",
            .protocol = PROTOCOL,
            .state = client_state(c),
            .addr = a.remote,
            .port = a.rport,
            .local_addr = a.local,
            .local_port = a.lport,
            .connect_at = gw_stats_wall_of(c->connect_us, now, wall),
            .request_at = c->server ? gw_stats_wall_of(c->server->request_us, now, wall) : 0,
            .wait_us = c->state == PG_CL_WAITING && c->wait_start_us && now > c->wait_start_us
                           ? now - c->wait_start_us
                           : 0,
            .link = c->server ? c->server->id : 0,
            .tls = tls,
            .application_name = app ? app : "",
            .prepared_statements = (uint32_t)pg_client_stmts_count(&c->stmts),
        };
        fn(&v, arg);
    }
}

static const char *server_state(const pg_server *s)
{
    switch (s->state) {
    case PG_SV_ACTIVE:
        return "active";
    case PG_SV_IDLE:
        return "idle";
    case PG_SV_RESETTING:
        return "tested";
    case PG_SV_CONNECTING:
        return "login";
    default:
        return "new";
    }
}

static void each_server(void *drv, gw_conn_fn *fn, void *arg)
{
    pg_gateway *gw = drv;
    uint64_t now = gw_stats_now_us(), wall = gw_stats_wall_us();
    EACH_POOL(gw, p)
    {
        for (gw_list *si = p->servers.next; si != &p->servers; si = si->next) {
            pg_server *s = gw_container_of(si, pg_server, pool_node);
            pg_io_server *io = pg_io_server_of(s);
            addrs a;
            conn_addrs(&s->conn, &a);
            int pid = s->own_login ? (int)s->backend_pid : io->pq ? PQbackendPID(io->pq) : 0;
            const char *app = pg_params_get(&s->params, "application_name");
            gw_conn_view v = {
                .id = s->id,
                .server = true,
                .user = p->user,
                .database = p->dbname,
                .protocol = PROTOCOL,
                .state = server_state(s),
                .addr = a.remote,
                .port = a.rport,
                .local_addr = a.local,
                .local_port = a.lport,
                .connect_at = gw_stats_wall_of(s->connect_us, now, wall),
                .request_at = gw_stats_wall_of(s->request_us, now, wall),
                .link = s->client ? s->client->pid : 0,
                .remote_pid = pid,
                .tls = "",
                .application_name = app ? app : "",
            };
            fn(&v, arg);
        }
    }
}

static const char *conn_kw(const cfg_database *db, const char *key)
{
    for (size_t i = 0; i < db->n_conn; i++)
        if (strcmp(db->conn[i].key, key) == 0)
            return db->conn[i].value;
    return NULL;
}

static void each_db(void *drv, gw_db_fn *fn, void *arg)
{
    pg_gateway *gw = drv;
    const cfg *cf = gw->ctx->cfg;
    for (size_t i = 0; i < cf->n_dbs; i++) {
        const cfg_database *db = &cf->dbs[i];
        const char *port = conn_kw(db, "port");
        const char *dbname = conn_kw(db, "dbname");
        int clients = 0;
        EACH_POOL(gw, p)
        {
            if (strcmp(p->dbname, db->name) == 0)
                for (int st = PG_CL_LOGIN_WAIT; st <= PG_CL_ACTIVE; st++)
                    clients += (int)p->n_cl[st];
        }
        gw_db_view v = {
            .name = db->name,
            .host = conn_kw(db, "host"),
            .port = port ? atoi(port) : 5432,
            .dbname = dbname ? dbname : db->name,
            .force_user = conn_kw(db, "user"),
            .protocol = PROTOCOL,
            .pool_size = cfg_db_pool_size(cf, db),
            .min_pool_size = cf->min_pool_size,
            /* [sluice]'s: a [databases] line has no reserve_pool or server_lifetime of its own. */
            .reserve_pool_size = cf->reserve_pool_size,
            .server_lifetime_s = cf->server_lifetime_ms / 1000 > INT_MAX
                                     ? INT_MAX
                                     : (int)(cf->server_lifetime_ms / 1000),
            .pool_mode =
                db->pool_mode >= 0 ? cfg_pool_mode_name((cfg_pool_mode)db->pool_mode) : NULL,
            .max_connections = cfg_db_max_connections(cf, db),
            .current_connections = (int)pg_pool_db_servers(gw, db->name),
            .current_client_connections = clients,
            .paused = gw_admin_paused(gw->ctx, db->name),
            .disabled = gw_admin_disabled(gw->ctx, db->name),
        };
        fn(&v, arg);
    }
}

static const gw_stats_source pg_stats_source = {
    .protocol = PROTOCOL,
    .each_pool = each_pool,
    .each_client = each_client,
    .each_server = each_server,
    .each_db = each_db,
};

/* ---- Controls ---- */

static uint32_t busy(void *drv, const char *db)
{
    pg_gateway *gw = drv;
    uint32_t n = 0;
    EACH_POOL(gw, p)
    {
        if (db_match(db, p->dbname))
            n += p->n_cl[PG_CL_ACTIVE];
    }
    return n;
}

static void resume(void *drv, const char *db)
{
    pg_gateway *gw = drv;
    EACH_POOL(gw, p)
    {
        if (db_match(db, p->dbname))
            pg_pool_resume(p);
    }
}

/* Closes the servers of db (all of them, or only the idle ones), the others marked. */
static void close_servers(pg_gateway *gw, const char *db, bool all)
{
    EACH_POOL(gw, p)
    {
        if (!db_match(db, p->dbname))
            continue;
        gw_list *si, *tmp;
        gw_list_foreach_safe(si, tmp, &p->servers)
        {
            pg_server *s = gw_container_of(si, pg_server, pool_node);
            s->close_needed = true;
            if (all || s->state == PG_SV_IDLE)
                pg_server_close(s, PG_END_ADMIN, all ? "closed by KILL" : "closed by RECONNECT");
        }
    }
}

static void kill_db(void *drv, const char *db)
{
    pg_gateway *gw = drv;
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &gw->clients)
    {
        pg_client *c = gw_container_of(it, pg_client, node);
        if (c->pool && db_match(db, c->pool->dbname))
            pg_client_fatal(c, PG_END_ADMIN, "57P01", "database \"%s\" was killed by the admin",
                            c->pool->dbname);
    }
    close_servers(gw, db, true);
}

static void reconnect(void *drv, const char *db)
{
    close_servers(drv, db, false);
}

static uint32_t closing(void *drv, const char *db)
{
    pg_gateway *gw = drv;
    uint32_t n = 0;
    EACH_POOL(gw, p)
    {
        if (!db_match(db, p->dbname))
            continue;
        for (gw_list *si = p->servers.next; si != &p->servers; si = si->next)
            n += gw_container_of(si, pg_server, pool_node)->close_needed;
    }
    return n;
}

static bool kill_client(void *drv, uint64_t id)
{
    pg_gateway *gw = drv;
    for (gw_list *it = gw->clients.next; it != &gw->clients; it = it->next) {
        pg_client *c = gw_container_of(it, pg_client, node);
        if (c->pid != 0 && c->pid == id) {
            pg_client_fatal(c, PG_END_ADMIN, "57P01", "terminated by the admin (KILL_CLIENT)");
            return true;
        }
    }
    return false;
}

static bool has_db(void *drv, const char *db)
{
    pg_gateway *gw = drv;
    /* Not through the "*" entry: that one would make every name a database. */
    const cfg_database *d = cfg_find_database(gw->ctx->cfg, db);
    if (d && strcmp(d->name, db) == 0)
        return true;
    EACH_POOL(gw, p)
    {
        if (strcmp(p->dbname, db) == 0)
            return true;
    }
    return false;
}

static const gw_admin_driver pg_admin_driver = {
    .busy = busy,
    .resume = resume,
    .kill = kill_db,
    .reconnect = reconnect,
    .closing = closing,
    .kill_client = kill_client,
    .has_db = has_db,
};

void pg_stats_register(pg_gateway *gw)
{
    /* Two slots of four: neither can be full at start-up. */
    (void)gw_stats_register(gw->ctx, &pg_stats_source, gw);
    (void)gw_admin_register(gw->ctx, &pg_admin_driver, gw);
}

void pg_stats_unregister(pg_gateway *gw)
{
    gw_stats_unregister(gw->ctx, &pg_stats_source, gw);
    gw_admin_unregister(gw->ctx, &pg_admin_driver, gw);
}
