/*
 * gw_tls_conf_from_cfg: the clients' TLS contexts from the client_tls_* keys. Run at start,
 * by --check and at each reload, so a key or certificate that cannot be loaded is reported
 * before anything runs on it.
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
    return gw_tls_conf_from_keys(c, &k, out, err, errlen);
}
