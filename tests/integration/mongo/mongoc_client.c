/*
 * A libmongoc client for the integration tests: CRUD, a cursor walked in small batches and a
 * committed transaction against the URI in argv[1]. Prints what failed and exits 1, or exits 0.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>

#define N_DOCS 1000

static int fail(const char *what, const bson_error_t *err)
{
    fprintf(stderr, "%s: %s\n", what, err ? err->message : "wrong result");
    return 1;
}

static int crud(mongoc_collection_t *coll)
{
    bson_error_t err;
    mongoc_collection_drop(coll, NULL);
    bson_t *docs[N_DOCS];
    for (int i = 0; i < N_DOCS; i++)
        docs[i] = BCON_NEW("k", BCON_INT32(i), "even", BCON_BOOL(i % 2 == 0));
    bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, N_DOCS, NULL, NULL, &err);
    for (int i = 0; i < N_DOCS; i++)
        bson_destroy(docs[i]);
    if (!ok)
        return fail("insert_many", &err);

    bson_t *filter = bson_new(), *opts = BCON_NEW("batchSize", BCON_INT32(7));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    long sum = 0, n = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "k"))
            sum += bson_iter_int32(&it);
        n++;
    }
    ok = !mongoc_cursor_error(cur, &err);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    if (!ok)
        return fail("find", &err);
    if (n != N_DOCS || sum != (long)N_DOCS * (N_DOCS - 1) / 2)
        return fail("find: documents seen", NULL);

    bson_t *sel = BCON_NEW("even", BCON_BOOL(true));
    bson_t *upd = BCON_NEW("$set", "{", "tag", BCON_UTF8("e"), "}");
    bson_t reply;
    ok = mongoc_collection_update_many(coll, sel, upd, NULL, &reply, &err);
    bson_iter_t it;
    bool right = ok && bson_iter_init_find(&it, &reply, "modifiedCount") &&
                 bson_iter_as_int64(&it) == N_DOCS / 2;
    bson_destroy(&reply);
    bson_destroy(upd);
    if (!right)
        return fail("update_many", ok ? NULL : &err);
    ok = mongoc_collection_delete_many(coll, sel, NULL, &reply, &err);
    right = ok && bson_iter_init_find(&it, &reply, "deletedCount") &&
            bson_iter_as_int64(&it) == N_DOCS / 2;
    bson_destroy(&reply);
    bson_destroy(sel);
    int64_t left = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &err);
    bson_destroy(filter);
    if (!right || left != N_DOCS / 2)
        return fail("delete_many", ok ? NULL : &err);
    return 0;
}

static int transaction(mongoc_client_t *client, mongoc_collection_t *coll)
{
    bson_error_t err;
    mongoc_client_session_t *s = mongoc_client_start_session(client, NULL, &err);
    if (!s)
        return fail("start_session", &err);
    bson_t opts = BSON_INITIALIZER, reply;
    int rc = 0;
    if (!mongoc_client_session_append(s, &opts, &err) ||
        !mongoc_client_session_start_transaction(s, NULL, &err))
        rc = fail("start_transaction", &err);
    bson_t *doc = BCON_NEW("k", BCON_INT32(-1));
    if (!rc && !mongoc_collection_insert_one(coll, doc, &opts, NULL, &err))
        rc = fail("insert in transaction", &err);
    if (!rc && !mongoc_client_session_commit_transaction(s, &reply, &err))
        rc = fail("commit", &err);
    if (!rc)
        bson_destroy(&reply);
    bson_destroy(doc);
    bson_destroy(&opts);
    mongoc_client_session_destroy(s);
    bson_t *filter = BCON_NEW("k", BCON_INT32(-1));
    if (!rc && mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &err) != 1)
        rc = fail("committed document", NULL);
    bson_destroy(filter);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MONGODB_URI\n", argv[0]);
        return 2;
    }
    mongoc_init();
    bson_error_t err;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &err);
    if (!uri)
        return fail("uri", &err);
    mongoc_client_t *client = mongoc_client_new_from_uri(uri);
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
    int rc = mongoc_client_command_simple(client, "admin", ping, NULL, NULL, &err)
                 ? 0
                 : fail("ping", &err);
    bson_destroy(ping);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "sluice_test", "mongoc");
    if (!rc)
        rc = crud(coll);
    if (!rc)
        rc = transaction(client, coll);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    if (!rc)
        printf("ok\n");
    return rc;
}
