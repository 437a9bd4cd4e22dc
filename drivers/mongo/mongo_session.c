/*
 * mongo_session: server-side state that outlives a request. Cursors are pinned to the server
 * that created them (a getMore elsewhere gets CursorNotFound) and transactions to the server that
 * ran their first statement, as mongobetween does. Both tables are per front and keyed by what
 * the requests carry (cursor id, lsid), not by client connection: drivers spread one session's
 * commands over any of their pooled connections. Each entry's owner is the connection that used
 * it last; when the owner leaves, what it left open is closed on the server.
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_int.h"
#include "drivers/mongo/mongo_wire.h"

void mongo__sessions_init(mongo_front *f)
{
    gw_htable_init(&f->cursors);
    gw_htable_init(&f->txns);
}

static void free_cursor_node(gw_hnode *n, void *arg)
{
    mongo_cursor *cur = gw_container_of(n, mongo_cursor, hnode);
    gw_htable_remove(&((mongo_front *)arg)->cursors, n);
    gw_list_remove(&cur->owner_node);
    free(cur);
}

static void free_txn_node(gw_hnode *n, void *arg)
{
    mongo_txn *t = gw_container_of(n, mongo_txn, hnode);
    gw_htable_remove(&((mongo_front *)arg)->txns, n);
    gw_list_remove(&t->owner_node);
    free(t);
}

void mongo__sessions_free(mongo_front *f)
{
    gw_htable_each(&f->cursors, free_cursor_node, f);
    gw_htable_each(&f->txns, free_txn_node, f);
    gw_htable_free(&f->cursors);
    gw_htable_free(&f->txns);
}

static mongo_cursor *find_cursor(mongo_front *f, int64_t id)
{
    uint64_t h = gw_hash_bytes(&id, sizeof id);
    for (gw_hnode *n = gw_htable_chain(&f->cursors, h); n; n = n->next) {
        mongo_cursor *cur = gw_container_of(n, mongo_cursor, hnode);
        if (n->hash == h && cur->id == id)
            return cur;
    }
    return NULL;
}

static mongo_txn *find_txn(mongo_front *f, const uint8_t *lsid, uint32_t len)
{
    uint64_t h = gw_hash_bytes(lsid, len);
    for (gw_hnode *n = gw_htable_chain(&f->txns, h); n; n = n->next) {
        mongo_txn *t = gw_container_of(n, mongo_txn, hnode);
        if (n->hash == h && t->lsid_len == len && memcmp(t->lsid, lsid, len) == 0)
            return t;
    }
    return NULL;
}

static void set_owner(gw_list *owner_node, mongo_client **owner, gw_list *list, mongo_client *c)
{
    gw_list_remove(owner_node);
    gw_list_push_tail(list, owner_node);
    *owner = c;
}

static void drop_cursor(mongo_front *f, mongo_cursor *cur)
{
    free_cursor_node(&cur->hnode, f);
}

static void note_transaction(mongo_client *c, const bson_t *body)
{
    mongo_front *f = c->front;
    mongo_request *r = &c->r;
    bson_iter_t it;
    if (!r->lsid_len || !bson_iter_init_find(&it, body, "txnNumber"))
        return;
    int64_t number = bson_iter_as_int64(&it);
    mongo_txn *t = find_txn(f, r->lsid, r->lsid_len);
    if (bson_iter_init_find(&it, body, "startTransaction") && bson_iter_as_bool(&it)) {
        if (!t) {
            t = calloc(1, sizeof *t);
            if (!t)
                return;
            memcpy(t->lsid, r->lsid, r->lsid_len);
            t->lsid_len = r->lsid_len;
            gw_list_init(&t->owner_node);
            if (gw_htable_insert(&f->txns, &t->hnode, gw_hash_bytes(t->lsid, t->lsid_len))) {
                free(t);
                return;
            }
        }
        t->txn_number = number;
        t->ended = false;
        t->host[0] = 0; /* pinned by where its first statement goes */
    } else if (!t || t->txn_number != number) {
        return; /* a transaction begun elsewhere: nothing to pin */
    }
    set_owner(&t->owner_node, &t->owner, &c->txns, c);
    snprintf(r->pin, sizeof r->pin, "%s", t->host);
    if (strcmp(r->cmd, "commitTransaction") == 0 || strcmp(r->cmd, "abortTransaction") == 0)
        t->ended = true; /* a retried commit still goes to the same server */
}

void mongo__sessions_note_request(mongo_client *c, const bson_t *body)
{
    mongo_front *f = c->front;
    mongo_request *r = &c->r;
    bson_iter_t it;
    r->pin[0] = 0;
    r->cursor = 0;
    r->lsid_len = 0;
    r->in_txn = false;
    r->retryable = false;
    if (bson_iter_init_find(&it, body, "lsid") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        if (len <= sizeof r->lsid) {
            memcpy(r->lsid, data, len);
            r->lsid_len = len;
        }
    }
    bool has_txn_number = bson_iter_init_find(&it, body, "txnNumber");
    r->in_txn = bson_iter_init_find(&it, body, "autocommit") && !bson_iter_as_bool(&it);
    r->retryable = has_txn_number && !r->in_txn;
    if (r->in_txn)
        note_transaction(c, body);

    if (strcmp(r->cmd, "getMore") == 0 && bson_iter_init_find(&it, body, "getMore")) {
        r->cursor = bson_iter_as_int64(&it);
        mongo_cursor *cur = find_cursor(f, r->cursor);
        if (cur) {
            snprintf(r->pin, sizeof r->pin, "%s", cur->host);
            cur->last_used = gw_now(f->gw->ctx);
            set_owner(&cur->owner_node, &cur->owner, &c->cursors, c);
        }
    } else if (strcmp(r->cmd, "killCursors") == 0 && bson_iter_init_find(&it, body, "cursors") &&
               BSON_ITER_HOLDS_ARRAY(&it)) {
        /* The client closes them itself: forget them (they all live on one server). */
        bson_iter_t ids;
        if (bson_iter_recurse(&it, &ids)) {
            while (bson_iter_next(&ids)) {
                mongo_cursor *cur = find_cursor(f, bson_iter_as_int64(&ids));
                if (!cur)
                    continue;
                if (!r->pin[0])
                    snprintf(r->pin, sizeof r->pin, "%s", cur->host);
                drop_cursor(f, cur);
            }
        }
    }
}

void mongo__sessions_note_sent(mongo_client *c, const char *host)
{
    if (!c->r.in_txn || !c->r.lsid_len)
        return;
    mongo_txn *t = find_txn(c->front, c->r.lsid, c->r.lsid_len);
    if (t && !t->host[0])
        snprintf(t->host, sizeof t->host, "%s", host);
}

void mongo__sessions_note_reply(mongo_client *c, const char *host, const bson_t *reply)
{
    mongo_front *f = c->front;
    bson_iter_t it, ci;
    if (!bson_iter_init_find(&it, reply, "cursor") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &ci) || !bson_iter_find(&ci, "id"))
        return;
    int64_t id = bson_iter_as_int64(&ci);
    if (strcmp(c->r.cmd, "getMore") == 0) {
        mongo_cursor *cur = id == 0 ? find_cursor(f, c->r.cursor) : NULL;
        if (cur)
            drop_cursor(f, cur); /* exhausted */
        return;
    }
    if (id == 0)
        return;
    mongo_cursor *cur = find_cursor(f, id);
    if (!cur) {
        cur = calloc(1, sizeof *cur);
        if (!cur)
            return;
        cur->id = id;
        gw_list_init(&cur->owner_node);
        if (gw_htable_insert(&f->cursors, &cur->hnode, gw_hash_bytes(&id, sizeof id))) {
            free(cur);
            return;
        }
    }
    snprintf(cur->host, sizeof cur->host, "%s", host);
    cur->last_used = gw_now(f->gw->ctx);
    memcpy(cur->lsid, c->r.lsid, c->r.lsid_len);
    cur->lsid_len = c->r.lsid_len;
    cur->db[0] = cur->coll[0] = 0;
    bson_iter_recurse(&it, &ci);
    if (bson_iter_find(&ci, "ns") && BSON_ITER_HOLDS_UTF8(&ci)) {
        const char *ns = bson_iter_utf8(&ci, NULL);
        const char *dot = strchr(ns, '.');
        if (dot) {
            snprintf(cur->db, sizeof cur->db, "%.*s", (int)(dot - ns), ns);
            snprintf(cur->coll, sizeof cur->coll, "%s", dot + 1);
        }
    }
    set_owner(&cur->owner_node, &cur->owner, &c->cursors, c);
}

static void append_lsid(bson_t *cmd, const uint8_t *lsid, uint32_t len)
{
    bson_t doc;
    if (len && bson_init_static(&doc, lsid, len))
        BSON_APPEND_DOCUMENT(cmd, "lsid", &doc);
}

void mongo__sessions_client_gone(mongo_client *c)
{
    mongo_front *f = c->front;
    bool send = !f->gw->stopping;
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &c->txns)
    {
        mongo_txn *t = gw_container_of(it, mongo_txn, owner_node);
        if (send && !t->ended) {
            bson_t cmd = BSON_INITIALIZER;
            BSON_APPEND_INT32(&cmd, "abortTransaction", 1);
            append_lsid(&cmd, t->lsid, t->lsid_len);
            BSON_APPEND_INT64(&cmd, "txnNumber", t->txn_number);
            BSON_APPEND_BOOL(&cmd, "autocommit", false);
            BSON_APPEND_UTF8(&cmd, "$db", "admin");
            gw_debug(f->gw->ctx, "mongo %s: aborting the transaction a leaving client left open",
                     f->name);
            mongo__pool_fire_and_forget(f, t->host, &cmd);
            bson_destroy(&cmd);
        }
        free_txn_node(&t->hnode, f);
    }
    gw_list_foreach_safe(it, tmp, &c->cursors)
    {
        mongo_cursor *cur = gw_container_of(it, mongo_cursor, owner_node);
        if (send && cur->coll[0]) {
            bson_t cmd = BSON_INITIALIZER, ids;
            BSON_APPEND_UTF8(&cmd, "killCursors", cur->coll);
            BSON_APPEND_ARRAY_BEGIN(&cmd, "cursors", &ids);
            BSON_APPEND_INT64(&ids, "0", cur->id);
            bson_append_array_end(&cmd, &ids);
            BSON_APPEND_UTF8(&cmd, "$db", cur->db);
            append_lsid(&cmd, cur->lsid, cur->lsid_len);
            gw_debug(f->gw->ctx, "mongo %s: killing cursor %lld a leaving client left open",
                     f->name, (long long)cur->id);
            mongo__pool_fire_and_forget(f, cur->host, &cmd);
            bson_destroy(&cmd);
        }
        drop_cursor(f, cur);
    }
}

typedef struct expire_arg {
    mongo_front *f;
    uint64_t now, ttl;
} expire_arg;

static void expire_one(gw_hnode *n, void *arg)
{
    expire_arg *a = arg;
    mongo_cursor *cur = gw_container_of(n, mongo_cursor, hnode);
    if (a->now - cur->last_used > a->ttl)
        drop_cursor(a->f, cur);
}

void mongo__sessions_expire(mongo_front *f, uint64_t now)
{
    int32_t minutes =
        f->have_limits && f->limits.session_timeout_min > 0 ? f->limits.session_timeout_min : 30;
    expire_arg a = {f, now, (uint64_t)minutes * 60000u};
    gw_htable_each(&f->cursors, expire_one, &a);
}
