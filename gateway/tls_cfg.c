/*
 * gw_tls_conf_from_cfg: the clients' TLS context from the client_tls_* keys, and the check of the
 * server_tls_* values Sluice reads itself. Run at start, by --check and at each reload, so a
 * key, certificate or list that cannot be used is reported before anything runs on it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "gateway/tls_cfg.h"

/* The server_tls_* values Sluice interprets itself (the rest are libpq's to judge, at connect). */
static int check_server_keys(const cfg *c, char *err, size_t errlen)
{
    int min, max;
    if (gw_tls_parse_protocols(c->server_tls_protocols, &min, &max) != 0) {
        snprintf(err, errlen, "server TLS: server_tls_protocols: unknown value '%s'",
                 c->server_tls_protocols);
        return -1;
    }
    if (gw_tls_cipher_list_ok(c->server_tls_ciphers) != 1) {
        snprintf(err, errlen, "server TLS: server_tls_ciphers: no usable cipher in '%s'",
                 c->server_tls_ciphers);
        return -1;
    }
    return 0;
}

int gw_tls_conf_from_cfg(const cfg *c, gw_tls_conf **out, char *err, size_t errlen)
{
    *out = NULL;
    if (check_server_keys(c, err, errlen) != 0)
        return -1;
    if (c->client_tls_sslmode == CFG_TLS_DISABLE)
        return 0;
    char *key = cfg_resolve_path(c, c->client_tls_key_file);
    char *cert = cfg_resolve_path(c, c->client_tls_cert_file);
    char *ca = cfg_resolve_path(c, c->client_tls_ca_file);
    int rc = -1;
    if (!key || !cert || !ca) {
        snprintf(err, errlen, "client TLS: out of memory");
        goto done;
    }
    gw_tls_settings s = {
        .key_file = key,
        .cert_file = cert,
        .ca_file = ca,
        .protocols = c->client_tls_protocols,
        .ciphers = c->client_tls_ciphers,
        .ecdhcurve = c->client_tls_ecdhcurve,
        .dheparams = c->client_tls_dheparams,
        .verify_peer = c->client_tls_sslmode >= CFG_TLS_VERIFY_CA,
        .verify_optional = true,
    };
    char why[400];
    rc = gw_tls_conf_new(&s, out, why, sizeof why);
    if (rc != 0)
        snprintf(err, errlen, "client TLS: %s", why);
done:
    free(key);
    free(cert);
    free(ca);
    return rc;
}
