/*
 * gw_tls_conf_from_cfg: builds the clients' TLS context from a loaded config.
 */
#ifndef SLUICE_GW_TLS_CFG_H
#define SLUICE_GW_TLS_CFG_H

#include <stddef.h>

#include "config/cfg.h"
#include "gateway/tls.h"

/* 0 with *out NULL (client_tls_sslmode disable) or a new context (caller releases); -1 with a
 * one-line reason in err, beginning "client TLS: " or "server TLS: " (server_tls_protocols or
 * server_tls_ciphers unusable). */
int gw_tls_conf_from_cfg(const cfg *c, gw_tls_conf **out, char *err, size_t errlen);

#endif
