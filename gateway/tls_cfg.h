/*
 * gw_tls_conf_from_cfg: builds the clients' TLS context from a loaded config.
 */
#ifndef SLUICE_GW_TLS_CFG_H
#define SLUICE_GW_TLS_CFG_H

#include <stddef.h>

#include "config/cfg.h"
#include "gateway/tls.h"

/* The client_tls_* values one context is built from: [sluice]'s, or a [mongodb] line's (paths
 * as given in c's file). */
typedef struct gw_tls_keys {
    cfg_tls_mode sslmode;
    const char *key_file, *cert_file, *ca_file, *protocols, *ciphers;
    bool alpn_postgresql; /* see gw_tls_settings */
} gw_tls_keys;

/* 0 with *out NULL (client_tls_sslmode disable) or a new context (caller releases); -1 with a
 * one-line reason in err, beginning "client TLS: " or "server TLS: " (server_tls_protocols or
 * server_tls_ciphers unusable). The PostgreSQL clients' context, from [sluice]. */
int gw_tls_conf_from_cfg(const cfg *c, gw_tls_conf **out, char *err, size_t errlen);
/* The same from k, with c's client_tls_ecdhcurve and client_tls_dheparams. */
int gw_tls_conf_from_keys(const cfg *c, const gw_tls_keys *k, gw_tls_conf **out, char *err,
                          size_t errlen);

#endif
