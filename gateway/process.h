/*
 * process: the sluice process around its loop: signals, start-up, reload and shutdown, and
 * what it tells the service manager. main builds the context from the command line and hands
 * it here. Links the drivers (it starts and stops them), so it is part of the executable, not
 * of the gateway library the drivers use.
 *
 * Signals: SIGHUP reloads; SIGTERM shuts down gracefully (GW_SHUTDOWN_WAIT_FOR_SERVERS,
 * bounded by shutdown_timeout); SIGINT, or a second shutdown request of any kind, closes
 * everything at once.
 */
#ifndef SLUICE_GW_PROCESS_H
#define SLUICE_GW_PROCESS_H

#include <stdbool.h>

#include "gateway/gw.h"

typedef struct gw_process {
    gw_ctx ctx; /* first member: the ops find their process from the context */
    uv_signal_t sig_int, sig_term, sig_hup;
    struct gw_metrics *metrics; /* the HTTP endpoint; NULL when metrics_port is 0 */
    uv_timer_t drain;           /* while draining: checks the front ends, enforces the deadline */
    uint64_t drain_deadline;    /* loop clock at which the drain gives up; 0 = none */
    gw_shutdown_mode mode;      /* the drain's mode */
    bool signals_open;          /* the signal handles need closing */
    bool drain_open;            /* the drain timer needs closing */
    bool draining;              /* a graceful shutdown is under way */
    bool stopped;               /* the front ends were told to close everything */
} gw_process;

/* Sets up pr->ctx on loop (taking ownership of conf and client_tls) and the signal handles.
 * 0, or a libuv error. */
int gw_process_init(gw_process *pr, uv_loop_t *loop, cfg *conf, struct gw_tls_conf *client_tls);

/* Starts the front ends and runs the loop until the process has shut down and every handle is
 * closed; frees what the context owns. Returns the exit status. */
int gw_process_run(gw_process *pr);

/* reload.c: re-reads ctx->cfg->path and applies it (gw_process_ops.reload). */
int gw_process_reload(gw_ctx *ctx);

#endif
