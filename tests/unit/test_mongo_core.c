/* Unit tests for the MongoDB protocol core, driven with bytes through a fake shell (no loop, no
 * sockets, no libmongoc): the handshake answered locally, routing of requests and replies with
 * their ids rewritten, cursor ownership across clients, bounds on both sides. */
#include <bson/bson.h>
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"
#include "tests/unit/test_mongo_fake_shell.h"

static fake_shell fs;

/* What reached the fake backends: every request, as the core wrote it. */
static uint8_t seen[16][512];
static size_t seen_len[16];
static int n_seen;
/* What the next answer is: the responder's choice. */
static enum { ANSWER_OK, ANSWER_CURSOR, ANSWER_BAD_LENGTH } answer;

static void note(const uint8_t *msg, size_t len)
{
    if (n_seen < 16) {
        size_t n = len < sizeof seen[0] ? len : sizeof seen[0];
        memcpy(seen[n_seen], msg, n);
        seen_len[n_seen] = len;
    }
    n_seen++;
}

static void responder(fake_shell *f, fake_conn *b, const uint8_t *msg, size_t len)
{
    note(msg, len);
    mongo_header h = mongo_header_read(msg);
    if (answer == ANSWER_BAD_LENGTH) {
        uint8_t hdr[16];
        memcpy(hdr, msg, 16);
        memcpy(hdr + 8, &h.request_id, 4);
        int32_t bad = 5; /* less than a header */
        memcpy(hdr, &bad, 4);
        mongo_fake_backend_send(b, hdr, sizeof hdr);
        return;
    }
    if (answer == ANSWER_CURSOR) {
        bson_t *doc = BCON_NEW("cursor", "{", "id", BCON_INT64(555), "ns", BCON_UTF8("db.coll"),
                               "firstBatch", "[", "]", "}", "ok", BCON_DOUBLE(1));
        size_t n;
        uint8_t *m = mongo_build_msg(doc, 9001, h.request_id, false, &n);
        bson_destroy(doc);
        mongo_fake_backend_send(b, m, n);
        free(m);
        return;
    }
    mongo_fake_answer_ok(f, b, msg, len);
}

static void setup(void)
{
    mongo_fake_init(&fs);
    fs.responder = responder;
    n_seen = 0;
    answer = ANSWER_OK;
}

static void teardown(void)
{
    mongo_fake_free(&fs);
}

TestSuite(mongo_core, .init = setup, .fini = teardown);

#define send_doc mongo_fake_send_doc

/* The next reply to c: its header, and its body copied into *body. */
static mongo_header next_reply(fake_conn *c, bson_t *body)
{
    mongo_header h;
    cr_assert(mongo_fake_reply_doc(c, &h, body), "no reply (or not an OP_MSG)");
    return h;
}

static int64_t get_int(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, doc, key), "no %s", key);
    return bson_iter_as_int64(&it);
}

/* The next reply to c answers request id and carries key: its value. c stays open. */
static int64_t reply_value(fake_conn *c, int32_t id, const char *key)
{
    bson_t body;
    mongo_header h = next_reply(c, &body);
    cr_assert_eq(h.response_to, id);
    int64_t v = get_int(&body, key);
    bson_destroy(&body);
    cr_assert(!c->closing);
    return v;
}

Test(mongo_core, hello_is_answered_by_sluice_itself)
{
    fake_conn *c = mongo_fake_client(&fs);
    send_doc(
        c, BCON_NEW("hello", BCON_INT32(1), "helloOk", BCON_BOOL(true), "$db", BCON_UTF8("admin")),
        7);
    bson_t body;
    mongo_header h = next_reply(c, &body);
    cr_assert_eq(h.response_to, 7);
    cr_assert_eq(get_int(&body, "isWritablePrimary"), 1);
    cr_assert_eq(get_int(&body, "maxWireVersion"), 17);
    cr_assert_eq(get_int(&body, "ok"), 1);
    bson_destroy(&body);
    cr_assert_eq(n_seen, 0, "the hello reached a backend");
    /* Once the limits are known, the next hello does not even wait for a connection. */
    unsigned connects = fs.n_connects;
    send_doc(c, BCON_NEW("isMaster", BCON_INT32(1), "$db", BCON_UTF8("admin")), 8);
    h = next_reply(c, &body);
    cr_assert_eq(h.response_to, 8);
    bson_destroy(&body);
    cr_assert_eq(fs.n_connects, connects);
    cr_assert_eq(n_seen, 0);
}

Test(mongo_core, a_find_goes_to_a_backend_and_its_reply_comes_back)
{
    fake_conn *c = mongo_fake_client(&fs);
    send_doc(c, BCON_NEW("find", BCON_UTF8("coll"), "$db", BCON_UTF8("db")), 77);
    cr_assert_eq(n_seen, 1);
    mongo_header out = mongo_header_read(seen[0]);
    cr_assert_neq(out.request_id, 77, "the client's requestID went to the server");
    cr_assert_neq(out.request_id, 0);
    cr_assert_eq(out.response_to, 0);
    bson_t body;
    mongo_header h = next_reply(c, &body);
    cr_assert_eq(h.response_to, 77, "the reply is not routed to the client's request");
    cr_assert_neq(h.request_id, 4242, "the server's requestID went to the client");
    cr_assert_eq(get_int(&body, "ok"), 1);
    bson_destroy(&body);
    cr_assert(!c->closing);
}

Test(mongo_core, another_clients_cursor_is_cursor_not_found)
{
    fake_conn *a = mongo_fake_client(&fs), *b = mongo_fake_client(&fs);
    answer = ANSWER_CURSOR;
    send_doc(a, BCON_NEW("find", BCON_UTF8("coll"), "$db", BCON_UTF8("db")), 1);
    bson_t body;
    next_reply(a, &body);
    bson_destroy(&body);
    int before = n_seen;
    answer = ANSWER_OK;
    send_doc(b,
             BCON_NEW("getMore", BCON_INT64(555), "collection", BCON_UTF8("coll"), "$db",
                      BCON_UTF8("db")),
             2);
    mongo_header h = next_reply(b, &body);
    cr_assert_eq(h.response_to, 2);
    cr_assert_eq(get_int(&body, "code"), 43);
    cr_assert_eq(get_int(&body, "ok"), 0);
    bson_destroy(&body);
    cr_assert_eq(n_seen, before, "the foreign getMore reached the server");
    /* Its owner still may. */
    send_doc(a,
             BCON_NEW("getMore", BCON_INT64(555), "collection", BCON_UTF8("coll"), "$db",
                      BCON_UTF8("db")),
             3);
    cr_assert_eq(n_seen, before + 1);
}

static void lying_length(int32_t len, int code)
{
    fake_conn *c = mongo_fake_client(&fs);
    int32_t hdr[4] = {len, 99, 0, MONGO_OP_MSG};
    mongo_fake_client_send(c, hdr, sizeof hdr);
    mongo_fake_run(&fs);
    bson_t body;
    mongo_header h = next_reply(c, &body);
    cr_assert_eq(h.response_to, 99);
    cr_assert_eq(get_int(&body, "code"), code);
    bson_destroy(&body);
    cr_assert(c->closed, "the connection stays open after a message it cannot frame");
    cr_assert_eq(n_seen, 0);
}

Test(mongo_core, an_oversize_message_gets_an_error_and_a_close)
{
    lying_length(0x7fffffff, 10334);
}

Test(mongo_core, a_length_shorter_than_a_header_gets_an_error_and_a_close)
{
    lying_length(3, 22);
}

Test(mongo_core, a_reply_with_a_bad_length_closes_the_backend_and_fails_the_client)
{
    fake_conn *c = mongo_fake_client(&fs);
    answer = ANSWER_BAD_LENGTH;
    send_doc(c, BCON_NEW("find", BCON_UTF8("coll"), "$db", BCON_UTF8("db")), 5);
    bson_t body;
    mongo_header h = next_reply(c, &body);
    cr_assert_eq(h.response_to, 5);
    cr_assert_eq(get_int(&body, "code"), 6);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &body, "errmsg"));
    cr_assert(strstr(bson_iter_utf8(&it, NULL), "invalid message length"), "%s",
              bson_iter_utf8(&it, NULL));
    bson_destroy(&body);
    cr_assert(!c->closing, "the client is not to blame");
    int backends = 0, closed = 0;
    for (fake_conn *x = fs.conns; x; x = x->next) {
        if (x != c) {
            backends++;
            closed += x->closed;
        }
    }
    cr_assert_eq(backends, 1);
    cr_assert_eq(closed, 1, "the backend that sent it stays open");
    /* The client goes on with a new connection. */
    answer = ANSWER_OK;
    send_doc(c, BCON_NEW("ping", BCON_INT32(1), "$db", BCON_UTF8("admin")), 6);
    h = next_reply(c, &body);
    cr_assert_eq(h.response_to, 6);
    cr_assert_eq(get_int(&body, "ok"), 1);
    bson_destroy(&body);
}

Test(mongo_core, every_end_reason_has_a_name)
{
    for (int why = MONGO_END_IO; why <= MONGO_END_QUERY_TIMEOUT; why++)
        cr_assert_str_neq(mongo_end_str((mongo_end)why), "unknown", "reason %d", why);
    cr_assert_str_eq(mongo_end_str((mongo_end)999), "unknown");
}

Test(mongo_core, a_client_left_waiting_gets_query_wait_timeout)
{
    fs.front.query_wait_timeout_ms = 1000;
    fs.hold_connects = true; /* no connection ever comes */
    fake_conn *c = mongo_fake_client(&fs);
    send_doc(c, BCON_NEW("ping", BCON_INT32(1), "$db", BCON_UTF8("admin")), 11);
    size_t len;
    cr_assert_null(mongo_fake_next_reply(c, &len), "answered before a connection came");
    fs.now += 1500;
    mongo_core_tick(&fs.front, fs.now);
    mongo_fake_run(&fs);
    cr_assert_eq(reply_value(c, 11, "code"), 262);
}

Test(mongo_core, more_to_come_is_fenced_by_a_ping_before_the_connection_is_reused)
{
    fs.front.pool_size = 1;
    fake_conn *c = mongo_fake_client(&fs);
    size_t n;
    bson_t *doc = BCON_NEW("insert", BCON_UTF8("c"), "documents", "[", "{", "x", BCON_INT32(1), "}",
                           "]", "$db", BCON_UTF8("db"));
    uint8_t *m = mongo_build_msg(doc, 21, 0, false, &n);
    bson_destroy(doc);
    uint32_t flags = MONGO_MSG_MORE_TO_COME; /* little-endian, as the host */
    memcpy(m + 16, &flags, 4);
    mongo_fake_client_send(c, m, n);
    free(m);
    mongo_fake_run(&fs);
    cr_assert_eq(n_seen, 2, "the request and Sluice's ping");
    mongo_msg pm;
    const char *why;
    cr_assert_eq(mongo_msg_scan(seen[1], seen_len[1], &pm, &why), 0, "%s", why);
    cr_assert_str_eq(pm.command, "ping");
    size_t len;
    cr_assert_null(mongo_fake_next_reply(c, &len), "a moreToCome request got a reply");
    send_doc(c, BCON_NEW("ping", BCON_INT32(1), "$db", BCON_UTF8("admin")), 22);
    bson_t body;
    cr_assert_eq(next_reply(c, &body).response_to, 22);
    bson_destroy(&body);
}

Test(mongo_core, a_message_nobody_asked_for_closes_the_backend)
{
    fake_conn *c = mongo_fake_client(&fs);
    send_doc(c, BCON_NEW("ping", BCON_INT32(1), "$db", BCON_UTF8("admin")), 31);
    bson_t body;
    next_reply(c, &body);
    bson_destroy(&body);
    fake_conn *b = NULL;
    for (fake_conn *x = fs.conns; x; x = x->next)
        if (x != c)
            b = x;
    cr_assert_not_null(b);
    cr_assert(!b->closing, "an idle connection went away");
    bson_t *doc = BCON_NEW("ok", BCON_DOUBLE(1));
    size_t n;
    uint8_t *m = mongo_build_msg(doc, 5, 12345, false, &n);
    bson_destroy(doc);
    mongo_fake_backend_send(b, m, n);
    free(m);
    mongo_fake_run(&fs);
    cr_assert(b->closed);
    cr_assert(!c->closing);
}

Test(mongo_core, a_paused_front_holds_requests_until_resume)
{
    fake_conn *c = mongo_fake_client(&fs);
    send_doc(c, BCON_NEW("ping", BCON_INT32(1), "$db", BCON_UTF8("admin")), 21);
    cr_assert_eq(reply_value(c, 21, "ok"), 1);
    int before = n_seen;
    fs.paused = true;
    send_doc(c, BCON_NEW("ping", BCON_INT32(1), "$db", BCON_UTF8("admin")), 22);
    mongo_core_tick(&fs.front, fs.now);
    mongo_fake_run(&fs);
    size_t len;
    cr_assert_null(mongo_fake_next_reply(c, &len), "answered while paused");
    cr_assert_eq(n_seen, before, "a request reached a backend while paused");
    /* The console's resume while still paused (PAUSE of everything) changes nothing. */
    mongo_core_resume(&fs.front);
    mongo_fake_run(&fs);
    cr_assert_eq(n_seen, before);
    fs.paused = false;
    mongo_core_resume(&fs.front);
    mongo_fake_run(&fs);
    cr_assert_eq(reply_value(c, 22, "ok"), 1);
}

Test(mongo_core, a_disabled_front_closes_new_clients_at_accept)
{
    fake_conn *old = mongo_fake_client(&fs);
    fs.disabled = true;
    fake_conn *c = mongo_fake_client(&fs);
    cr_assert(c->closing, "a client of a disabled entry was let in");
    cr_assert(!old->closing, "DISABLE closed a client already in");
    fs.disabled = false;
    c = mongo_fake_client(&fs);
    cr_assert(!c->closing);
}
