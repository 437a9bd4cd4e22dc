/* Unit tests for the cursor and transaction tables: pins, owners, and what a leaving client
 * leaves to be closed on the server (queued as Sluice's own messages while no connection is
 * open). */
#include <bson/bson.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_int.h"
#include "drivers/mongo/mongo_wire.h"

static uv_loop_t loop;
static cfg conf;
static gw_ctx ctx;
static mongo_gateway gw;
static mongo_front front;

static void setup(void)
{
    uv_loop_init(&loop);
    conf.log_level = CFG_LOG_ERROR;
    ctx = (gw_ctx){.loop = &loop, .cfg = &conf};
    gw = (mongo_gateway){.ctx = &ctx};
    memset(&front, 0, sizeof front);
    front.gw = &gw;
    front.pool_size = 0; /* nothing is connected: Sluice's own messages stay queued */
    snprintf(front.name, sizeof front.name, "t");
    gw_list_init(&front.clients);
    gw_list_init(&front.backends);
    gw_list_init(&front.idle);
    gw_list_init(&front.waiters);
    gw_list_init(&front.internal);
    mongo__sessions_init(&front);
}

static void teardown(void)
{
    gw_list *it, *tmp;
    gw_list_foreach_safe(it, tmp, &front.internal)
    {
        mongo_internal_msg *im = gw_container_of(it, mongo_internal_msg, node);
        gw_list_remove(it);
        free(im->msg);
        free(im);
    }
    mongo__sessions_free(&front);
    uv_loop_close(&loop);
}

static mongo_client *new_client(void)
{
    mongo_client *c = calloc(1, sizeof *c);
    c->front = &front;
    gw_list_init(&c->cursors);
    gw_list_init(&c->txns);
    gw_list_init(&c->wait_node);
    return c;
}

/* Runs body (BCON) as c's request, as the client code does before forwarding it. */
static void request(mongo_client *c, bson_t *body)
{
    bson_iter_t it;
    memset(&c->r, 0, sizeof c->r);
    bson_iter_init(&it, body);
    bson_iter_next(&it);
    snprintf(c->r.cmd, sizeof c->r.cmd, "%s", bson_iter_key(&it));
    mongo__sessions_note_request(c, body);
    bson_destroy(body);
}

static void reply_cursor(mongo_client *c, const char *host, int64_t id)
{
    bson_t *r = BCON_NEW("cursor", "{", "id", BCON_INT64(id), "ns", BCON_UTF8("db.coll"), "}", "ok",
                         BCON_DOUBLE(1));
    mongo__sessions_note_reply(c, host, r);
    bson_destroy(r);
}

/* The command names Sluice queued for itself, in order, as "name:first value". */
static int queued(char names[][192], int max)
{
    int n = 0;
    for (gw_list *it = front.internal.next; it != &front.internal && n < max; it = it->next) {
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

TestSuite(mongo_session, .init = setup, .fini = teardown);

Test(mongo_session, cursor_pinned_and_owned_by_its_last_user)
{
    mongo_client *a = new_client(), *b = new_client();
    request(a, BCON_NEW("find", BCON_UTF8("coll"), "$db", BCON_UTF8("db")));
    reply_cursor(a, "h1:27017", 77);
    request(b, BCON_NEW("getMore", BCON_INT64(77), "collection", BCON_UTF8("coll")));
    cr_assert_str_eq(b->r.pin, "h1:27017", "a getMore goes to the cursor's server");
    mongo__sessions_client_gone(a);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 0, "a is not the cursor's last user");
    mongo__sessions_client_gone(b);
    cr_assert_eq(queued(names, 4), 1);
    cr_assert_str_eq(names[0], "killCursors@h1:27017");
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
    request(a, BCON_NEW("killCursors", BCON_UTF8("coll"), "cursors", "[", BCON_INT64(6), "]"));
    cr_assert_str_eq(a->r.pin, "h2:27017", "killCursors goes where the cursor lives");
    mongo__sessions_client_gone(a);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 0);
    free(a);
}

Test(mongo_session, transaction_pinned_then_aborted_when_left_open)
{
    mongo_client *a = new_client(), *b = new_client();
    bson_t *l1 = lsid_doc(1), *l2 = lsid_doc(2);
    request(a, BCON_NEW("insert", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(l1), "txnNumber",
                        BCON_INT64(4), "startTransaction", BCON_BOOL(true), "autocommit",
                        BCON_BOOL(false)));
    cr_assert(a->r.in_txn);
    cr_assert_str_eq(a->r.pin, "", "the first statement goes anywhere");
    mongo__sessions_note_sent(a, "h3:27017");
    request(b, BCON_NEW("find", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(l1), "txnNumber",
                        BCON_INT64(4), "autocommit", BCON_BOOL(false)));
    cr_assert_str_eq(b->r.pin, "h3:27017", "the next ones follow it, from any connection");
    /* a second session, committed: nothing to abort */
    request(a, BCON_NEW("insert", BCON_UTF8("c"), "lsid", BCON_DOCUMENT(l2), "txnNumber",
                        BCON_INT64(1), "startTransaction", BCON_BOOL(true), "autocommit",
                        BCON_BOOL(false)));
    request(a, BCON_NEW("commitTransaction", BCON_INT32(1), "lsid", BCON_DOCUMENT(l2), "txnNumber",
                        BCON_INT64(1), "autocommit", BCON_BOOL(false)));
    mongo__sessions_client_gone(a);
    char names[4][192];
    cr_assert_eq(queued(names, 4), 0, "b used the open transaction last");
    mongo__sessions_client_gone(b);
    cr_assert_eq(queued(names, 4), 1);
    cr_assert_str_eq(names[0], "abortTransaction@h3:27017");
    mongo_internal_msg *im = gw_container_of(front.internal.next, mongo_internal_msg, node);
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
    free(b);
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
