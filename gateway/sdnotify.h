/*
 * sdnotify: the service manager's notification protocol (systemd's sd_notify), through
 * libsystemd when Sluice was built with it. Without NOTIFY_SOCKET in the environment (not
 * started by systemd with Type=notify) every call does nothing.
 */
#ifndef SLUICE_GW_SDNOTIFY_H
#define SLUICE_GW_SDNOTIFY_H

#include "gateway/ctx.h"

/* Sends one state line, e.g. "READY=1\nSTATUS=accepting connections". A failure is logged at
 * debug level and otherwise ignored: the service manager's view is advisory. */
#ifdef __GNUC__
__attribute__((format(printf, 2, 3)))
#endif
void gw_sd_notify(const gw_ctx *ctx, const char *fmt, ...);

/* RELOADING=1 with the MONOTONIC_USEC that Type=notify-reload wants, and a STATUS line. */
void gw_sd_notify_reloading(const gw_ctx *ctx);

#endif
