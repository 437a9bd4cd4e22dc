/* sdnotify: READY, RELOADING, STOPPING and STATUS lines for the service manager. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef SLUICE_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "gateway/sdnotify.h"

void gw_sd_notify(const gw_ctx *ctx, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
#ifdef SLUICE_HAVE_SYSTEMD
    int rc = sd_notify(0, msg);
    if (rc < 0)
        gw_debug(ctx, "sd_notify: %s", strerror(-rc));
#else
    (void)ctx;
#endif
}

void gw_sd_notify_reloading(const gw_ctx *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long usec =
        (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull;
    gw_sd_notify(ctx, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s", usec,
                 ctx->cfg->path);
}
