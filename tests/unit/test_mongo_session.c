/* Unit tests for the cursor and transaction tables: pins, owners, and what a leaving client
 * leaves to be closed on the server (queued as Sluice's own messages while no connection is
 * open). */
#include <bson/bson.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"
#include "tests/unit/test_mongo_fake_shell.h"

static fake_shell fs;

static void setup(void)
{
    mongo_fake_init(&fs);
    fs.front.pool_size = 0; /* nothing is connected: Sluice's own messages stay queued */
}

static void teardown(void)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &fs.front.internal)
    {
        mongo_internal_msg *im = gw_container_of(it, mongo_internal_msg, node);
        gw_list_remove(it);
        free(im->msg);
        free(im);
    }
    fs.front.n_internal = 0;
    mongo_core_front_free(&fs.front);
}

static mongo_client *new_client(void)
{
    mongo_client *c = calloc(1, sizeof *c);
    c->front = &fs.front;
    gw_list_init(&c->cursors);
    gw_list_init(&c->txns);
    gw_list_init(&c->wait_node);
    return c;
}

/* Runs body (BCON) as c's request, as the client code does before forwarding it. Returns the
 * refusal's code, or 0 when the request may go to the server. */
static int request(mongo_client *c, bson_t *body)
{
    bson_iter_t it;
    memset(&c->r, 0, sizeof c->r);
    bson_iter_init(&it, body);
    bson_iter_next(&it);
    snprintf(c->r.cmd, sizeof c->r.cmd, "%s", bson_iter_key(&it));
    mongo_refusal why;
    int rc = mongo__sessions_note_request(c, body, &why);
    bson_destroy(body);
    return rc == 0 ? 0 : why.code;
}

static void reply_cursor(mongo_client *c, const char *host, int64_t id)
{
    bson_t *r = BCON_NEW("cursor", "{", "id", BCON_INT64(id), "ns", BCON_UTF8("db.coll"), "}", "ok",
                         BCON_DOUBLE(1));
    mongo__sessions_note_reply(c, host, r);
    bson_destroy(r);
}

static void reply_ok(mongo_client *c, double ok)
{
    bson_t *r = BCON_NEW("ok", BCON_DOUBLE(ok));
    mongo__sessions_note_reply(c, "h3:27017", r);
    bson_destroy(r);
}

/* The command names Sluice queued for itself, in order, as "name:first value". */
static int queued(char names[][192], int max)
{
    int n = 0;
    for (gw_list *it = fs.front.internal.next; it != &fs.front.internal && n < max; it = it->next) {
        mongo_internal_msg *im = gw_container_of(it, mongo_internal_msg, node);
        mongo_msg m;
        const char *why;
        cr_assert_eq(mongo_msg_parse(im->msg, im->len, &m, &why), 0, "%s", why);
        snprintf(names[n++], 192, "%.40s@%.140s", m.command, im->host);
    }
    return n;
}

static bson_t *lsid_doc(uint8_t tag)
{
    uint8_t id[16];
    memset(id, tag, sizeof id);
    return BCON_NEW("id", BCON_BIN(BSON_SUBTYPE_UUID, id, 16));
}

static int start_txn(mongo_client *c, bson_t *lsid, int64_t number)
{
    return request(c, BCON_NEW("insert", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(lsid), "txnNumber",
                               BCON_INT64(number), "startTransaction", BCON_BOOL(true),
                               "autocommit", BCON_BOOL(false)));
}

TestSuite(mongo_session, .init = setup, .fini = teardown);

Test(mongo_session, cursor_pinned_and_owned_by_its_opener_only)
{
    mongo_client *a = new_client(), *b = new_client();
    cr_assert_eq(request(a, BCON_NEW("find", BCON_UTF8("coll"), "$db", BCON_UTF8("db"))), 0);
    reply_cursor(a, "h1:27017", 77);
    cr_assert_eq(request(a, BCON_NEW("getMore", BCON_INT64(77), "collection", BCON_UTF8("coll"))),
                 0);
    cr_assert_str_eq(a->r.pin, "h1:27017", "a getMore goes to the cursor's server");
    cr_assert_eq(request(b, BCON_NEW("getMore", BCON_INT64(77), "collection", BCON_UTF8("coll"))),
                 43, "another client's cursor is CursorNotFound");
    cr_assert_eq(
        request(b, BCON_NEW("killCursors", BCON_UTF8("coll"), "cursors", "[", BCON_INT64(77), "]")),
        43);
    mongo__sessions_client_gone(b);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 0, "the refused thief leaving kills nothing");
    cr_assert_eq(request(a, BCON_NEW("getMore", BCON_INT64(77), "collection", BCON_UTF8("coll"))),
                 0, "the owner's cursor is intact");
    mongo__sessions_client_gone(a);
    cr_assert_eq(queued(names, 4), 1);
    cr_assert_str_eq(names[0], "killCursors@h1:27017");
    free(a);
    free(b);
}

Test(mongo_session, same_cursor_id_for_two_clients_stays_apart)
{
    mongo_client *a = new_client(), *b = new_client();
    request(a, BCON_NEW("find", BCON_UTF8("coll")));
    reply_cursor(a, "h1:27017", 9);
    request(b, BCON_NEW("find", BCON_UTF8("coll")));
    reply_cursor(b, "h2:27017", 9); /* another server's cursor with the same id */
    request(a, BCON_NEW("getMore", BCON_INT64(9), "collection", BCON_UTF8("coll")));
    cr_assert_str_eq(a->r.pin, "h1:27017");
    request(b, BCON_NEW("getMore", BCON_INT64(9), "collection", BCON_UTF8("coll")));
    cr_assert_str_eq(b->r.pin, "h2:27017");
    mongo__sessions_client_gone(a);
    mongo__sessions_client_gone(b);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 2);
    free(a);
    free(b);
}

Test(mongo_session, kill_cursors_with_a_foreign_id_is_refused_whole)
{
    mongo_client *a = new_client(), *b = new_client();
    request(a, BCON_NEW("find", BCON_UTF8("coll")));
    reply_cursor(a, "h1:27017", 5);
    request(b, BCON_NEW("find", BCON_UTF8("coll")));
    reply_cursor(b, "h1:27017", 6);
    cr_assert_eq(request(b, BCON_NEW("killCursors", BCON_UTF8("coll"), "cursors", "[",
                                     BCON_INT64(6), BCON_INT64(5), "]")),
                 43);
    cr_assert_eq(b->n_cursors, 1, "not even its own cursor was forgotten");
    cr_assert_eq(a->n_cursors, 1);
    mongo__sessions_client_gone(a);
    mongo__sessions_client_gone(b);
    free(a);
    free(b);
}

Test(mongo_session, exhausted_or_killed_cursors_are_forgotten)
{
    mongo_client *a = new_client();
    request(a, BCON_NEW("find", BCON_UTF8("coll")));
    reply_cursor(a, "h1:27017", 5);
    request(a, BCON_NEW("find", BCON_UTF8("coll")));
    reply_cursor(a, "h2:27017", 6);
    request(a, BCON_NEW("getMore", BCON_INT64(5), "collection", BCON_UTF8("coll")));
    reply_cursor(a, "h1:27017", 0); /* exhausted */
    cr_assert_eq(
        request(a, BCON_NEW("killCursors", BCON_UTF8("coll"), "cursors", "[", BCON_INT64(6), "]")),
        0);
    cr_assert_str_eq(a->r.pin, "h2:27017", "killCursors goes where the cursor lives");
    cr_assert_eq(a->n_cursors, 0);
    mongo__sessions_client_gone(a);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 0);
    free(a);
}

Test(mongo_session, cursors_per_client_are_bounded)
{
    mongo_client *a = new_client();
    fs.front.pool_size = 0;
    for (int i = 1; i <= MONGO_CLIENT_CURSORS + 3; i++) {
        request(a, BCON_NEW("find", BCON_UTF8("coll")));
        reply_cursor(a, "h1:27017", i);
    }
    cr_assert_eq(a->n_cursors, MONGO_CLIENT_CURSORS);
    char names[8][192];
    cr_assert_eq(queued(names, 8), 3, "the ones past the bound were killed");
    mongo__sessions_client_gone(a);
    free(a);
}

Test(mongo_session, transaction_pinned_then_aborted_when_left_open)
{
    mongo_client *a = new_client();
    bson_t *l1 = lsid_doc(1), *l2 = lsid_doc(2);
    cr_assert_eq(start_txn(a, l1, 4), 0);
    cr_assert(a->r.in_txn);
    cr_assert_str_eq(a->r.pin, "", "the first statement goes anywhere");
    mongo__sessions_note_sent(a, "h3:27017");
    reply_ok(a, 1);
    request(a, BCON_NEW("find", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(l1), "txnNumber",
                        BCON_INT64(4), "autocommit", BCON_BOOL(false)));
    cr_assert_str_eq(a->r.pin, "h3:27017", "the next ones follow it");
    /* a second session, committed: nothing to abort */
    start_txn(a, l2, 1);
    request(a, BCON_NEW("commitTransaction", BCON_INT32(1), "lsid", BCON_DOCUMENT(l2), "txnNumber",
                        BCON_INT64(1), "autocommit", BCON_BOOL(false)));
    mongo__sessions_client_gone(a);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 1);
    cr_assert_str_eq(names[0], "abortTransaction@h3:27017");
    mongo_internal_msg *im = gw_container_of(fs.front.internal.next, mongo_internal_msg, node);
    mongo_msg m;
    const char *why;
    mongo_msg_parse(im->msg, im->len, &m, &why);
    bson_t body;
    bson_init_static(&body, m.body, m.body_len);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &body, "txnNumber") && bson_iter_as_int64(&it) == 4);
    cr_assert(bson_iter_init_find(&it, &body, "autocommit") && !bson_iter_as_bool(&it));
    cr_assert(bson_iter_init_find(&it, &body, "lsid"));
    bson_destroy(l1);
    bson_destroy(l2);
    free(a);
}

Test(mongo_session, another_clients_open_session_is_refused)
{
    mongo_client *a = new_client(), *thief = new_client();
    bson_t *l = lsid_doc(7);
    /* the same session id, the document varied: still the same session */
    uint8_t id[16];
    memset(id, 7, sizeof id);
    bson_t *l_var = BCON_NEW("id", BCON_BIN(BSON_SUBTYPE_UUID, id, 16), "uid", BCON_BIN(0, id, 16));
    start_txn(a, l, 2);
    mongo__sessions_note_sent(a, "h3:27017");
    reply_ok(a, 1);
    cr_assert_eq(
        request(thief, BCON_NEW("commitTransaction", BCON_INT32(1), "lsid", BCON_DOCUMENT(l),
                                "txnNumber", BCON_INT64(2), "autocommit", BCON_BOOL(false))),
        251);
    cr_assert_eq(request(thief, BCON_NEW("find", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(l_var))),
                 251);
    cr_assert_eq(start_txn(thief, l, 3), 251);
    cr_assert_eq(request(thief, BCON_NEW("endSessions", "[", BCON_DOCUMENT(l), "]")), 251);
    cr_assert_eq(request(thief, BCON_NEW("killAllSessions", "[", "]")), 13);
    mongo__sessions_client_gone(thief);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 0, "the thief leaving aborts nothing");
    request(a, BCON_NEW("insert", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(l), "txnNumber",
                        BCON_INT64(2), "autocommit", BCON_BOOL(false)));
    cr_assert_str_eq(a->r.pin, "h3:27017", "the owner's transaction is still pinned");
    request(a, BCON_NEW("commitTransaction", BCON_INT32(1), "lsid", BCON_DOCUMENT(l), "txnNumber",
                        BCON_INT64(2), "autocommit", BCON_BOOL(false)));
    cr_assert_eq(start_txn(thief, l, 3), 0, "once committed, the session is free again");
    mongo__sessions_client_gone(thief);
    mongo__sessions_client_gone(a);
    bson_destroy(l);
    bson_destroy(l_var);
    free(a);
    free(thief);
}

Test(mongo_session, refused_start_leaves_nothing_to_abort)
{
    mongo_client *a = new_client();
    bson_t *l = lsid_doc(3);
    start_txn(a, l, 1);
    mongo__sessions_note_sent(a, "h3:27017");
    reply_ok(a, 0); /* e.g. the session's transaction number was already used */
    mongo__sessions_client_gone(a);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 0);
    bson_destroy(l);
    free(a);
}

Test(mongo_session, transactions_per_client_are_bounded)
{
    mongo_client *a = new_client();
    for (int i = 0; i < MONGO_CLIENT_TXNS; i++) {
        uint8_t id[16] = {0};
        memcpy(id, &i, sizeof i);
        bson_t *l = BCON_NEW("id", BCON_BIN(BSON_SUBTYPE_UUID, id, 16));
        cr_assert_eq(start_txn(a, l, 1), 0);
        bson_destroy(l);
    }
    bson_t *l = lsid_doc(0xee);
    cr_assert_eq(start_txn(a, l, 1), 261, "all open: no room");
    uint8_t id[16] = {0};
    bson_t *first = BCON_NEW("id", BCON_BIN(BSON_SUBTYPE_UUID, id, 16));
    request(a, BCON_NEW("abortTransaction", BCON_INT32(1), "lsid", BCON_DOCUMENT(first),
                        "txnNumber", BCON_INT64(1), "autocommit", BCON_BOOL(false)));
    cr_assert_eq(start_txn(a, l, 1), 0, "an ended one makes room");
    cr_assert_eq(a->n_txns, MONGO_CLIENT_TXNS);
    fs.front.stopping = true; /* no aborts queued */
    mongo__sessions_client_gone(a);
    fs.front.stopping = false;
    bson_destroy(l);
    bson_destroy(first);
    free(a);
}

Test(mongo_session, retryable_write_outside_a_transaction)
{
    mongo_client *a = new_client();
    bson_t *l = lsid_doc(9);
    request(a, BCON_NEW("insert", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(l), "txnNumber",
                        BCON_INT64(2)));
    cr_assert(a->r.retryable && !a->r.in_txn);
    bson_destroy(l);
    mongo__sessions_client_gone(a);
    free(a);
}

Test(mongo_session, session_fields_found_in_any_order_first_one_counts)
{
    mongo_client *a = new_client();
    bson_t *l = lsid_doc(5);
    /* the fields in another order than drivers send them */
    cr_assert_eq(request(a, BCON_NEW("insert", BCON_UTF8("c"), "autocommit", BCON_BOOL(false),
                                     "startTransaction", BCON_BOOL(true), "txnNumber",
                                     BCON_INT64(1), "lsid", BCON_DOCUMENT(l))),
                 0);
    cr_assert(a->r.in_txn && a->r.has_sid && !a->r.retryable);
    cr_assert_eq(a->n_txns, 1);
    /* a repeated field: the first one counts, as a lookup by key finds it */
    request(a,
            BCON_NEW("insert", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(l), "txnNumber", BCON_INT64(2),
                     "autocommit", BCON_BOOL(true), "autocommit", BCON_BOOL(false)));
    cr_assert(!a->r.in_txn && a->r.retryable);
    fs.front.stopping = true; /* no aborts queued */
    mongo__sessions_client_gone(a);
    fs.front.stopping = false;
    bson_destroy(l);
    free(a);
}
