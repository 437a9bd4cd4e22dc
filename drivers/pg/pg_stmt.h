/*
 * pg_stmt: prepared statements in transaction pooling.
 *
 * Every distinct statement (query text plus parameter types, i.e. the Parse body after the name)
 * is interned once in a registry and gets one server-side name that nobody can guess
 * ("sluice_<id>_<64 secret bits>"), so SQL that names another client's statement misses. A client
 * maps its own statement names to registry entries; a server records which entries it has prepared,
 * in LRU order, capped at max_prepared_statements. Entries are reference counted: one reference per
 * client name bound to it, per server that has it, and per in-flight request that names it.
 */
#ifndef SLUICE_PG_STMT_H
#define SLUICE_PG_STMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/htable.h"
#include "gateway/list.h"

typedef struct pg_stmt {
    gw_hnode node; /* in the registry, keyed by the hash of body */
    uint64_t id;
    uint32_t refs;
    uint32_t body_len;        /* query text NUL, int16 count, int32 types[] */
    const void *validated_in; /* a pool where a server accepted this Parse, NULL until then */
    uint32_t sql_flags;       /* pg_sql_scan of the query text, once sql_scanned */
    bool sql_scanned;
    char name[48]; /* the server-side name: see pg_stmt_intern */
    uint8_t body[];
} pg_stmt;

typedef struct pg_stmt_registry {
    gw_htable table;
    uint64_t next_id;
} pg_stmt_registry;

void pg_stmt_registry_init(pg_stmt_registry *r);
/* Every entry must have been released first; frees the table. */
void pg_stmt_registry_destroy(pg_stmt_registry *r);
/* Returns the entry for body with one more reference (new if needed), or NULL on ENOMEM. */
pg_stmt *pg_stmt_intern(pg_stmt_registry *r, const uint8_t *body, size_t len);
pg_stmt *pg_stmt_ref(pg_stmt *s);
/* The entry for body, without taking a reference, or NULL. */
pg_stmt *pg_stmt_lookup(const pg_stmt_registry *r, const uint8_t *body, size_t len);
void pg_stmt_unref(pg_stmt_registry *r, pg_stmt *s);

/* A client's names -> entries. The table is allocated with the first name (most clients never
 * name a statement) and freed by pg_client_stmts_clear. */
typedef struct pg_client_stmts {
    gw_htable *table; /* NULL until the first bind */
} pg_client_stmts;

void pg_client_stmts_init(pg_client_stmts *m);
/* Binds name to s (taking a new reference), replacing an earlier binding. 0 or -ENOMEM. */
int pg_client_stmts_bind(pg_client_stmts *m, pg_stmt_registry *r, const char *name, pg_stmt *s);
pg_stmt *pg_client_stmts_find(const pg_client_stmts *m, const char *name);
/* Removes name; returns true when it was bound. */
bool pg_client_stmts_unbind(pg_client_stmts *m, pg_stmt_registry *r, const char *name);
/* Removes every name bound to s (a Parse of it failed). */
void pg_client_stmts_unbind_stmt(pg_client_stmts *m, pg_stmt_registry *r, const pg_stmt *s);
void pg_client_stmts_clear(pg_client_stmts *m, pg_stmt_registry *r);
size_t pg_client_stmts_count(const pg_client_stmts *m);

/* The entries a server has prepared, most recently used first. */
typedef struct pg_server_stmts {
    gw_htable table;
    gw_list lru;
} pg_server_stmts;

void pg_server_stmts_init(pg_server_stmts *m);
/* True when s is prepared on this server; marks it most recently used. */
bool pg_server_stmts_use(pg_server_stmts *m, const pg_stmt *s);
/* Records s as prepared (new reference), unconfirmed until pg_server_stmts_confirm, by the
 * request numbered seq (0: already confirmed). When that makes the set larger than max (> 0),
 * the least recently used other entry is removed from the set and returned, still holding the
 * set's reference, for the caller to Close on the server; otherwise returns NULL. -ENOMEM:
 * *err set. */
pg_stmt *pg_server_stmts_add(pg_server_stmts *m, pg_stmt *s, int max, uint64_t seq, int *err);
void pg_server_stmts_set_pending(pg_server_stmts *m, const pg_stmt *s, uint64_t seq);
/* The server answered the Parse of s: it is there for good. */
void pg_server_stmts_confirm(pg_server_stmts *m, const pg_stmt *s);
/* The request number of s's unconfirmed Parse, or 0 when s is confirmed or not recorded. */
uint64_t pg_server_stmts_pending(const pg_server_stmts *m, const pg_stmt *s);
/* Forgets s (a Parse failed); returns true when it was recorded. Drops the reference. */
bool pg_server_stmts_remove(pg_server_stmts *m, pg_stmt_registry *r, const pg_stmt *s);
void pg_server_stmts_clear(pg_server_stmts *m, pg_stmt_registry *r);
size_t pg_server_stmts_count(const pg_server_stmts *m);

#endif
