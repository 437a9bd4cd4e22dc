/*
 * mongo_tls: TLS towards the MongoDB servers, from a URI's tls* options as libmongoc defines
 * them. libmongoc's own TLS serves only its monitoring connections (the worker's selector);
 * the connections Sluice forwards on are handshaken by the worker with a client-mode gw_tls
 * (gateway/tls.h) and carry on under the loop's gw_transport with the same session.
 *
 * What Sluice cannot honour is refused here, at the config check, rather than sent in the
 * clear or checked less than asked: a password-protected key (libmongoc decrypts it; we do
 * not), and options of libmongoc's that are not TLS settings Sluice knows.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <string.h>

#include "drivers/mongo/mongo_int.h"

/* The tls* options of a URI Sluice honours, and those that only turn checks off which Sluice
 * does not make anyway (certificate revocation: OCSP is not checked on these connections). */
static const char *const honoured[] = {
    MONGOC_URI_TLS,
    MONGOC_URI_TLSCAFILE,
    MONGOC_URI_TLSCERTIFICATEKEYFILE,
    MONGOC_URI_TLSALLOWINVALIDHOSTNAMES,
    MONGOC_URI_TLSALLOWINVALIDCERTIFICATES,
    MONGOC_URI_TLSINSECURE,
    MONGOC_URI_TLSDISABLECERTIFICATEREVOCATIONCHECK,
    MONGOC_URI_TLSDISABLEOCSPENDPOINTCHECK,
    MONGOC_URI_SSL,
    MONGOC_URI_SSLCLIENTCERTIFICATEKEYFILE,
    MONGOC_URI_SSLCERTIFICATEAUTHORITYFILE,
    MONGOC_URI_SSLALLOWINVALIDCERTIFICATES,
    MONGOC_URI_SSLALLOWINVALIDHOSTNAMES,
    NULL,
};

static bool is_tls_option(const char *key)
{
    return strncmp(key, "tls", 3) == 0 || strncmp(key, "ssl", 3) == 0;
}

static bool option_bool(const mongoc_uri_t *uri, const char *key)
{
    return mongoc_uri_get_option_as_bool(uri, key, false);
}

int mongo__uri_tls(const mongoc_uri_t *uri, gw_tls_conf **out, bool *verify_host, char *err,
                   size_t errlen)
{
    *out = NULL;
    *verify_host = false;
    if (!mongoc_uri_get_tls(uri))
        return 0;
    bson_iter_t it;
    const bson_t *opts = mongoc_uri_get_options(uri);
    if (opts && bson_iter_init(&it, opts)) {
        while (bson_iter_next(&it)) {
            const char *key = bson_iter_key(&it);
            bool ok = !is_tls_option(key);
            for (size_t i = 0; !ok && honoured[i]; i++)
                ok = strcasecmp(key, honoured[i]) == 0;
            if (!ok) {
                snprintf(err, errlen, "TLS option %s is not supported by Sluice", key);
                return -1;
            }
        }
    }
    bool insecure = option_bool(uri, MONGOC_URI_TLSINSECURE);
    const char *ca = mongoc_uri_get_option_as_utf8(uri, MONGOC_URI_TLSCAFILE, NULL);
    const char *cert = mongoc_uri_get_option_as_utf8(uri, MONGOC_URI_TLSCERTIFICATEKEYFILE, NULL);
    gw_tls_client_settings s = {
        .ca_file = ca,
        .cert_file = cert,
        .key_file = cert,
        .default_ca = true,
        .verify = !insecure && !option_bool(uri, MONGOC_URI_TLSALLOWINVALIDCERTIFICATES),
    };
    *verify_host = !insecure && !option_bool(uri, MONGOC_URI_TLSALLOWINVALIDHOSTNAMES);
    char why[256];
    if (gw_tls_client_conf_new(&s, out, why, sizeof why) != 0) {
        snprintf(err, errlen, "TLS to the servers: %s", why);
        return -1;
    }
    return 0;
}
