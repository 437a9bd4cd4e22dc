/*
 * pg_params: a small set of session parameters (name -> value) stored as one "k\0v\0k\0v\0" blob,
 * so an idle client's settings cost a single allocation, and the set itself one pointer (the
 * blob begins with its length). Names compare case-insensitively, as PostgreSQL's GUC names do.
 */
#ifndef SLUICE_PG_PARAMS_H
#define SLUICE_PG_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct pg_params {
    char *blob; /* NULL when empty; else a uint32_t length, then that many bytes of pairs */
} pg_params;

const char *pg_params_get(const pg_params *ps, const char *key);
/* Sets or replaces key. Returns 0 or -ENOMEM. */
int pg_params_set(pg_params *ps, const char *key, const char *value);
/* Removes key if present (no allocation). */
void pg_params_del(pg_params *ps, const char *key);
void pg_params_free(pg_params *ps);
/* The pairs as one byte string: *len bytes, or NULL and 0 when empty. */
const char *pg_params_bytes(const pg_params *ps, uint32_t *len);
/* A hash of the pairs in their order (kept with them, so this costs nothing): equal sets built
 * alike have equal fingerprints. */
uint64_t pg_params_fingerprint(const pg_params *ps);
int pg_params_copy(pg_params *dst, const pg_params *src);

/* Iteration: for (const char *k = pg_params_first(ps), *v; k; k = pg_params_next(ps, k)) {
 *     v = pg_params_value(k); } */
const char *pg_params_first(const pg_params *ps);
const char *pg_params_next(const pg_params *ps, const char *key);
const char *pg_params_value(const char *key);

/* False for parameters the server reports but a client cannot SET (server_version, ...). */
bool pg_param_settable(const char *key);
/* True when key is a plain GUC name that is safe to put into a SET command unquoted. */
bool pg_param_name_ok(const char *key);

#endif
