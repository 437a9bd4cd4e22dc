/*
 * mongo_hello: Sluice answers the handshake (hello, isMaster, ismaster) itself, posing as a
 * mongos: drivers then treat it as one server, pin transactions to it and never look for a
 * topology behind it. The limits come from the backend (learned by the worker's hello).
 */
#include <string.h>
#include <strings.h>
#include <time.h>

#include "drivers/mongo/mongo_core.h"
#include "drivers/mongo/mongo_wire.h"

bool mongo__is_hello(const char *cmd)
{
    return strcmp(cmd, "hello") == 0 || strcasecmp(cmd, "ismaster") == 0;
}

/* No compression (clients then never send OP_COMPRESSED) and no topologyVersion (drivers then
 * do not use the streaming hello, which needs exhaust). */
static void hello_doc(mongo_client *c, const bson_t *request, bson_t *doc)
{
    const mongo_limits *l = &c->front->limits;
    bson_init(doc);
    bson_iter_t it;
    bool hello_ok = bson_iter_init_find(&it, request, "helloOk") && bson_iter_as_bool(&it);
    BSON_APPEND_BOOL(doc, "ismaster", true);
    BSON_APPEND_BOOL(doc, "isWritablePrimary", true);
    BSON_APPEND_UTF8(doc, "msg", "isdbgrid");
    BSON_APPEND_INT32(doc, "maxBsonObjectSize", l->max_bson);
    BSON_APPEND_INT32(doc, "maxMessageSizeBytes", l->max_message);
    BSON_APPEND_INT32(doc, "maxWriteBatchSize", l->max_batch);
    BSON_APPEND_DATE_TIME(doc, "localTime", (int64_t)time(NULL) * 1000);
    BSON_APPEND_INT32(doc, "logicalSessionTimeoutMinutes", l->session_timeout_min);
    BSON_APPEND_INT32(doc, "connectionId", c->conn_id);
    BSON_APPEND_INT32(doc, "minWireVersion", l->min_wire);
    BSON_APPEND_INT32(doc, "maxWireVersion",
                      l->max_wire < MONGO_MAX_WIRE_VERSION ? l->max_wire : MONGO_MAX_WIRE_VERSION);
    BSON_APPEND_BOOL(doc, "readOnly", false);
    if (hello_ok)
        BSON_APPEND_BOOL(doc, "helloOk", true);
    /* A driver in load-balanced mode (loadBalanced=true) pins each cursor and transaction to one
     * connection, which is how Sluice keeps them (mongo_session.c); it requires a serviceId. */
    if (bson_iter_init_find(&it, request, "loadBalanced") && bson_iter_as_bool(&it))
        BSON_APPEND_OID(doc, "serviceId", &c->front->service_id);
    mongo__auth_hello(c, request, doc);
    BSON_APPEND_DOUBLE(doc, "ok", 1.0);
}

uint8_t *mongo__hello_reply(mongo_client *c, const uint8_t *msg, size_t len, size_t *out_len)
{
    mongo_header h = mongo_header_read(msg);
    const char *why;
    bson_t request, doc;
    uint8_t *m = NULL;
    if (h.opcode == MONGO_OP_QUERY) {
        mongo_query q;
        if (mongo_query_parse(msg, len, &q, &why) != 0 ||
            !bson_init_static(&request, q.query, q.query_len))
            return NULL;
        hello_doc(c, &request, &doc);
        m = mongo_build_reply(&doc, mongo__next_id(c->front), h.request_id, out_len);
    } else {
        mongo_msg pm;
        if (mongo_msg_scan(msg, len, &pm, &why) != 0 ||
            !bson_init_static(&request, pm.body, pm.body_len))
            return NULL;
        hello_doc(c, &request, &doc);
        m = mongo_build_msg(&doc, mongo__next_id(c->front), h.request_id,
                            (pm.flags & MONGO_MSG_CHECKSUM) != 0, out_len);
    }
    bson_destroy(&doc);
    return m;
}
