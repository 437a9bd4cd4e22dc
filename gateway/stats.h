/*
 * stats: what the drivers report about themselves, read only by the admin console and the metrics
 * endpoint. Both drivers report through this one interface, so the readers know no driver.
 *
 * Counters: every pool keeps a gw_pool_stats of plain uint64_t (no locks, no atomics: only its
 * own loop writes it). A reader that sees the same (database, user, protocol) in several loops'
 * sources sums them (gw_pool_stats_add). Counters only grow while their pool lives; a pool that
 * is freed (reload, autodb_idle_timeout) takes its counters with it.
 *
 * Enumeration: each driver registers a gw_stats_source in its loop's context (gw_stats_register);
 * its callbacks fill views on the stack and hand them to the reader's function one by one. A view
 * and every string it points to are valid only during that call.
 *
 * Units are in every name or comment: _us microseconds, _ms milliseconds; times named *_at are
 * wall-clock microseconds since the Unix epoch (0: never).
 *
 * Building with -Dstats=false defines GW_STATS_OFF: the counting macros then compile to nothing
 * (the views still work, the counters stay 0), to measure what counting costs.
 */
#ifndef SLUICE_GW_STATS_H
#define SLUICE_GW_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_ctx;

/* ---- Histograms ---- */

/* Bucket i (0 <= i < GW_HIST_BUCKETS - 1) counts values v with v <= gw_hist_bound_us(i) =
 * 2^i µs and v > the previous bound: 1 µs, 2 µs, 4 µs ... 2^25 µs (about 33.5 s). The last
 * bucket counts everything above (Prometheus's le="+Inf"). */
#define GW_HIST_BUCKETS 27

typedef struct gw_hist {
    uint64_t bucket[GW_HIST_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;                   /* values added */
    uint64_t sum_us;                  /* their sum */
} gw_hist;

/* Upper bound (inclusive) of bucket i in µs; UINT64_MAX for the last. */
uint64_t gw_hist_bound_us(unsigned i);
/* Adds one value: a count-leading-zeros and three adds, no branch on the value's size. */
void gw_hist__add(gw_hist *h, uint64_t us);
/* into += h. */
void gw_hist_merge(gw_hist *into, const gw_hist *h);
/* out[i] = values <= gw_hist_bound_us(i) (out[GW_HIST_BUCKETS - 1] == h->count), as Prometheus
 * wants its _bucket series. */
void gw_hist_cumulative(const gw_hist *h, uint64_t out[GW_HIST_BUCKETS]);

/* ---- Error and command tallies ---- */

/* A small set of distinct codes with their counts: SQLSTATE classes (the first two characters,
 * e.g. "08", "28", "57") for PostgreSQL, numeric server error codes for MongoDB ("11000"). The
 * first GW_CODES_MAX distinct codes get their own slot; later ones count in `other`, so a server
 * inventing codes cannot grow memory. */
#define GW_CODES_MAX   16
#define GW_CODE_MAXLEN 11 /* "-2147483648" */

typedef struct gw_codes {
    char code[GW_CODES_MAX][GW_CODE_MAXLEN + 1]; /* "" for an unused slot */
    uint64_t count[GW_CODES_MAX];
    uint64_t other;
} gw_codes;

void gw_codes__add(gw_codes *t, const char *code, size_t len);
void gw_codes_merge(gw_codes *into, const gw_codes *t);

/* MongoDB commands counted by name: a fixed set, everything else under GW_MCMD_OTHER. */
typedef enum gw_mongo_cmd {
    GW_MCMD_FIND,
    GW_MCMD_GETMORE,
    GW_MCMD_INSERT,
    GW_MCMD_UPDATE,
    GW_MCMD_DELETE,
    GW_MCMD_AGGREGATE,
    GW_MCMD_FINDANDMODIFY,
    GW_MCMD_COUNT,
    GW_MCMD_DISTINCT,
    GW_MCMD_KILLCURSORS,
    GW_MCMD_COMMITTRANSACTION,
    GW_MCMD_ABORTTRANSACTION,
    GW_MCMD_HELLO, /* hello and isMaster/ismaster */
    GW_MCMD_PING,
    GW_MCMD_ENDSESSIONS,
    GW_MCMD_CREATE,
    GW_MCMD_DROP,
    GW_MCMD_CREATEINDEXES,
    GW_MCMD_LISTCOLLECTIONS,
    GW_MCMD_LISTINDEXES,
    GW_MCMD_AUTH, /* saslStart, saslContinue, authenticate */
    GW_MCMD_OTHER,
    GW_MCMD__COUNT
} gw_mongo_cmd;

/* The command named by the first key of a command document (len bytes, not NUL-terminated). */
gw_mongo_cmd gw_mongo_cmd_of(const char *name, size_t len);
/* Its name as the metrics label and the console show it ("find", ..., "other"). */
const char *gw_mongo_cmd_name(gw_mongo_cmd c);

/* ---- Per-pool counters ---- */

typedef struct gw_pool_stats {
    /* PgBouncer's SHOW STATS totals, same meanings. */
    uint64_t server_assignments; /* a server was linked to a client */
    uint64_t xacts;              /* transactions ended (PG: ReadyForQuery back to idle) */
    uint64_t queries;            /* queries ended (PG: Query or Sync answered; Mongo: commands) */
    uint64_t bytes_recv;         /* bytes received from clients */
    uint64_t bytes_sent;         /* bytes sent to clients */
    uint64_t xact_time_us;       /* time spent in transactions, linked to a server */
    uint64_t query_time_us;      /* time spent running queries */
    uint64_t wait_time_us;       /* time clients waited for a server */
    uint64_t client_parses;      /* Parse messages from clients */
    uint64_t server_parses;      /* Parse messages sent to servers */
    uint64_t binds;              /* Bind messages */
    uint64_t client_logins;      /* clients that logged in to this pool */
    /* Servers. */
    uint64_t server_connects;         /* server connections established */
    uint64_t server_connect_failures; /* attempts that failed */
    /* Errors sent to clients by the server or by Sluice: SQLSTATE class (PG), code (Mongo). */
    gw_codes errors;
    /* MongoDB only (0 for PG pools). */
    uint64_t mongo_cmds[GW_MCMD__COUNT]; /* commands by name */
    uint64_t cursors_pinned;             /* a cursor kept its backend connection for a client */
    uint64_t txns_pinned;                /* a transaction kept its backend connection */
    uint64_t killed_cursors;             /* cursors Sluice killed (client gone, unpinned) */
    uint64_t aborted_txns;               /* transactions Sluice aborted (client gone) */
    /* Distributions of the same durations as the totals above. */
    gw_hist wait_hist;  /* client waits for a server, µs */
    gw_hist xact_hist;  /* transaction durations, µs */
    gw_hist query_hist; /* query durations, µs */
} gw_pool_stats;

/* into += s, for summing several loops' pools of the same name. */
void gw_pool_stats_add(gw_pool_stats *into, const gw_pool_stats *s);

/* The counting on the message path: macros, so GW_STATS_OFF removes them entirely. */
#ifndef GW_STATS_OFF
#define GW_STAT_ADD(field, n) ((void)((field) += (n)))
#define GW_STAT_HIST(h, us)   gw_hist__add((h), (us))
#define GW_STAT_CODE(t, c, l) gw_codes__add((t), (c), (l))
#define GW_STATS_ON           1
#else
#define GW_STAT_ADD(field, n) ((void)0)
#define GW_STAT_HIST(h, us)   ((void)0)
#define GW_STAT_CODE(t, c, l) ((void)0)
#define GW_STATS_ON           0
#endif

/* Monotonic clock in µs for durations (clock_gettime, vDSO: no system call). */
uint64_t gw_stats_now_us(void);
/* Wall clock in µs since the Unix epoch. */
uint64_t gw_stats_wall_us(void);
/* The wall µs of a gw_stats_now_us time, given both clocks read now (0 stays 0). */
uint64_t gw_stats_wall_of(uint64_t mono_us, uint64_t now_mono, uint64_t now_wall);

/* A socket address as the views show it: numeric IPv4 or IPv6 text and its port, "unix" for a
 * Unix socket, "" otherwise. out holds GW_ADDR_LEN bytes. */
#define GW_ADDR_LEN 46
struct sockaddr_storage;
void gw_stats_addr(const struct sockaddr_storage *ss, char *out, int *port);

/* ---- Views the drivers fill ---- */

/* One pool: what SHOW POOLS, SHOW STATS and the pool metrics need. */
typedef struct gw_pool_view {
    const char *database;  /* the name clients use: [databases] name or [mongodb] entry name */
    const char *user;      /* the pool's user ("" where a Mongo pool has none) */
    const char *protocol;  /* "postgresql" or "mongodb" */
    const char *pool_mode; /* "session", "transaction", "statement" */
    /* SHOW POOLS, same meanings as PgBouncer's columns. */
    uint32_t cl_active;  /* clients linked to a server, or idle logged in */
    uint32_t cl_waiting; /* clients waiting for a server */
    uint32_t cl_active_cancel_req, cl_waiting_cancel_req;
    uint32_t sv_active; /* servers linked to a client */
    uint32_t sv_active_cancel, sv_being_canceled;
    uint32_t sv_idle;    /* servers idle, ready for a client */
    uint32_t sv_used;    /* servers idle, to be checked before use */
    uint32_t sv_tested;  /* servers running their reset or check query */
    uint32_t sv_login;   /* servers logging in */
    uint64_t maxwait_us; /* how long the oldest waiting client has waited */
    int pool_size;       /* its configured size */
    bool paused, disabled;
    const gw_pool_stats *stats;
} gw_pool_view;

/* One client or server connection: SHOW CLIENTS / SHOW SERVERS columns. */
typedef struct gw_conn_view {
    uint64_t id;          /* unique among clients (resp. servers) of its protocol; KILL_CLIENT id */
    bool server;          /* a server (backend) connection, else a client */
    const char *user;     /* "(nouser)" before login */
    const char *database; /* "(nodb)" before login */
    const char *protocol; /* "postgresql" or "mongodb" */
    const char *state;    /* PgBouncer's: "active", "waiting", "idle", "used", "tested", "new",
                           * "login" ... */
    const char *addr;     /* remote address text ("unix" for a Unix socket), "" if unknown */
    int port;
    const char *local_addr;
    int local_port;
    uint64_t connect_at; /* wall µs */
    uint64_t request_at; /* wall µs of its last request, 0 if none */
    uint64_t wait_us;    /* waiting for a server since this long (clients), else 0 */
    uint64_t link;       /* id of the linked server (for a client) or client (for a server), 0 */
    int remote_pid;      /* a server's backend pid, else 0 */
    const char *tls;     /* "" or "TLSv1.3/cipher" */
    const char *application_name;
    uint32_t prepared_statements;
} gw_conn_view;

/* One database entry (SHOW DATABASES): a [databases] line or a [mongodb] entry. */
typedef struct gw_db_view {
    const char *name;
    const char *host; /* NULL: none given (Unix socket default) */
    int port;
    const char *dbname; /* the database on the server */
    const char *force_user;
    const char *protocol;
    int pool_size, min_pool_size, reserve_pool_size;
    int server_lifetime_s;
    const char *pool_mode; /* NULL when it inherits */
    int max_connections, current_connections;
    int max_client_connections, current_client_connections;
    bool paused, disabled;
} gw_db_view;

typedef void gw_pool_fn(const gw_pool_view *v, void *arg);
typedef void gw_conn_fn(const gw_conn_view *v, void *arg);
typedef void gw_db_fn(const gw_db_view *v, void *arg);

/* What a driver provides. Every callback calls fn once per object, synchronously, and may be
 * NULL when the driver has no such objects. drv is the pointer given at registration. */
typedef struct gw_stats_source {
    const char *protocol; /* "postgresql" or "mongodb" */
    void (*each_pool)(void *drv, gw_pool_fn *fn, void *arg);
    void (*each_client)(void *drv, gw_conn_fn *fn, void *arg);
    void (*each_server)(void *drv, gw_conn_fn *fn, void *arg);
    void (*each_db)(void *drv, gw_db_fn *fn, void *arg);
} gw_stats_source;

#define GW_STATS_SOURCES_MAX 4

/* The registry of one loop: ctx->stats. */
typedef struct gw_stats {
    const gw_stats_source *src[GW_STATS_SOURCES_MAX];
    void *drv[GW_STATS_SOURCES_MAX];
    unsigned n;
    uint64_t started_at; /* wall µs when the process started serving */
} gw_stats;

/* Registers a driver's source (at its start) and removes it (at its stop). Register returns 0,
 * or -ENOSPC. */
int gw_stats_register(struct gw_ctx *ctx, const gw_stats_source *src, void *drv);
void gw_stats_unregister(struct gw_ctx *ctx, const gw_stats_source *src, void *drv);

/* Every pool / client / server / database of every registered source of ctx. */
void gw_stats_each_pool(struct gw_ctx *ctx, gw_pool_fn *fn, void *arg);
void gw_stats_each_client(struct gw_ctx *ctx, gw_conn_fn *fn, void *arg);
void gw_stats_each_server(struct gw_ctx *ctx, gw_conn_fn *fn, void *arg);
void gw_stats_each_db(struct gw_ctx *ctx, gw_db_fn *fn, void *arg);

/* ---- The process ---- */

typedef struct gw_process_view {
    uint64_t cpu_user_us, cpu_sys_us; /* CPU time used since start */
    uint64_t rss_bytes;               /* resident memory */
    uint64_t vsize_bytes;             /* virtual memory */
    uint32_t open_fds;                /* file descriptors open now */
    uint64_t max_fds;                 /* RLIMIT_NOFILE soft limit */
    uint64_t start_at;                /* wall µs when the process started */
} gw_process_view;

/* Reads /proc/self (a few small reads: call it when a reader asks, not on a timer). 0, or a
 * negative errno-style code with *out zeroed. */
int gw_process_read(gw_process_view *out);

#endif
