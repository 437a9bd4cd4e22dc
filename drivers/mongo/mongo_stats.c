/*
 * mongo_stats (shell): what the [mongodb] entries show of themselves through gateway/stats.h
 * (an entry is a pool under its name, protocol mongodb) and what the admin console may do to
 * them (gateway/admin.h): KILL, RECONNECT, KILL_CLIENT. Shell, because addresses come from the
 * sockets.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "drivers/mongo/mongo.h"
#include "drivers/mongo/mongo_int.h"
#include "gateway/admin.h"
#include "gateway/stats.h"

#define PROTOCOL "mongodb"
/* Client ids the console shows are this plus the connectionId, so they never meet the
 * PostgreSQL front end's (32-bit) ones in KILL_CLIENT. */
#define MONGO_ID_BASE ((uint64_t)1 << 32)

#define EACH_FRONT(gw, f)                                                                          \
    for (size_t i_ = 0; i_ < (gw)->n_fronts; i_++)                                                 \
        for (mongo_front *f = &(gw)->fronts[i_]->core; f; f = NULL)

static void each_pool(void *drv, gw_pool_fn *fn, void *arg)
{
    mongo_gateway *gw = drv;
    uint64_t now = gw_stats_now_us();
    EACH_FRONT(gw, f)
    {
        gw_pool_view v = {.database = f->name,
                          .user = "",
                          .protocol = PROTOCOL,
                          .pool_mode = "transaction",
                          .pool_size = f->pool_size,
                          .sv_login = f->n_connecting,
                          .stats = &f->stats};
        for (gw_list *it = f->clients.next; it != &f->clients; it = it->next) {
            const mongo_client *c = gw_container_of(it, mongo_client, node);
            if (c->state == MONGO_CL_WAITING)
                v.cl_waiting++;
            else if (c->state == MONGO_CL_IDLE || c->state == MONGO_CL_ACTIVE)
                v.cl_active++;
        }
        for (gw_list *it = f->backends.next; it != &f->backends; it = it->next) {
            const mongo_backend *b = gw_container_of(it, mongo_backend, node);
            if (b->state == MONGO_BE_IDLE)
                v.sv_idle++;
            else if (b->state == MONGO_BE_BUSY)
                v.sv_active++;
        }
        gw_list *w = gw_list_first(&f->waiters);
        if (w) {
            const mongo_client *c = gw_container_of(w, mongo_client, wait_node);
            v.maxwait_us = c->wait_start_us && now > c->wait_start_us ? now - c->wait_start_us : 0;
        }
        v.paused = gw_admin_paused(gw->ctx, f->name);
        v.disabled = gw_admin_disabled(gw->ctx, f->name);
        fn(&v, arg);
    }
}

/* Fills the view's addresses from the connection's socket (left empty when unknown). */
static void conn_addrs(mongo_shell_conn *io, gw_conn_view *v, char *remote, char *local)
{
    remote[0] = local[0] = 0;
    v->addr = remote;
    v->local_addr = local;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (!io)
        return;
    if (uv_tcp_getpeername(&io->t.h.tcp, (struct sockaddr *)&ss, &len) == 0)
        gw_stats_addr(&ss, remote, &v->port);
    len = sizeof ss;
    if (uv_tcp_getsockname(&io->t.h.tcp, (struct sockaddr *)&ss, &len) == 0)
        gw_stats_addr(&ss, local, &v->local_port);
}

static const char *client_state(mongo_client_state st)
{
    switch (st) {
    case MONGO_CL_ACTIVE:
        return "active";
    case MONGO_CL_WAITING:
        return "waiting";
    case MONGO_CL_IDLE:
        return "idle";
    default:
        return "closing";
    }
}

static void each_client(void *drv, gw_conn_fn *fn, void *arg)
{
    mongo_gateway *gw = drv;
    uint64_t now = gw_stats_now_us(), wall = gw_stats_wall_us();
    EACH_FRONT(gw, f)
    {
        for (gw_list *it = f->clients.next; it != &f->clients; it = it->next) {
            const mongo_client *c = gw_container_of(it, mongo_client, node);
            char remote[GW_ADDR_LEN], local[GW_ADDR_LEN];
            gw_conn_view v = {
                .id = MONGO_ID_BASE + (uint64_t)c->conn_id,
                .user = c->auth_user ? c->auth_user : "",
                .database = f->name,
                .protocol = PROTOCOL,
                .state = client_state(c->state),
                .connect_at = gw_stats_wall_of(c->connect_us, now, wall),
                .request_at = gw_stats_wall_of(c->req_start_us, now, wall),
                .wait_us = c->state == MONGO_CL_WAITING && now > c->wait_start_us
                               ? now - c->wait_start_us
                               : 0,
                .tls = "",
                .application_name = "",
            };
            conn_addrs(c->io, &v, remote, local);
            fn(&v, arg);
        }
    }
}

static void each_server(void *drv, gw_conn_fn *fn, void *arg)
{
    mongo_gateway *gw = drv;
    EACH_FRONT(gw, f)
    {
        uint64_t n = 0;
        for (gw_list *it = f->backends.next; it != &f->backends; it = it->next) {
            const mongo_backend *b = gw_container_of(it, mongo_backend, node);
            char remote[GW_ADDR_LEN], local[GW_ADDR_LEN];
            gw_conn_view v = {
                .id = ++n,
                .server = true,
                .user = "",
                .database = f->name,
                .protocol = PROTOCOL,
                .state = b->state == MONGO_BE_IDLE ? "idle" : "active",
                .link = b->client ? MONGO_ID_BASE + (uint64_t)b->client->conn_id : 0,
                .tls = "",
                .application_name = "",
            };
            conn_addrs(b->io, &v, remote, local);
            fn(&v, arg);
        }
    }
}

static void each_db(void *drv, gw_db_fn *fn, void *arg)
{
    mongo_gateway *gw = drv;
    EACH_FRONT(gw, f)
    {
        int clients = (int)f->n_clients;
        gw_db_view v = {
            .name = f->name,
            .dbname = f->name,
            .protocol = PROTOCOL,
            .pool_size = f->pool_size,
            .min_pool_size = f->min_pool_size,
            .pool_mode = "transaction",
            .max_client_connections = f->max_clients,
            .current_connections = (int)f->n_backends,
            .current_client_connections = clients,
            .paused = gw_admin_paused(gw->ctx, f->name),
            .disabled = gw_admin_disabled(gw->ctx, f->name),
        };
        fn(&v, arg);
    }
}

static const gw_stats_source mongo_stats_source = {
    .protocol = PROTOCOL,
    .each_pool = each_pool,
    .each_client = each_client,
    .each_server = each_server,
    .each_db = each_db,
};

static bool db_match(const char *db, const char *name)
{
    return !db || strcmp(db, name) == 0;
}

static uint32_t busy(void *drv, const char *db)
{
    mongo_gateway *gw = drv;
    uint32_t n = 0;
    EACH_FRONT(gw, f)
    {
        if (!db_match(db, f->name))
            continue;
        for (gw_list *it = f->clients.next; it != &f->clients; it = it->next)
            n += gw_container_of(it, mongo_client, node)->state == MONGO_CL_ACTIVE;
    }
    return n;
}

static void resume(void *drv, const char *db)
{
    mongo_gateway *gw = drv;
    EACH_FRONT(gw, f)
    {
        if (db_match(db, f->name))
            mongo_core_resume(f);
    }
}

static void kill_db(void *drv, const char *db)
{
    mongo_gateway *gw = drv;
    EACH_FRONT(gw, f)
    {
        if (!db_match(db, f->name))
            continue;
        gw_list *it, *tmp;
        gw_list_foreach_safe(it, tmp, &f->clients)
        {
            mongo_client *c = gw_container_of(it, mongo_client, node);
            if (c->state != MONGO_CL_CLOSING)
                mongo__client_close(c, MONGO_END_SHUTDOWN, "killed by the admin");
        }
        gw_list_foreach_safe(it, tmp, &f->backends)
        {
            mongo_backend *b = gw_container_of(it, mongo_backend, node);
            if (b->state != MONGO_BE_CLOSING)
                mongo__backend_close(b, MONGO_END_SHUTDOWN, "killed by the admin");
        }
    }
}

static void reconnect(void *drv, const char *db)
{
    mongo_gateway *gw = drv;
    EACH_FRONT(gw, f)
    {
        if (!db_match(db, f->name))
            continue;
        gw_list *it, *tmp;
        gw_list_foreach_safe(it, tmp, &f->backends)
        {
            mongo_backend *b = gw_container_of(it, mongo_backend, node);
            b->retire = true; /* closes instead of going back to the pool */
            if (b->state == MONGO_BE_IDLE)
                mongo__backend_close(b, MONGO_END_RETIRED, "closed by RECONNECT");
        }
    }
}

static uint32_t closing(void *drv, const char *db)
{
    mongo_gateway *gw = drv;
    uint32_t n = 0;
    EACH_FRONT(gw, f)
    {
        if (!db_match(db, f->name))
            continue;
        for (gw_list *it = f->backends.next; it != &f->backends; it = it->next)
            n += gw_container_of(it, mongo_backend, node)->retire;
    }
    return n;
}

static bool kill_client(void *drv, uint64_t id)
{
    mongo_gateway *gw = drv;
    EACH_FRONT(gw, f)
    {
        for (gw_list *it = f->clients.next; it != &f->clients; it = it->next) {
            mongo_client *c = gw_container_of(it, mongo_client, node);
            if (MONGO_ID_BASE + (uint64_t)c->conn_id == id && c->state != MONGO_CL_CLOSING) {
                mongo__client_close(c, MONGO_END_SHUTDOWN, "killed by the admin");
                return true;
            }
        }
    }
    return false;
}

static bool has_db(void *drv, const char *db)
{
    mongo_gateway *gw = drv;
    EACH_FRONT(gw, f)
    {
        if (strcmp(f->name, db) == 0)
            return true;
    }
    return false;
}

static const gw_admin_driver mongo_admin_driver = {
    .busy = busy,
    .resume = resume,
    .kill = kill_db,
    .reconnect = reconnect,
    .closing = closing,
    .kill_client = kill_client,
    .has_db = has_db,
};

void mongo__stats_register(mongo_gateway *gw)
{
    (void)gw_stats_register(gw->ctx, &mongo_stats_source, gw);
    (void)gw_admin_register(gw->ctx, &mongo_admin_driver, gw);
}

void mongo__stats_unregister(mongo_gateway *gw)
{
    gw_stats_unregister(gw->ctx, &mongo_stats_source, gw);
    gw_admin_unregister(gw->ctx, &mongo_admin_driver, gw);
}
