/*
 * pg_log: the log lines about PostgreSQL clients, each carrying the client's context (its id,
 * server, database, user and address) as gw_log_who, so json lines have them as fields.
 * log_connections, log_disconnections and log_pooler_errors decide which lines are written.
 */
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"

/* The address, asked of the shell once and kept: the disconnect line may come after the peer
 * is gone, when the socket can no longer tell. */
static const char *client_addr(pg_client *c)
{
    if (c->addr[0])
        return c->addr;
    struct sockaddr_storage ss;
    int rc = pg_shell_client_peer(c, &ss);
    if (rc == 0)
        snprintf(c->addr, sizeof c->addr, "unix");
    else if (rc > 0)
        gw_sockaddr_text((const struct sockaddr *)&ss, c->addr, sizeof c->addr);
    return c->addr[0] ? c->addr : NULL;
}

static void client_who(pg_client *c, gw_log_who *who)
{
    *who = (gw_log_who){
        .protocol = "pg",
        .client_id = c->pid,
        .server_id = c->server ? c->server->id : 0,
        .database = c->pool ? c->pool->dbname : pg_auth_dbname(c),
        .user = c->pool ? c->pool->user : pg_auth_user(c),
        .address = client_addr(c),
    };
    /* Before the login exchange: what the startup packet asked for. */
    if (!who->database && c->login_db[0])
        who->database = c->login_db;
    if (!who->user && c->login_user[0])
        who->user = c->login_user;
}

void pg_client_log(pg_client *c, cfg_log_level level, const char *fmt, ...)
{
    const gw_ctx *ctx = pg_ctx(&c->conn);
    if (level > ctx->cfg->log_level)
        return;
    gw_log_who who;
    client_who(c, &who);
    va_list ap;
    va_start(ap, fmt);
    gw_vlog_conn(ctx, level, &who, fmt, ap);
    va_end(ap);
}

void pg_client_log_login(pg_client *c)
{
    if (pg_ctx(&c->conn)->cfg->log_connections)
        pg_client_log(c, CFG_LOG_INFO, "login%s", pg_shell_client_tls(c) ? " (TLS)" : "");
}

void pg_client_log_end(pg_client *c, pg_end why, const char *detail)
{
    const gw_ctx *ctx = pg_ctx(&c->conn);
    if (!ctx->cfg->log_disconnections)
        return;
    if (CFG_LOG_INFO > ctx->cfg->log_level)
        return;
    uint64_t age = gw_now(ctx) - c->accepted;
    char msg[1024];
    snprintf(msg, sizeof msg, "closing because %s (age %llu.%03llu s)%s%s", pg_end_name(why),
             (unsigned long long)(age / 1000), (unsigned long long)(age % 1000),
             detail && *detail ? ": " : "", detail ? detail : "");
    gw_log_who who;
    client_who(c, &who);
    who.reason = pg_end_name(why);
    gw_log_msg(ctx, CFG_LOG_INFO, &who, msg);
}

void pg_client_log_error(pg_client *c, const char *sqlstate, const char *msg)
{
    if (pg_ctx(&c->conn)->cfg->log_pooler_errors)
        pg_client_log(c, CFG_LOG_WARNING, "pooler error %s: %s", sqlstate ? sqlstate : "-", msg);
}
