/*
 * pg_tlskw: the libpq keywords the server_tls_* keys become (sslmode, sslrootcert, sslkey,
 * sslcert, ssl_min_protocol_version, ssl_max_protocol_version). A [databases] line that sets one
 * of these keywords itself keeps its own value: per-database TLS settings mean exactly what
 * libpq says they mean.
 */
#ifndef SLUICE_PG_TLSKW_H
#define SLUICE_PG_TLSKW_H

#include <stddef.h>

#include "config/cfg.h"

#define PG_TLSKW_MAX 6

typedef struct pg_tlskw {
    const char *kw[PG_TLSKW_MAX]; /* static strings */
    char *val[PG_TLSKW_MAX];      /* owned */
    size_t n;
} pg_tlskw;

/* Fills out with the keywords db (may be NULL) leaves to the server_tls_* keys of c. 0, or -1
 * when out of memory or server_tls_protocols is invalid (load-time checks refuse that first). */
int pg_tlskw_build(const cfg *c, const cfg_database *db, pg_tlskw *out);
void pg_tlskw_free(pg_tlskw *k);
/* The sslmode a connection for db uses: the line's own, else server_tls_sslmode's name. */
const char *pg_tlskw_sslmode(const cfg *c, const cfg_database *db);

#endif
