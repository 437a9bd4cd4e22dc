/*
 * pg_log: the log lines about PostgreSQL clients, each carrying the client's context (its id,
 * server, database, user and address) as gw_log_who, so json lines have them as fields.
 * log_connections, log_disconnections and log_pooler_errors decide which lines are written.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "drivers/pg/pg_int.h"
#include "drivers/pg/pg_shell.h"

/* "[IPv6]:port" at most, with room to spare. */
#define PG_ADDR_TEXT 64

/* The address as the log shows it ("host:port", "unix"), formatted into buf; NULL when unknown.
 * Asked of the shell once and kept (in binary): the disconnect line may come after the peer is
 * gone, when the socket can no longer tell. */
static const char *client_addr(pg_client *c, char *buf, size_t cap)
{
    pg_peer *p = &c->peer;
    if (p->kind == PG_PEER_UNKNOWN) {
        struct sockaddr_storage ss;
        int rc = pg_shell_client_peer(c, &ss);
        if (rc == 0) {
            p->kind = PG_PEER_UNIX;
        } else if (rc > 0 && ss.ss_family == AF_INET) {
            const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;
            p->kind = PG_PEER_IPV4;
            p->port = ntohs(in4->sin_port);
            memcpy(p->addr, &in4->sin_addr, 4);
        } else if (rc > 0 && ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
            p->kind = PG_PEER_IPV6;
            p->port = ntohs(in6->sin6_port);
            memcpy(p->addr, &in6->sin6_addr, 16);
        }
    }
    buf[0] = 0;
    if (p->kind == PG_PEER_UNIX) {
        snprintf(buf, cap, "unix");
    } else if (p->kind == PG_PEER_IPV4) {
        struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons(p->port)};
        memcpy(&in4.sin_addr, p->addr, 4);
        gw_sockaddr_text((const struct sockaddr *)&in4, buf, cap);
    } else if (p->kind == PG_PEER_IPV6) {
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(p->port)};
        memcpy(&in6.sin6_addr, p->addr, 16);
        gw_sockaddr_text((const struct sockaddr *)&in6, buf, cap);
    }
    return buf[0] ? buf : NULL;
}

/* Fills who; addr (PG_ADDR_TEXT bytes) holds the address text who points at. */
static void client_who(pg_client *c, gw_log_who *who, char *addr)
{
    *who = (gw_log_who){
        .protocol = "pg",
        .client_id = c->pid,
        .server_id = c->server ? c->server->id : 0,
        .database = c->pool ? c->pool->dbname : pg_auth_dbname(c),
        .user = c->pool ? c->pool->user : pg_auth_user(c),
        .address = client_addr(c, addr, PG_ADDR_TEXT),
    };
    /* Before the login exchange: what the startup packet asked for. */
    pg_client_login_state *l = c->login;
    if (!who->database && l && l->db[0])
        who->database = l->db;
    if (!who->user && l && l->user[0])
        who->user = l->user;
}

void pg_client_log(pg_client *c, cfg_log_level level, const char *fmt, ...)
{
    const gw_ctx *ctx = pg_ctx(&c->conn);
    if (level > ctx->cfg->log_level)
        return;
    gw_log_who who;
    char addr[PG_ADDR_TEXT];
    client_who(c, &who, addr);
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
    uint64_t now_us = gw_stats_now_us();
    uint64_t age = now_us > c->connect_us ? (now_us - c->connect_us) / 1000 : 0; /* ms */
    char msg[1024];
    snprintf(msg, sizeof msg, "closing because %s (age %llu.%03llu s)%s%s", pg_end_name(why),
             (unsigned long long)(age / 1000), (unsigned long long)(age % 1000),
             detail && *detail ? ": " : "", detail ? detail : "");
    gw_log_who who;
    char addr[PG_ADDR_TEXT];
    client_who(c, &who, addr);
    who.reason = pg_end_name(why);
    gw_log_msg(ctx, CFG_LOG_INFO, &who, msg);
}

void pg_client_log_error(pg_client *c, const char *sqlstate, const char *msg)
{
    if (pg_ctx(&c->conn)->cfg->log_pooler_errors)
        pg_client_log(c, CFG_LOG_WARNING, "pooler error %s: %s", sqlstate ? sqlstate : "-", msg);
}
