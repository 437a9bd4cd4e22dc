/* log_sink: the log's outputs (stderr, logfile, syslog) behind gw_log (gateway/log.c). */
#ifndef SLUICE_GW_LOG_SINK_H
#define SLUICE_GW_LOG_SINK_H

#include <stddef.h>

#include "gateway/ctx.h"

/* Writes one whole line (ending in a newline) to every output of ctx's config: stderr and
 * logfile get all of it, syslog what follows the first body bytes (it stamps time itself).
 * Opens or reopens the outputs first when the config changed or logfile was rotated. */
void gw__log_write(const gw_ctx *ctx, cfg_log_level level, const char *line, size_t len,
                   size_t body);

#endif
