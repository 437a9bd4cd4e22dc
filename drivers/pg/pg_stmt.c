#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/pg/pg_stmt.h"

void pg_stmt_registry_init(pg_stmt_registry *r)
{
    gw_htable_init(&r->table);
    r->next_id = 1;
}

void pg_stmt_registry_destroy(pg_stmt_registry *r)
{
    gw_htable_free(&r->table);
}

pg_stmt *pg_stmt_lookup(const pg_stmt_registry *r, const uint8_t *body, size_t len)
{
    uint64_t h = gw_hash_bytes(body, len);
    for (gw_hnode *n = gw_htable_chain(&r->table, h); n; n = n->next) {
        pg_stmt *s = gw_container_of(n, pg_stmt, node);
        if (n->hash == h && s->body_len == len && memcmp(s->body, body, len) == 0)
            return s;
    }
    return NULL;
}

pg_stmt *pg_stmt_intern(pg_stmt_registry *r, const uint8_t *body, size_t len)
{
    pg_stmt *s = pg_stmt_lookup(r, body, len);
    if (s)
        return pg_stmt_ref(s);
    s = malloc(sizeof *s + len);
    if (!s)
        return NULL;
    s->validated_in = NULL;
    s->sql_flags = 0;
    s->sql_scanned = false;
    s->id = r->next_id++;
    s->refs = 1;
    s->body_len = (uint32_t)len;
    /* The id keeps names unique; the keyed hash of it (secret key, gw_hash_seed) makes them
     * unguessable to a client that sees one of them. */
    snprintf(s->name, sizeof s->name, "sluice_%" PRIx64 "_%016" PRIx64, s->id,
             gw_hash_bytes(&s->id, sizeof s->id));
    memcpy(s->body, body, len);
    if (gw_htable_insert(&r->table, &s->node, gw_hash_bytes(body, len)) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

pg_stmt *pg_stmt_ref(pg_stmt *s)
{
    s->refs++;
    return s;
}

void pg_stmt_unref(pg_stmt_registry *r, pg_stmt *s)
{
    if (--s->refs == 0) {
        gw_htable_remove(&r->table, &s->node);
        free(s);
    }
}

/* ---- client map ---- */

typedef struct client_name {
    gw_hnode node;
    pg_stmt *stmt;
    char name[];
} client_name;

void pg_client_stmts_init(pg_client_stmts *m)
{
    m->table = NULL;
}

static client_name *find_name(const pg_client_stmts *m, const char *name, uint64_t h)
{
    if (!m->table)
        return NULL;
    for (gw_hnode *n = gw_htable_chain(m->table, h); n; n = n->next) {
        client_name *cn = gw_container_of(n, client_name, node);
        if (n->hash == h && strcmp(cn->name, name) == 0)
            return cn;
    }
    return NULL;
}

int pg_client_stmts_bind(pg_client_stmts *m, pg_stmt_registry *r, const char *name, pg_stmt *s)
{
    uint64_t h = gw_hash_bytes(name, strlen(name));
    client_name *cn = find_name(m, name, h);
    if (cn) {
        pg_stmt *old = cn->stmt;
        cn->stmt = pg_stmt_ref(s);
        pg_stmt_unref(r, old);
        return 0;
    }
    if (!m->table) {
        if (!(m->table = malloc(sizeof *m->table)))
            return -ENOMEM;
        gw_htable_init(m->table);
    }
    size_t len = strlen(name) + 1;
    cn = malloc(sizeof *cn + len);
    if (!cn)
        return -ENOMEM;
    memcpy(cn->name, name, len);
    cn->stmt = s;
    if (gw_htable_insert(m->table, &cn->node, h) != 0) {
        free(cn);
        return -ENOMEM;
    }
    pg_stmt_ref(s);
    return 0;
}

pg_stmt *pg_client_stmts_find(const pg_client_stmts *m, const char *name)
{
    client_name *cn = find_name(m, name, gw_hash_bytes(name, strlen(name)));
    return cn ? cn->stmt : NULL;
}

static void drop_name(pg_client_stmts *m, pg_stmt_registry *r, client_name *cn)
{
    gw_htable_remove(m->table, &cn->node);
    pg_stmt_unref(r, cn->stmt);
    free(cn);
}

bool pg_client_stmts_unbind(pg_client_stmts *m, pg_stmt_registry *r, const char *name)
{
    client_name *cn = find_name(m, name, gw_hash_bytes(name, strlen(name)));
    if (!cn)
        return false;
    drop_name(m, r, cn);
    return true;
}

struct drop_arg {
    pg_client_stmts *m;
    pg_stmt_registry *r;
    const pg_stmt *only; /* NULL: all */
};

static void drop_each(gw_hnode *n, void *arg)
{
    struct drop_arg *a = arg;
    client_name *cn = gw_container_of(n, client_name, node);
    if (!a->only || cn->stmt == a->only)
        drop_name(a->m, a->r, cn);
}

void pg_client_stmts_unbind_stmt(pg_client_stmts *m, pg_stmt_registry *r, const pg_stmt *s)
{
    struct drop_arg a = {m, r, s};
    if (m->table)
        gw_htable_each(m->table, drop_each, &a);
}

void pg_client_stmts_clear(pg_client_stmts *m, pg_stmt_registry *r)
{
    struct drop_arg a = {m, r, NULL};
    if (!m->table)
        return;
    gw_htable_each(m->table, drop_each, &a);
    gw_htable_free(m->table);
    free(m->table);
    m->table = NULL;
}

size_t pg_client_stmts_count(const pg_client_stmts *m)
{
    return m->table ? m->table->count : 0;
}

/* ---- server set ---- */

typedef struct server_entry {
    gw_hnode node; /* keyed by stmt id */
    gw_list lru;   /* head = most recently used */
    pg_stmt *stmt;
    uint64_t pending_seq; /* request number of the Parse not yet answered, 0 once confirmed */
} server_entry;

void pg_server_stmts_init(pg_server_stmts *m)
{
    gw_htable_init(&m->table);
    gw_list_init(&m->lru);
}

static server_entry *find_entry(const pg_server_stmts *m, const pg_stmt *s)
{
    for (gw_hnode *n = gw_htable_chain(&m->table, s->id); n; n = n->next) {
        server_entry *e = gw_container_of(n, server_entry, node);
        if (e->stmt == s)
            return e;
    }
    return NULL;
}

bool pg_server_stmts_use(pg_server_stmts *m, const pg_stmt *s)
{
    server_entry *e = find_entry(m, s);
    if (!e)
        return false;
    gw_list_remove(&e->lru);
    gw_list_push_head(&m->lru, &e->lru);
    return true;
}

void pg_server_stmts_set_pending(pg_server_stmts *m, const pg_stmt *s, uint64_t seq)
{
    server_entry *e = find_entry(m, s);
    if (e)
        e->pending_seq = seq;
}

void pg_server_stmts_confirm(pg_server_stmts *m, const pg_stmt *s)
{
    server_entry *e = find_entry(m, s);
    if (e)
        e->pending_seq = 0;
}

uint64_t pg_server_stmts_pending(const pg_server_stmts *m, const pg_stmt *s)
{
    server_entry *e = find_entry(m, s);
    return e ? e->pending_seq : 0;
}

pg_stmt *pg_server_stmts_add(pg_server_stmts *m, pg_stmt *s, int max, uint64_t seq, int *err)
{
    *err = 0;
    if (pg_server_stmts_use(m, s))
        return NULL;
    server_entry *e = malloc(sizeof *e);
    if (!e || gw_htable_insert(&m->table, &e->node, s->id) != 0) {
        free(e);
        *err = -ENOMEM;
        return NULL;
    }
    e->stmt = pg_stmt_ref(s);
    e->pending_seq = seq;
    gw_list_push_head(&m->lru, &e->lru);
    if (max <= 0 || m->table.count <= (size_t)max)
        return NULL;
    server_entry *victim = gw_container_of(m->lru.prev, server_entry, lru);
    gw_list_remove(&victim->lru);
    gw_htable_remove(&m->table, &victim->node);
    pg_stmt *out = victim->stmt;
    free(victim);
    return out;
}

bool pg_server_stmts_remove(pg_server_stmts *m, pg_stmt_registry *r, const pg_stmt *s)
{
    server_entry *e = find_entry(m, s);
    if (!e)
        return false;
    gw_list_remove(&e->lru);
    gw_htable_remove(&m->table, &e->node);
    pg_stmt_unref(r, e->stmt);
    free(e);
    return true;
}

void pg_server_stmts_clear(pg_server_stmts *m, pg_stmt_registry *r)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &m->lru)
    {
        server_entry *e = gw_container_of(it, server_entry, lru);
        pg_stmt_unref(r, e->stmt);
        free(e);
    }
    gw_list_init(&m->lru);
    gw_htable_free(&m->table);
}

size_t pg_server_stmts_count(const pg_server_stmts *m)
{
    return m->table.count;
}
