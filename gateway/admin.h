/*
 * admin: the admin console's commands and views, protocol-neutral. A console front end (the
 * PostgreSQL driver's pg_admin.c) hands it one command text and a gw_admin_out through which
 * the result goes back as columns, rows and a command tag; the views come from the drivers'
 * stats sources (gateway/stats.h) and the controls from their gw_admin_driver.
 *
 * Names, columns, order and units are PgBouncer's (usage.rst, "Admin console"), so tools built
 * for it parse Sluice's output unchanged; columns Sluice adds (protocol) come last.
 *
 * State: which databases are paused or disabled lives in ctx->admin (one per loop); drivers ask
 * gw_admin_paused / gw_admin_disabled before giving a client a server or a login.
 */
#ifndef SLUICE_GW_ADMIN_H
#define SLUICE_GW_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_ctx;

/* Column types, as the console protocol announces them. */
typedef enum gw_admin_type {
    GW_ADMIN_TEXT,
    GW_ADMIN_INT4,
    GW_ADMIN_INT8,
    GW_ADMIN_NUMERIC,
    GW_ADMIN_TIMESTAMP, /* text "YYYY-MM-DD HH:MM:SS UTC" */
} gw_admin_type;

/* Where a command's result goes. Every function returns 0, or -1 when out of memory (the
 * command then stops). */
typedef struct gw_admin_out {
    void *arg;
    int (*columns)(void *arg, unsigned n, const char *const *names, const gw_admin_type *types);
    /* values[i] NULL is SQL NULL. */
    int (*row)(void *arg, unsigned n, const char *const *values);
    /* The command ended: its tag ("SHOW", "PAUSE", ...). */
    int (*done)(void *arg, const char *tag);
    /* The command failed: sqlstate and message (the session goes on). */
    int (*error)(void *arg, const char *sqlstate, const char *msg);
    int (*notice)(void *arg, const char *msg, const char *detail);
} gw_admin_out;

/* What a driver lets the console do. db NULL means every database. Any callback may be NULL. */
typedef struct gw_admin_driver {
    /* Servers of db running a transaction for a client (PAUSE waits for 0). */
    uint32_t (*busy)(void *drv, const char *db);
    /* Paused or enabled again: waiting clients may get servers now. */
    void (*resume)(void *drv, const char *db);
    /* Closes every client and server of db now. */
    void (*kill)(void *drv, const char *db);
    /* Servers of db close once their client is done with them (idle ones at once). */
    void (*reconnect)(void *drv, const char *db);
    /* Servers of db still to close after a reconnect or reload (WAIT_CLOSE waits for 0). */
    uint32_t (*closing)(void *drv, const char *db);
    /* Closes the client with this id (SHOW CLIENTS id): true when it was found. */
    bool (*kill_client)(void *drv, uint64_t id);
    /* Whether db names one of its databases. */
    bool (*has_db)(void *drv, const char *db);
} gw_admin_driver;

typedef struct gw_admin_hold {
    char *db;
    bool paused, disabled;
} gw_admin_hold;

/* A database's figures at the start of the current stats_period, for the averages. */
typedef struct gw_admin_snap gw_admin_snap;

#define GW_ADMIN_DRIVERS_MAX 4

typedef struct gw_admin {
    const gw_admin_driver *drv[GW_ADMIN_DRIVERS_MAX];
    void *arg[GW_ADMIN_DRIVERS_MAX];
    unsigned n;
    bool paused_all;
    gw_admin_hold *holds; /* per database, owned */
    size_t n_holds;
    gw_admin_snap *snaps; /* owned */
    size_t n_snaps;
    uint64_t snap_us; /* gw_stats_now_us of the snapshot, 0 before the first */
} gw_admin;

int gw_admin_register(struct gw_ctx *ctx, const gw_admin_driver *d, void *drv);
void gw_admin_unregister(struct gw_ctx *ctx, const gw_admin_driver *d, void *drv);
void gw_admin_free(struct gw_ctx *ctx);

bool gw_admin_paused(const struct gw_ctx *ctx, const char *db);
bool gw_admin_disabled(const struct gw_ctx *ctx, const char *db);

/* What a command left to do: the console re-polls it (gw_admin_poll) until it is over. */
typedef struct gw_admin_wait {
    enum { GW_ADMIN_WAIT_NONE, GW_ADMIN_WAIT_PAUSE, GW_ADMIN_WAIT_CLOSE } kind;
    char db[256]; /* "" for every database */
    const char *tag;
} gw_admin_wait;

/*
 * Runs one command (sql: len bytes, not NUL-terminated; a trailing ';' allowed). full: an
 * admin_users member (else only SHOW is allowed, 42501 for the rest). The result goes to out;
 * when the command must wait (PAUSE, WAIT_CLOSE), *wait says for what and nothing is written
 * yet. Returns 0, or -1 when out failed.
 */
int gw_admin_run(struct gw_ctx *ctx, const char *sql, size_t len, bool full, gw_admin_out *out,
                 gw_admin_wait *wait);
/* Whether the wait is over: then the command's tag has been written to out (true). */
bool gw_admin_poll(struct gw_ctx *ctx, gw_admin_wait *wait, gw_admin_out *out);

/* Writes the columns of a command's result without running it (extended protocol's Describe):
 * 1 when it returns rows, 0 when it returns none, -1 when out failed. */
int gw_admin_describe(struct gw_ctx *ctx, const char *sql, size_t len, gw_admin_out *out);

/* Periodic work (call from a timer): the stats_period log line and the averages' snapshot. */
void gw_admin_tick(struct gw_ctx *ctx);

#endif
