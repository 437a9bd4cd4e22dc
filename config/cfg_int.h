/*
 * cfg_int.h: the config loader's internals, shared by its files and its unit tests.
 *
 * Loading is one pass: cfg_lines.c hands libinih one cleaned line at a time and keeps the value;
 * cfg.c dispatches each entry to the [sluice] key table (cfg_keys.c) or to the [databases] and
 * [mongodb] line parsers (cfg_entries.c); every problem goes through cfg__error.
 */
#ifndef SLUICE_CFG_INT_H
#define SLUICE_CFG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/cfg.h"

typedef enum cfg_type {
    CFG_T_STR,      /* char *, owned by the cfg */
    CFG_T_INT,      /* int, 1..CFG__INT_MAX */
    CFG_T_INT0,     /* int, 0..CFG__INT_MAX */
    CFG_T_PORT,     /* int, 1..65535 */
    CFG_T_PORT0,    /* int, 0..65535; 0 turns the listener off */
    CFG_T_MS,       /* uint64_t milliseconds, given in seconds or with a unit */
    CFG_T_SIZE,     /* uint32_t bytes, 1024..INT32_MAX, with an optional kB/MB/GB suffix */
    CFG_T_MODE,     /* cfg_pool_mode */
    CFG_T_AUTH,     /* cfg_auth_type */
    CFG_T_LIST,     /* cfg_names, from a comma-separated list */
    CFG_T_BOOL,     /* bool: 0/1, off/on, no/yes, false/true */
    CFG_T_LOG,      /* cfg_log_level */
    CFG_T_TLSMODE,  /* cfg_tls_mode */
    CFG_T_LOGFMT,   /* cfg_log_format */
    CFG_T_FACILITY, /* cfg_syslog_facility */
} cfg_type;

typedef enum cfg_reload {
    CFG_RELOAD,  /* a SIGHUP applies the new value */
    CFG_RESTART, /* bound to a listener: a new value takes effect at the next start */
} cfg_reload;

/* One [sluice] key: everything about it in one row. */
typedef struct cfg_key {
    const char *name;
    cfg_type type;
    size_t offset;   /* into struct cfg */
    const char *def; /* default, in the file's syntax */
    cfg_reload reload;
    const char *doc; /* one sentence for the reference; the unit comes from the type */
} cfg_key;

#define CFG__INT_MAX  1000000
#define CFG__MAX_KEYS 96

extern const cfg_key cfg__keys[]; /* ends with a row whose name is NULL */

/* State of one load; lives on the caller's stack for the duration of cfg_load*. */
typedef struct cfg__loader {
    cfg *c;
    const char *name; /* file name used in diagnostics */
    FILE *diag;
    int errors;

    /* Source: a FILE, else text. */
    FILE *file;
    const char *text;

    int line;  /* physical line being handled, 1-based */
    char *buf; /* that line, any length (inih's own buffer holds 199 bytes) */
    size_t buf_cap;
    const char *value; /* its value after comment stripping; the handler reads this, not inih's */

    int key_line[CFG__MAX_KEYS]; /* where each [sluice] key was set; 0 = default */
    PQconninfoOption *pq_opts;   /* libpq's keyword list, fetched on the first database line */
} cfg__loader;

/* Records an error and writes "name:line: message" to the diag stream, if any. */
void cfg__error(cfg__loader *l, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports name as unknown, suggesting the nearest of valid. */
void cfg__unknown(cfg__loader *l, const char *what, const char *name, const char *where,
                  const char *const *valid, size_t stride);

/* inih's reader: one cleaned line per call (see cfg_lines.c). */
char *cfg__read_line(char *buf, int size, void *loader);

/* The row for name, or NULL. */
const cfg_key *cfg__key(const char *name);

/* The type and unit column of the reference, in Markdown ("session \\| transaction"). */
const char *cfg__type_unit(cfg_type t);

/* Parses v as k's type into the cfg. 0 on success; -1 after reporting a bad value at line. */
int cfg__set_key(cfg__loader *l, const cfg_key *k, const char *v, int line);

/* Fills every [sluice] key with its default. 0, or -1 on ENOMEM. */
int cfg__set_defaults(cfg *c);

/* [databases] and [mongodb] lines. 0, or -1 on ENOMEM; bad input is reported and returns 0. */
int cfg__add_database(cfg__loader *l, const char *name, const char *value);
int cfg__add_mongo(cfg__loader *l, const char *name, const char *value);

/* The valid name closest to name by edit distance (entries are `stride` bytes apart, each
 * starting with a const char *; the list ends at NULL), or NULL when nothing is close. */
const char *cfg__nearest(const char *name, const char *const *valid, size_t stride);

/* Splits "k=v k2='v 2'" (libpq conninfo quoting) into pairs the caller owns. On a syntax error
 * returns -1 with *err set to a static message; on ENOMEM returns -1 with *err NULL. */
int cfg__split_pairs(const char *s, cfg_kv **out, size_t *n, const char **err);

/* "1.5", "500ms", "2 min", "1h" to milliseconds; a nonzero value never rounds to 0. */
int cfg__parse_duration_ms(const char *v, uint64_t *out);
/* "65536", "64kB", "16MB", "1GB" (1024-based) to bytes. */
int cfg__parse_size(const char *v, uint64_t *out);
/* Decimal 0..max, nothing else on the line. */
int cfg__parse_int(const char *v, long max, long *out);
int cfg__parse_pool_mode(const char *v, cfg_pool_mode *out);
/* client_tls_sslmode's values (disable ... verify-full). 0 or -1. */
int cfg__parse_tls_mode(const char *v, cfg_tls_mode *out);
/* "a, b,c" into names (duplicates kept once; empty items skipped). 0, or -1 on ENOMEM. */
int cfg__parse_names(const char *v, cfg_names *out);
void cfg__free_names(cfg_names *l);

/* Loads auth_file and auth_hba_file and checks auth_type against them (cfg_auth.c). */
int cfg__load_auth(cfg__loader *l);

#endif
