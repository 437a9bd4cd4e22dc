/*
 * mongo_session: server-side state that outlives a request. Cursors are pinned to the server
 * that created them (a getMore elsewhere gets CursorNotFound) and transactions to the server that
 * ran their first statement, as mongobetween does.
 *
 * Both belong to the client connection whose command created them, and to no other: Sluice
 * talks to the server as one user for all its clients, so the server cannot tell them apart, and
 * a client that learnt or guessed another's cursor id or lsid could otherwise continue or kill
 * its cursors, or commit, abort or take over its transactions. Hence:
 * - the tables are keyed by (client, cursor id) and (client, session id); an entry's owner never
 *   changes;
 * - a getMore or killCursors naming a cursor the client did not open is answered here with
 *   CursorNotFound, as the server answers for a cursor it does not have, and never forwarded;
 * - while a client's transaction is open, its session is that client's alone: any other client's
 *   request in that session (lsid, endSessions, killSessions) is refused;
 * - when a client leaves, what it opened and left open is closed on the server, and only that.
 * A driver that spreads one cursor or transaction over several of its pooled connections gets
 * CursorNotFound or NoSuchTransaction from the second one: drivers pin cursors and transactions to
 * one connection in load-balanced mode (loadBalanced=true), which Sluice's hello supports.
 */
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"

void mongo__sessions_init(mongo_front *f)
{
    gw_htable_init(&f->cursors);
    gw_htable_init(&f->txns);
    gw_htable_init(&f->open_txns);
}

/* Hash keys: the owner's address, then the id. Entries go before their owner is freed, so an
 * address is never seen again while a stale entry holds it. */
static uint64_t cursor_hash(const mongo_client *c, int64_t id)
{
    uint8_t key[sizeof c + sizeof id];
    memcpy(key, &c, sizeof c);
    memcpy(key + sizeof c, &id, sizeof id);
    return gw_hash_bytes(key, sizeof key);
}

static uint64_t txn_hash(const mongo_client *c, const uint8_t *sid)
{
    uint8_t key[sizeof c + MONGO_SID_LEN];
    memcpy(key, &c, sizeof c);
    memcpy(key + sizeof c, sid, MONGO_SID_LEN);
    return gw_hash_bytes(key, sizeof key);
}

static void free_cursor_node(gw_hnode *n, void *arg)
{
    mongo_cursor *cur = gw_container_of(n, mongo_cursor, hnode);
    gw_htable_remove(&((mongo_front *)arg)->cursors, n);
    gw_list_remove(&cur->owner_node);
    if (cur->owner)
        cur->owner->n_cursors--;
    free(cur);
}

/* The transaction is no longer open: its session is free for any client again. */
static void txn_closed(mongo_front *f, mongo_txn *t)
{
    if (!t->ended)
        gw_htable_remove(&f->open_txns, &t->open_hnode);
    t->ended = true;
}

static void free_txn_node(gw_hnode *n, void *arg)
{
    mongo_front *f = arg;
    mongo_txn *t = gw_container_of(n, mongo_txn, hnode);
    txn_closed(f, t);
    gw_htable_remove(&f->txns, n);
    gw_list_remove(&t->owner_node);
    if (t->owner)
        t->owner->n_txns--;
    free(t);
}

void mongo__sessions_free(mongo_front *f)
{
    gw_htable_each(&f->cursors, free_cursor_node, f);
    gw_htable_each(&f->txns, free_txn_node, f);
    gw_htable_free(&f->cursors);
    gw_htable_free(&f->txns);
    gw_htable_free(&f->open_txns);
}

static mongo_cursor *find_cursor(mongo_front *f, const mongo_client *c, int64_t id)
{
    uint64_t h = cursor_hash(c, id);
    for (gw_hnode *n = gw_htable_chain(&f->cursors, h); n; n = n->next) {
        mongo_cursor *cur = gw_container_of(n, mongo_cursor, hnode);
        if (n->hash == h && cur->owner == c && cur->id == id)
            return cur;
    }
    return NULL;
}

static mongo_txn *find_txn(mongo_front *f, const mongo_client *c, const uint8_t *sid)
{
    uint64_t h = txn_hash(c, sid);
    for (gw_hnode *n = gw_htable_chain(&f->txns, h); n; n = n->next) {
        mongo_txn *t = gw_container_of(n, mongo_txn, hnode);
        if (n->hash == h && t->owner == c && memcmp(t->sid, sid, MONGO_SID_LEN) == 0)
            return t;
    }
    return NULL;
}

/* The open transaction in session sid, whoever started it. */
static mongo_txn *find_open(mongo_front *f, const uint8_t *sid)
{
    uint64_t h = gw_hash_bytes(sid, MONGO_SID_LEN);
    for (gw_hnode *n = gw_htable_chain(&f->open_txns, h); n; n = n->next) {
        mongo_txn *t = gw_container_of(n, mongo_txn, open_hnode);
        if (n->hash == h && memcmp(t->sid, sid, MONGO_SID_LEN) == 0)
            return t;
    }
    return NULL;
}

static void drop_cursor(mongo_front *f, mongo_cursor *cur)
{
    free_cursor_node(&cur->hnode, f);
}

/* The session id of an lsid document ({id: UUID, ...}): the server knows a session by it, so
 * that is what ownership compares, not the document's bytes (which a client could vary). */
static bool session_id(const uint8_t *lsid, uint32_t len, uint8_t *sid)
{
    bson_t doc;
    bson_iter_t it;
    const uint8_t *data;
    uint32_t n;
    bson_subtype_t sub;
    if (!bson_init_static(&doc, lsid, len) || !bson_iter_init_find(&it, &doc, "id") ||
        !BSON_ITER_HOLDS_BINARY(&it))
        return false;
    bson_iter_binary(&it, &sub, &n, &data);
    if (n != MONGO_SID_LEN)
        return false;
    memcpy(sid, data, MONGO_SID_LEN);
    return true;
}

static int refuse(mongo_refusal *why, int code, const char *code_name, const char *errmsg)
{
    why->code = code;
    why->code_name = code_name;
    snprintf(why->errmsg, sizeof why->errmsg, "%s", errmsg);
    return -1;
}

/* Refuses c a request in session sid while another client's transaction holds it. */
static int check_session_free(mongo_client *c, const uint8_t *sid, mongo_refusal *why)
{
    mongo_txn *t = find_open(c->front, sid);
    if (t && t->owner != c)
        return refuse(why, 251, "NoSuchTransaction",
                      "this session's transaction was started on another connection; Sluice "
                      "keeps a transaction on the connection that started it");
    return 0;
}

/* A new entry for c's transaction in session sid: within c's bound, making room by forgetting
 * its oldest ended one. NULL when c has MONGO_CLIENT_TXNS open, or out of memory. */
static mongo_txn *new_txn(mongo_client *c, const uint8_t *sid)
{
    mongo_front *f = c->front;
    if (c->n_txns >= MONGO_CLIENT_TXNS) {
        for (gw_list *it = c->txns.next; it != &c->txns; it = it->next) {
            mongo_txn *old = gw_container_of(it, mongo_txn, owner_node);
            if (old->ended) {
                free_txn_node(&old->hnode, f);
                break;
            }
        }
        if (c->n_txns >= MONGO_CLIENT_TXNS)
            return NULL;
    }
    mongo_txn *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    memcpy(t->sid, sid, MONGO_SID_LEN);
    t->ended = true; /* not in open_txns yet */
    if (gw_htable_insert(&f->txns, &t->hnode, txn_hash(c, sid)) != 0) {
        free(t);
        return NULL;
    }
    t->owner = c;
    gw_list_push_tail(&c->txns, &t->owner_node);
    c->n_txns++;
    GW_STAT_ADD(c->front->stats.txns_pinned, 1);
    return t;
}

static int note_transaction(mongo_client *c, const bson_t *body, mongo_refusal *why)
{
    mongo_front *f = c->front;
    mongo_request *r = &c->r;
    bson_iter_t it;
    if (!r->has_sid || !bson_iter_init_find(&it, body, "txnNumber"))
        return 0;
    int64_t number = bson_iter_as_int64(&it);
    mongo_txn *t = find_txn(f, c, r->sid);
    if (bson_iter_init_find(&it, body, "startTransaction") && bson_iter_as_bool(&it)) {
        if (!t && !(t = new_txn(c, r->sid)))
            return refuse(why, 261, "TooManyLogicalSessions",
                          "too many transactions open on this connection");
        if (t->ended && gw_htable_insert(&f->open_txns, &t->open_hnode,
                                         gw_hash_bytes(t->sid, MONGO_SID_LEN)) != 0)
            return refuse(why, 261, "TooManyLogicalSessions", "out of memory");
        memcpy(t->lsid, r->lsid, r->lsid_len);
        t->lsid_len = r->lsid_len;
        t->txn_number = number;
        t->ended = false;
        t->host[0] = 0; /* pinned by where its first statement goes */
        r->starts_txn = true;
    } else if (!t || t->txn_number != number) {
        return 0; /* not one this client started here: nothing to pin */
    }
    snprintf(r->pin, sizeof r->pin, "%s", t->host);
    if (strcmp(r->cmd, "commitTransaction") == 0 || strcmp(r->cmd, "abortTransaction") == 0)
        txn_closed(f, t); /* its entry stays: a retried commit still goes to the same server */
    return 0;
}

/* getMore: only on a cursor c opened. */
static int note_get_more(mongo_client *c, const bson_t *body, mongo_refusal *why)
{
    mongo_front *f = c->front;
    mongo_request *r = &c->r;
    bson_iter_t it;
    if (!bson_iter_init_find(&it, body, "getMore"))
        return 0;
    r->cursor = bson_iter_as_int64(&it);
    mongo_cursor *cur = find_cursor(f, c, r->cursor);
    if (!cur) {
        /* Also a refused getMore leaves every entry as it was: a thief gains nothing, and its
         * leaving does not kill the owner's cursor. */
        char msg[64];
        snprintf(msg, sizeof msg, "cursor id %lld not found", (long long)r->cursor);
        return refuse(why, 43, "CursorNotFound", msg);
    }
    snprintf(r->pin, sizeof r->pin, "%s", cur->host);
    cur->last_used = mongo_shell_now(f);
    return 0;
}

/*
 * killCursors: only cursors c opened. One naming any other id is refused whole, with
 * CursorNotFound for the first such id, rather than forwarded with the foreign ids taken out and
 * the reply's cursorsNotFound patched: a driver only kills cursors it opened, so a mixed list
 * comes from a confused or hostile client, and refusing it keeps requests and replies unchanged.
 */
static int note_kill_cursors(mongo_client *c, const bson_t *body, mongo_refusal *why)
{
    mongo_front *f = c->front;
    bson_iter_t it, ids;
    if (!bson_iter_init_find(&it, body, "cursors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &ids))
        return 0; /* malformed: the server answers it */
    while (bson_iter_next(&ids)) {
        int64_t id = bson_iter_as_int64(&ids);
        if (!find_cursor(f, c, id)) {
            char msg[64];
            snprintf(msg, sizeof msg, "cursor id %lld not found", (long long)id);
            return refuse(why, 43, "CursorNotFound", msg);
        }
    }
    /* The client closes them itself: forget them (they all live on one server). */
    bson_iter_recurse(&it, &ids);
    while (bson_iter_next(&ids)) {
        mongo_cursor *cur = find_cursor(f, c, bson_iter_as_int64(&ids));
        if (!cur)
            continue; /* named twice */
        if (!c->r.pin[0])
            snprintf(c->r.pin, sizeof c->r.pin, "%s", cur->host);
        drop_cursor(f, cur);
    }
    return 0;
}

/* endSessions and killSessions list lsids: none may be another client's open transaction. */
static int note_session_list(mongo_client *c, const bson_t *body, mongo_refusal *why)
{
    bson_iter_t it, ids;
    if (!bson_iter_init_find(&it, body, c->r.cmd) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &ids))
        return 0;
    while (bson_iter_next(&ids)) {
        const uint8_t *data;
        uint32_t len;
        uint8_t sid[MONGO_SID_LEN];
        if (!BSON_ITER_HOLDS_DOCUMENT(&ids))
            continue;
        bson_iter_document(&ids, &len, &data);
        if (session_id(data, len, sid) && check_session_free(c, sid, why) != 0)
            return -1;
    }
    return 0;
}

int mongo__sessions_note_request(mongo_client *c, const bson_t *body, mongo_refusal *why)
{
    mongo_request *r = &c->r;
    bson_iter_t it;
    r->pin[0] = 0;
    r->cursor = 0;
    r->lsid_len = 0;
    r->has_sid = false;
    r->in_txn = false;
    r->retryable = false;
    r->starts_txn = false;
    /* One pass over the body for the three fields (the first of each, as a lookup by key
     * finds): a lookup per field would walk the body three times per request. */
    bool has_lsid = false, has_txn_number = false, has_autocommit = false, in_txn = false;
    bson_iter_t lsid;
    if (bson_iter_init(&it, body)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (!has_lsid && strcmp(k, "lsid") == 0) {
                has_lsid = true;
                lsid = it;
            } else if (!has_txn_number && strcmp(k, "txnNumber") == 0) {
                has_txn_number = true;
            } else if (!has_autocommit && strcmp(k, "autocommit") == 0) {
                has_autocommit = true;
                in_txn = !bson_iter_as_bool(&it);
            }
        }
    }
    if (has_lsid && BSON_ITER_HOLDS_DOCUMENT(&lsid)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&lsid, &len, &data);
        if (len <= sizeof r->lsid) {
            memcpy(r->lsid, data, len);
            r->lsid_len = len;
        }
        r->has_sid = session_id(data, len, r->sid);
        if (r->has_sid && check_session_free(c, r->sid, why) != 0)
            return -1;
    }
    r->in_txn = in_txn;
    r->retryable = has_txn_number && !r->in_txn;
    if (r->in_txn && note_transaction(c, body, why) != 0)
        return -1;

    if (strcmp(r->cmd, "getMore") == 0)
        return note_get_more(c, body, why);
    if (strcmp(r->cmd, "killCursors") == 0)
        return note_kill_cursors(c, body, why);
    if (strcmp(r->cmd, "endSessions") == 0 || strcmp(r->cmd, "killSessions") == 0)
        return note_session_list(c, body, why);
    if (strcmp(r->cmd, "killAllSessions") == 0 || strcmp(r->cmd, "killAllSessionsByPattern") == 0)
        return refuse(why, 13, "Unauthorized",
                      "killing every session would end other clients' sessions: not allowed "
                      "through Sluice");
    return 0;
}

void mongo__sessions_note_sent(mongo_client *c, const char *host)
{
    if (!c->r.in_txn || !c->r.has_sid)
        return;
    mongo_txn *t = find_txn(c->front, c, c->r.sid);
    if (t && !t->host[0])
        snprintf(t->host, sizeof t->host, "%s", host);
}

static void kill_cursor(mongo_front *f, const mongo_cursor *cur)
{
    bson_t cmd = BSON_INITIALIZER, ids, lsid;
    BSON_APPEND_UTF8(&cmd, "killCursors", cur->coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "cursors", &ids);
    BSON_APPEND_INT64(&ids, "0", cur->id);
    bson_append_array_end(&cmd, &ids);
    BSON_APPEND_UTF8(&cmd, "$db", cur->db);
    if (cur->lsid_len && bson_init_static(&lsid, cur->lsid, cur->lsid_len))
        BSON_APPEND_DOCUMENT(&cmd, "lsid", &lsid);
    mongo__pool_fire_and_forget(f, cur->host, &cmd);
    GW_STAT_ADD(f->stats.killed_cursors, 1);
    bson_destroy(&cmd);
}

/* The reply's ok is not 1 (a command error; write errors inside a transaction abort it too). */
static bool reply_failed(const bson_t *reply)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, "writeErrors"))
        return true;
    return !bson_iter_init_find(&it, reply, "ok") || bson_iter_as_double(&it) != 1.0;
}

void mongo__sessions_note_reply(mongo_client *c, const char *host, const bson_t *reply)
{
    mongo_front *f = c->front;
    bson_iter_t it, ci;
    if (c->r.in_txn && c->r.has_sid && reply_failed(reply)) {
        /* The server ended the transaction (or never began it): nothing to abort, and the
         * session is free again. */
        mongo_txn *t = find_txn(f, c, c->r.sid);
        if (t)
            txn_closed(f, t);
    }
    if (!bson_iter_init_find(&it, reply, "cursor") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &ci) || !bson_iter_find(&ci, "id"))
        return;
    int64_t id = bson_iter_as_int64(&ci);
    if (strcmp(c->r.cmd, "getMore") == 0) {
        mongo_cursor *cur = id == 0 ? find_cursor(f, c, c->r.cursor) : NULL;
        if (cur)
            drop_cursor(f, cur); /* exhausted */
        return;
    }
    if (id == 0)
        return;
    mongo_cursor *cur = find_cursor(f, c, id);
    bool fresh = !cur;
    if (fresh) {
        cur = calloc(1, sizeof *cur);
        if (!cur)
            return;
        cur->id = id;
    }
    snprintf(cur->host, sizeof cur->host, "%s", host);
    cur->last_used = mongo_shell_now(f);
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
    if (!fresh)
        return;
    if (c->n_cursors >= MONGO_CLIENT_CURSORS) {
        /* Past its bound the client still gets its first batch; the cursor goes. */
        mongo_info(f, "client %d has %d cursors open: killing a new one", c->conn_id,
                   MONGO_CLIENT_CURSORS);
        if (cur->coll[0])
            kill_cursor(f, cur);
        free(cur);
        return;
    }
    if (gw_htable_insert(&f->cursors, &cur->hnode, cursor_hash(c, id)) != 0) {
        free(cur);
        return;
    }
    cur->owner = c;
    gw_list_push_tail(&c->cursors, &cur->owner_node);
    c->n_cursors++;
    GW_STAT_ADD(c->front->stats.cursors_pinned, 1);
}

void mongo__sessions_client_gone(mongo_client *c)
{
    mongo_front *f = c->front;
    bool send = !f->stopping;
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &c->txns)
    {
        mongo_txn *t = gw_container_of(it, mongo_txn, owner_node);
        if (send && !t->ended) {
            bson_t cmd = BSON_INITIALIZER, lsid;
            BSON_APPEND_INT32(&cmd, "abortTransaction", 1);
            if (t->lsid_len && bson_init_static(&lsid, t->lsid, t->lsid_len))
                BSON_APPEND_DOCUMENT(&cmd, "lsid", &lsid);
            BSON_APPEND_INT64(&cmd, "txnNumber", t->txn_number);
            BSON_APPEND_BOOL(&cmd, "autocommit", false);
            BSON_APPEND_UTF8(&cmd, "$db", "admin");
            mongo_debug(f, "aborting the transaction a leaving client left open");
            mongo__pool_fire_and_forget(f, t->host, &cmd);
            GW_STAT_ADD(f->stats.aborted_txns, 1);
            bson_destroy(&cmd);
        }
        free_txn_node(&t->hnode, f);
    }
    gw_list_foreach_safe(it, tmp, &c->cursors)
    {
        mongo_cursor *cur = gw_container_of(it, mongo_cursor, owner_node);
        if (send && cur->coll[0]) {
            mongo_debug(f, "killing cursor %lld a leaving client left open", (long long)cur->id);
            kill_cursor(f, cur);
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
