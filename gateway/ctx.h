/*
 * ctx: the per-loop context, logging, the loop's clock and assertions: what code without I/O
 * (the protocol cores) needs of the gateway layer. One gw_ctx per event loop holds every piece
 * of mutable state (no globals), so a second loop thread can be added later without a rewrite.
 * Includes no libuv header: gateway/gw.h adds the loop side.
 */
#ifndef SLUICE_GW_CTX_H
#define SLUICE_GW_CTX_H

#include <stdbool.h>
#include <stdint.h>

#include "config/cfg.h"
#include "gateway/admin.h"
#include "gateway/stats.h"

struct uv_loop_s;
struct gw_ctx;
struct pg_gateway;
struct mongo_gateway;

/* How a requested shutdown treats sessions (the admin console's SHUTDOWN variants, signals). */
typedef enum gw_shutdown_mode {
    GW_SHUTDOWN_IMMEDIATE,        /* close everything now (SHUTDOWN, SIGINT) */
    GW_SHUTDOWN_WAIT_FOR_SERVERS, /* stop accepting; end when every transaction has ended */
    GW_SHUTDOWN_WAIT_FOR_CLIENTS, /* stop accepting; end when every client has left */
} gw_shutdown_mode;

/* What the process does when asked from inside the loop (the admin console's RELOAD and
 * SHUTDOWN). Set by main; NULL where no process runs (unit tests). */
typedef struct gw_process_ops {
    /* Re-reads the config file and applies it: 0, or -1 when it was refused (logged, the
     * running configuration kept). */
    int (*reload)(struct gw_ctx *ctx);
    void (*shutdown)(struct gw_ctx *ctx, gw_shutdown_mode mode);
} gw_process_ops;

typedef struct gw_ctx {
    struct uv_loop_s *loop; /* a uv_loop_t; only the shells and main look inside */
    cfg *cfg;               /* the running config; owned; replaced whole on reload */
    unsigned cfg_gen;       /* incremented at each reload, so derived settings know to refresh */
    struct pg_gateway *pg;  /* PostgreSQL front end, NULL when not started */
    struct mongo_gateway *mongo;   /* MongoDB front end, NULL when there is no [mongodb] entry */
    bool stopping;                 /* shutdown requested: listeners closed, sessions draining */
    const gw_process_ops *process; /* NULL outside the sluice process */
    /* The TLS context for clients built from the client_tls_* keys (gateway/tls.h), NULL when
     * client_tls_sslmode is disable. Replaced at reload; sessions hold their own reference. */
    struct gw_tls_conf *client_tls;
    /* Per-process random secret from which an unknown user's fake SCRAM verifier is derived, so
     * a login attempt answers the same way whether the user exists or not. */
    uint8_t auth_seed[32];
    /* What the drivers report (gateway/stats.h): their registered sources. Zeroed with the
     * context; nothing to free. */
    gw_stats stats;
    /* The admin console's state: paused and disabled databases, drivers' controls
     * (gateway/admin.h). Zeroed with the context; gw_admin_free releases it. */
    gw_admin admin;
} gw_ctx;

/* Logging to stderr with a level filter from ctx->cfg. Never blocks for long (stderr is a pipe
 * or terminal in practice). */
#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
void gw_log(const gw_ctx *ctx, cfg_log_level level, const char *fmt, ...);

#define gw_error(ctx, ...) gw_log((ctx), CFG_LOG_ERROR, __VA_ARGS__)
#define gw_warn(ctx, ...)  gw_log((ctx), CFG_LOG_WARNING, __VA_ARGS__)
#define gw_info(ctx, ...)  gw_log((ctx), CFG_LOG_INFO, __VA_ARGS__)
#define gw_debug(ctx, ...)                                                                         \
    do {                                                                                           \
        if ((ctx)->cfg->log_level >= CFG_LOG_DEBUG)                                                \
            gw_log((ctx), CFG_LOG_DEBUG, __VA_ARGS__);                                             \
    } while (0)

/* Milliseconds of the loop's cached clock (uv_now). */
uint64_t gw_now(const gw_ctx *ctx);

/* Always-on assertion for states that must be impossible: logs and aborts. */
#define gw_assert(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            gw__assert_fail(#cond, __FILE__, __LINE__);                                            \
    } while (0)
_Noreturn void gw__assert_fail(const char *what, const char *file, int line);

#endif
