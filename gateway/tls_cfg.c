/*
 * gw_tls_conf_from_cfg: the clients' TLS contexts from the client_tls_* keys, and the check of
 * the server_tls_* values Sluice reads itself. Run at start, by --check and at each reload, so a
 * key, certificate or list that cannot be used is reported before anything runs on it.
 */
#include <stdlib.h>

#include "gateway/tls_cfg.h"

int gw_tls_conf_from_keys(const cfg *c, const gw_tls_keys *k, gw_tls_conf **out, char *err,
                          size_t errlen)
{
    *out = NULL;
    if (k->sslmode == CFG_TLS_DISABLE)
        return 0;
    char *key = cfg_resolve_path(c, k->key_file);
    char *cert = cfg_resolve_path(c, k->cert_file);
    char *ca = cfg_resolve_path(c, k->ca_file);
    int rc = -1;
    if (!key || !cert || !ca) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    gw_tls_settings s = {
        .key_file = key,
        .cert_file = cert,
        .ca_file = ca,
        .protocols = k->protocols,
        .ciphers = k->ciphers,
        .ecdhcurve = c->client_tls_ecdhcurve,
        .dheparams = c->client_tls_dheparams,
        .verify_peer = k->sslmode >= CFG_TLS_VERIFY_CA,
        .verify_optional = true,
        .alpn_postgresql = k->alpn_postgresql,
    };
    rc = gw_tls_conf_new(&s, out, err, errlen);
done:
    free(key);
    free(cert);
    free(ca);
    return rc;
}

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
    gw_tls_keys k = {
        .sslmode = c->client_tls_sslmode,
        .key_file = c->client_tls_key_file,
        .cert_file = c->client_tls_cert_file,
        .ca_file = c->client_tls_ca_file,
        .protocols = c->client_tls_protocols,
        .ciphers = c->client_tls_ciphers,
        .alpn_postgresql = true,
    };
    *out = NULL;
    if (check_server_keys(c, err, errlen) != 0)
        return -1;
    char why[400];
    if (gw_tls_conf_from_keys(c, &k, out, why, sizeof why) != 0) {
        snprintf(err, errlen, "client TLS: %s", why);
        return -1;
    }
    return 0;
}
