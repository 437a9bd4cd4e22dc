/*
 * ctx: the per-loop context, logging, the loop's clock and assertions: what code without I/O
 * (the protocol cores) needs of the gateway layer. One gw_ctx per event loop holds every piece
 * of mutable state (no globals), so a second loop thread can be added later without a rewrite.
 * Includes no libuv header: gateway/gw.h adds the loop side.
 */
#ifndef SLUICE_GW_CTX_H
#define SLUICE_GW_CTX_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/cfg.h"
#include "gateway/admin.h"
#include "gateway/buf.h"
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

/* The log's outputs besides stderr (gateway/log_sink.c). The one part of the context that
 * logging changes: gw_log takes a const context, so code that only reads the context can log.
 * All zero is valid: the outputs are opened at the first line, and again after each reload. */
typedef struct gw_log_sink {
    bool ready;              /* the outputs below match the config of generation gen */
    unsigned gen;            /* ctx->cfg_gen they were opened for */
    int file_fd;             /* logfile, -1 when none or it could not be opened */
    int file_err;            /* errno of the last failed open (reported once), 0 after success */
    uint64_t file_checked;   /* monotonic ms when logfile's path was last compared with file_fd */
    int syslog_fd;           /* connected datagram socket, -1 when none */
    unsigned syslog_pid;     /* the pid syslog lines carry */
    uint64_t dropped;        /* lines an output could not take at once (dropped, not waited for) */
    const char *syslog_path; /* NULL: /dev/log; tests point it at their own socket */
    char file_path[4096];    /* logfile resolved against the config file's directory */
} gw_log_sink;

/* Who a log line is about (gw_log_conn): any member may be 0 or NULL when unknown. */
typedef struct gw_log_who {
    const char *protocol; /* "pg" or "mongo" */
    uint64_t client_id;   /* PostgreSQL: the process id Sluice issued; MongoDB: connectionId */
    uint64_t server_id;   /* the server connection's id */
    const char *database; /* PostgreSQL database, or the [mongodb] entry's name */
    const char *user;
    const char *address; /* the client's "host:port", or "unix" */
    const char *reason;  /* why it ended (the drivers' end-reason names), on a closing line */
} gw_log_who;

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
    /* gw_stats_now_us as first read in this loop iteration, 0 until then: the PostgreSQL
     * counting (pg_count.c) reads the clock once per iteration for all the queries it ends,
     * rather than twice per query. The shell clears it after each iteration's events (its
     * prepare and check callbacks), so no value outlives a poll. */
    uint64_t stats_clock_us;
    /* The admin console's state: paused and disabled databases, drivers' controls
     * (gateway/admin.h). Zeroed with the context; gw_admin_free releases it. */
    gw_admin admin;
    gw_log_sink log; /* the log's open outputs */
    /* The loop's buffer blocks and write requests, shared by both drivers (gateway/buf.h): a
     * block one side lets go of serves the other. A zeroed pool keeps nothing; the process
     * sets it up (gw_bufpool_init) and destroys it after the loop, when every driver is gone. */
    gw_bufpool bufs;
} gw_ctx;

/*
 * Logging with a level filter from ctx->cfg, in log_format, to stderr and to logfile and syslog
 * when configured. ctx may be NULL (stderr, text). Each line is one write(2) per output, never
 * retried or waited for: a line an output cannot take at once is dropped and counted
 * (gw_log_dropped). Control characters in what is logged are escaped, so a client's user name
 * cannot forge a line.
 */
#ifdef __GNUC__
__attribute__((format(printf, 3, 4)))
#endif
void gw_log(const gw_ctx *ctx, cfg_log_level level, const char *fmt, ...);
/* The same, about a connection: who's members go into the line (JSON fields in json format). */
#ifdef __GNUC__
__attribute__((format(printf, 4, 5)))
#endif
void gw_log_conn(const gw_ctx *ctx, cfg_log_level level, const gw_log_who *who, const char *fmt,
                 ...);
#ifdef __GNUC__
__attribute__((format(printf, 4, 0)))
#endif
void gw_vlog_conn(const gw_ctx *ctx, cfg_log_level level, const gw_log_who *who, const char *fmt,
                  va_list ap);
/* The message already formatted. */
void gw_log_msg(const gw_ctx *ctx, cfg_log_level level, const gw_log_who *who, const char *msg);
/* Closes logfile and the syslog socket; the next line opens them again. A log rotation hook
 * (a reload does the same), and what releases them at exit. */
void gw_log_reopen(gw_ctx *ctx);
/* "host:port" ("[v6]:port") of an IPv4 or IPv6 address into out; "" for another family. */
struct sockaddr;
void gw_sockaddr_text(const struct sockaddr *sa, char *out, size_t cap);
/* Lines dropped because an output could not take them at once. */
uint64_t gw_log_dropped(const gw_ctx *ctx);

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
