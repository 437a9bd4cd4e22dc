/*
 * mongo_core.h: the MongoDB front end's protocol core, without I/O.
 *
 * Layering (top to bottom):
 *   core   mongo_client.c (framing of client messages, handling, error replies, reply routing),
 *          mongo_backend.c (framing and routing of replies), mongo_pool.c (the pool and its
 *          waiters), mongo_session.c (cursor and transaction ownership), mongo_hello.c,
 *          mongo_core.c (entry points, buffers, end reasons), mongo_wire.c, mongo_redact.c.
 *          Includes neither <uv.h> nor <mongoc/mongoc.h> (libbson only); built as libmongo_core.
 *   seam   mongo_shell.h: the only calls the core makes downwards (write, read on/off, close,
 *          connect, clock, log). The shell calls up only through the mongo_core_* entry points
 *          declared at the end of this file.
 *   shell  mongo_io.c (client and backend sockets: libuv handles, reads, writes, closes),
 *          mongo_worker.c (libmongoc on its thread), mongo_gateway.c (listeners, timer,
 *          settings, start and stop); built as libmongo with the core. Tests and fuzzers link
 *          the core with a fake shell instead.
 *
 * Objects: one mongo_front per [mongodb] line; clients and backends are allocated by the core,
 * each paired with a shell connection (its io), and freed only when the shell reports the
 * connection closed (after the handle's close callback).
 */
#ifndef SLUICE_MONGO_CORE_H
#define SLUICE_MONGO_CORE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/cfg.h"
#include "drivers/mongo/mongo_shell.h"
#include "gateway/buf.h"
#include "gateway/htable.h"
#include "gateway/list.h"
#include "gateway/stats.h"

struct mongo_front;
struct mongo_backend;
struct mongo_shell_conn;
struct mongo_shell_front;

/* Always-on assertion for states that must be impossible: logs and aborts. */
#define mongo_assert(cond)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            mongo__assert_fail(#cond, __FILE__, __LINE__);                                         \
    } while (0)
_Noreturn void mongo__assert_fail(const char *what, const char *file, int line);

#define MONGO_HOST_LEN      136 /* "host:port" as libmongoc spells it ("[::1]:27017" for IPv6) */
#define MONGO_LSID_MAX      256 /* an lsid document: {id: UUID} and, for internal sessions, more */
#define MONGO_READ_CHUNK    GW_BUF_LARGE /* a message's buffer: the loop pool's large block */
#define MONGO_WRITE_HIGH    (1u << 20)   /* a client is not read while more is unsent to it */
#define MONGO_DEFAULT_MAX   48000000     /* maxMessageSizeBytes until the backend tells */
#define MONGO_TIMEOUT_GRACE 1000         /* ms past query_timeout before a reply is given up */
#define MONGO_SID_LEN       16           /* an lsid's id: a UUID */
/* What one client may keep open through Sluice, so that its entries stay bounded: more cursors
 * are killed as they open, more transactions are refused (see mongo_session.c). */
#define MONGO_CLIENT_CURSORS 1000
#define MONGO_CLIENT_TXNS    100

/* What the backend told us at handshake; the hello Sluice answers clients with. */
typedef struct mongo_limits {
    int32_t max_bson, max_message, max_batch, session_timeout_min;
    int32_t min_wire, max_wire;
} mongo_limits;

/*
 * A client connection's state. The state says which front lists the client is on (clients from
 * IDLE to DRAINING, waiters while WAITING); only client_set_state (mongo_client.c) changes it.
 */
typedef enum mongo_client_state {
    MONGO_CL_NEW,      /* transient: allocated, not on any list yet (calloc's zero) */
    MONGO_CL_IDLE,     /* no request in hand; reading the next one (on front->clients only) */
    MONGO_CL_WAITING,  /* a request in hand (c->req), queued on front->waiters for a connection */
    MONGO_CL_ACTIVE,   /* its request is out on c->backend; waiting for the reply, or for the
                          write to finish when the request is moreToCome */
    MONGO_CL_DRAINING, /* an error reply is being written; the connection closes after it */
    MONGO_CL_CLOSING,  /* transient: handle closing, off every list, freed when the shell reports it
                          closed */
} mongo_client_state;

/* Why a client or backend connection ended: every close records one, logged (mongo_end_str),
 * and for a backend put in the error reply of the client whose request it carried. */
typedef enum mongo_end {
    /* either side */
    MONGO_END_IO,       /* a read or write failed (the detail says how) */
    MONGO_END_NOMEM,    /* an allocation failed: this connection only */
    MONGO_END_SHUTDOWN, /* Sluice is stopping */
    MONGO_END_TLS,      /* the TLS handshake or a record failed (the detail says why) */
    /* clients */
    MONGO_END_CLIENT_LEFT,
    MONGO_END_PROTOCOL, /* an error reply was sent, then the connection closed */
    MONGO_END_REFUSED,  /* over max_client_conn or DISABLEd: closed at once (no way to say) */
    /* backends */
    MONGO_END_SERVER_CLOSED, /* the server closed the connection */
    MONGO_END_BAD_LENGTH,    /* a reply's length is out of bounds: the stream cannot be framed */
    MONGO_END_UNEXPECTED,    /* a reply nobody asked for, or to another request */
    MONGO_END_RETIRED,       /* the server stepped down or is shutting down */
    MONGO_END_POOL_TRIM,     /* more connections than pool_size (after a reload) */
    MONGO_END_TRADE,         /* closed to make room for a connection to another server */
    MONGO_END_QUERY_TIMEOUT, /* no reply within query_timeout and its grace */
    MONGO_END_IDLE,          /* idle longer than the line's max_idle_time */
} mongo_end;

/* A fixed string for why (never NULL). */
const char *mongo_end_str(mongo_end why);

/* What Sluice must remember of the request in hand after it has gone to a backend. */
typedef struct mongo_request {
    int32_t client_id;        /* the client's requestID, restored in the reply's responseTo */
    bool more_to_come;        /* moreToCome: no reply will come */
    bool checksum;            /* the client uses checksums: replies Sluice makes carry one too */
    bool in_txn;              /* autocommit:false: part of a multi-statement transaction */
    bool retryable;           /* a write with txnNumber outside a transaction */
    bool starts_txn;          /* startTransaction: the first statement of a transaction */
    char cmd[32];             /* its command name (truncated) */
    int64_t cursor;           /* getMore: the cursor it continues */
    char pin[MONGO_HOST_LEN]; /* the server it must go to (cursor or transaction), or "" */
    uint8_t lsid[MONGO_LSID_MAX];
    uint32_t lsid_len;          /* 0: no lsid (or one too large to track) */
    uint8_t sid[MONGO_SID_LEN]; /* the lsid's id, what identifies the session to the server */
    bool has_sid;
} mongo_request;

/* Why Sluice answers a request itself instead of forwarding it. */
typedef struct mongo_refusal {
    int code;
    const char *code_name;
    char errmsg[160];
} mongo_refusal;

typedef struct mongo_client {
    struct mongo_shell_conn *io; /* the shell's side of the connection (its socket) */
    struct mongo_front *front;
    gw_list node;      /* front->clients */
    gw_list wait_node; /* front->waiters, while MONGO_CL_WAITING */
    mongo_client_state state;
    uint64_t since; /* when the current state began (loop clock) */
    uint8_t *in;    /* received bytes: at most one whole message plus a read's worth */
    size_t in_len, in_cap;
    uint8_t *req; /* the request in hand (a whole message), owned until sent */
    size_t req_len, req_cap;
    mongo_request r;
    struct mongo_backend *backend; /* while MONGO_CL_ACTIVE */
    gw_list cursors;               /* mongo_cursor.owner_node: cursors it opened */
    gw_list txns;                  /* mongo_txn.owner_node: transactions it started */
    uint32_t n_cursors, n_txns;
    size_t pending_writes; /* bytes queued towards the client */
    int32_t conn_id;       /* the connectionId its hello reports */
    bool reading;          /* asked the shell to read */
    /* The client's input ended (it left, or a read or TLS record failed) while a request of
     * its was under way: it is closed once that request is answered, as it would have been had
     * reading been off meanwhile, so the reply still registers the cursor it opens (and its
     * close then kills it). gone_detail is static text or the TLS session's. */
    bool gone;
    mongo_end gone_why;
    const char *gone_detail;
    /* Login to Sluice (mongo_auth.c), when the front's auth_type at accept asked for one. */
    bool need_auth;          /* only the handshake and the SASL commands until authed */
    bool authed;             /* logged in (as auth_user) */
    uint8_t auth_failures;   /* failed logins on this connection, for good */
    struct mongo_sasl *sasl; /* the conversation under way, NULL between them */
    char *auth_user;         /* who it logged in as, for the log; NULL when not known */
    /* Statistics, monotonic µs (gw_stats_now_us): connected; entered MONGO_CL_WAITING; the
     * request in hand arrived; its transaction's first statement arrived (0: none). */
    uint64_t connect_us, wait_start_us, req_start_us, xact_start_us;
    const char *refusal; /* static text: the next message is answered with it, then close */
} mongo_client;

/* A backend connection's state. It says which front lists the connection is on (backends from
 * BUSY to IDLE, idle while IDLE); only mongo__backend_set_state (mongo_pool.c) changes it. */
typedef enum mongo_backend_state {
    MONGO_BE_NEW,     /* transient: allocated, not on any list yet (calloc's zero) */
    MONGO_BE_IDLE,    /* on front->idle; still read, to notice the server closing */
    MONGO_BE_BUSY,    /* carrying one request: b->client's, an orphan's (client gone, reply
                         discarded), or one of Sluice's own (b->internal); also a new connection
                         until the pool places it */
    MONGO_BE_CLOSING, /* transient: handle closing, off every list, freed when the shell reports it
                         closed */
} mongo_backend_state;

typedef struct mongo_backend {
    struct mongo_shell_conn *io; /* the shell's side of the connection (its socket) */
    struct mongo_front *front;
    gw_list node;      /* front->backends */
    gw_list idle_node; /* front->idle, while MONGO_BE_IDLE */
    mongo_backend_state state;
    mongo_client *client; /* whose request it carries, NULL when idle or orphaned */
    char host[MONGO_HOST_LEN];
    int32_t expect_id;   /* requestID Sluice gave the request in flight */
    uint64_t busy_since; /* loop clock when the request went out */
    uint64_t idle_since; /* loop clock when it last went idle (max_idle_time) */
    bool awaiting_write; /* a moreToCome request: done when its write completes */
    bool internal;       /* carries a request of Sluice's own (killCursors, abortTransaction, or
                            the ping that follows a moreToCome request) */
    int32_t stray_id;    /* requestID of the last moreToCome request: a reply to it (a server
                            may answer one anyway) is dropped, 0 when none */
    bool retire;         /* closed instead of going back to the pool */
    uint8_t *in;
    size_t in_len, in_cap;
} mongo_backend;

/*
 * A cursor opened through Sluice: pinned to the server that created it, and owned by the client
 * connection whose command opened it, for good (mongo_session.c says why). When the owner leaves
 * with the cursor still open, Sluice kills it.
 */
typedef struct mongo_cursor {
    gw_hnode hnode; /* front->cursors, by (owner, id) */
    gw_list owner_node;
    mongo_client *owner;
    int64_t id;
    uint64_t last_used;
    char host[MONGO_HOST_LEN];
    char db[128];
    char coll[256];
    uint8_t lsid[MONGO_LSID_MAX];
    uint32_t lsid_len;
} mongo_cursor;

/*
 * A transaction (or the last one) a client started in a logical session: pinned to the server
 * that ran its first statement, from startTransaction until the session starts another. Owned
 * by that client for good; the owner leaving before commit/abort gets it aborted. While open,
 * the session is the owner's alone (front->open_txns).
 */
typedef struct mongo_txn {
    gw_hnode hnode;      /* front->txns, by (owner, sid) */
    gw_hnode open_hnode; /* front->open_txns, by sid, while !ended */
    gw_list owner_node;
    mongo_client *owner;
    int64_t txn_number;
    bool ended; /* commitTransaction or abortTransaction was sent, or the server refused it */
    uint8_t sid[MONGO_SID_LEN];
    char host[MONGO_HOST_LEN];
    uint8_t lsid[MONGO_LSID_MAX];
    uint32_t lsid_len;
} mongo_txn;

/* A message Sluice sends for itself (killCursors, abortTransaction) once a connection is free. */
typedef struct mongo_internal_msg {
    gw_list node;
    char host[MONGO_HOST_LEN]; /* the server it is for */
    uint8_t *msg;
    size_t len;
} mongo_internal_msg;

typedef struct mongo_front {
    struct mongo_shell_front *shell; /* the shell's side: listener, worker, settings source */
    char name[64];
    /* The line's settings, refreshed by the shell (the config object is replaced on reload). */
    int pool_size;           /* already bounded by the line's max_db_connections */
    int min_pool_size;       /* connections kept open while idle (minPoolSize) */
    uint64_t max_idle_ms;    /* idle connections beyond min_pool_size close after this; 0 never */
    int max_clients;         /* max_client_conn of the line */
    cfg_auth_type auth_type; /* CFG_AUTH_SCRAM: clients log in (mongo_auth.c); read at accept */
    uint64_t query_timeout_ms, query_wait_timeout_ms;
    bool stopping; /* shutting down: no new connections, nothing goes back to the pool */
    gw_list clients, backends, idle, waiters;
    uint32_t n_clients;
    uint64_t refused, refused_logged_at; /* clients refused at accept; last log of it */
    gw_list internal;                    /* mongo_internal_msg waiting for a connection */
    uint32_t n_internal;
    uint32_t n_backends, n_connecting;
    gw_htable cursors, txns, open_txns;
    mongo_limits limits;
    bool have_limits;
    struct gw_creds *creds; /* plaintext users' derived SCRAM credentials; NULL: none yet */
    bson_oid_t service_id;  /* what hello says to drivers in load-balanced mode */
    uint64_t last_fail;     /* clock of the last failed connect, 0 after a success */
    char last_error[256];
    uint32_t next_request_id;
    int32_t next_conn_id;
    unsigned ticks;
    gw_bufpool *bufs;    /* where message buffers come from: the loop's pool, not owned */
    gw_pool_stats stats; /* the entry's counters, as a pool's (gateway/stats.h) */
} mongo_front;

/* A requestID for a message Sluice sends: unique per front, positive, never 0. */
static inline int32_t mongo__next_id(mongo_front *f)
{
    f->next_request_id = (f->next_request_id + 1) & 0x7fffffffu;
    if (f->next_request_id == 0)
        f->next_request_id = 1;
    return (int32_t)f->next_request_id;
}

/* Logging through the shell, with the front's name in front. */
#define mongo_log(f, level, ...) mongo_shell_log((f), (level), __VA_ARGS__)
#define mongo_error(f, ...)      mongo_log((f), CFG_LOG_ERROR, __VA_ARGS__)
#define mongo_warn(f, ...)       mongo_log((f), CFG_LOG_WARNING, __VA_ARGS__)
#define mongo_info(f, ...)       mongo_log((f), CFG_LOG_INFO, __VA_ARGS__)
#define mongo_debug(f, ...)      mongo_log((f), CFG_LOG_DEBUG, __VA_ARGS__)

/* ---- core internals (not for the shell) ---- */

/* mongo_core.c */
/* A MONGO_READ_CHUNK buffer from the loop's pool, or NULL. */
uint8_t *mongo__buf_get(mongo_front *f);
/* Takes back a buffer of cap bytes (any buffer: the pool keeps blocks of its sizes). */
void mongo__buf_put(mongo_front *f, uint8_t *p, size_t cap);
/* Room for a read into *in (of *len bytes used, *cap allocated) for a message being framed:
 * at least half a chunk, or the rest of the message whose header is there. */
int mongo__read_room(mongo_front *f, uint8_t **in, size_t len, size_t *cap, uint8_t **p, size_t *n);

/* mongo_hello.c */
bool mongo__is_hello(const char *cmd);
/* The answer to a hello/isMaster in msg (an OP_MSG or OP_QUERY), or NULL; *len its length. */
uint8_t *mongo__hello_reply(mongo_client *c, const uint8_t *msg, size_t len, size_t *out_len);

/* mongo_auth.c: clients logging in to Sluice. */
/* mongod's defaults for new SCRAM credentials, and its salt lengths (the digest length - 4:
 * libmongoc refuses any other). */
#define MONGO_SHA256_ITERATIONS 15000
#define MONGO_SHA1_ITERATIONS   10000
#define MONGO_SHA256_SALT       28
#define MONGO_SHA1_SALT         16
#define MONGO_AUTH_MAX_FAILURES 10          /* failed logins before the connection is closed */
#define MONGO_PREAUTH_MAX       (64 * 1024) /* largest message before a login */
/* Whether cmd is one mongo__auth_command answers (saslStart, saslContinue, authenticate,
 * logout). */
bool mongo__auth_is_command(const char *cmd);
/* Whether c may run cmd now: it logged in, needs no login, or cmd works before one. */
bool mongo__auth_allows(const mongo_client *c, const char *cmd);
/* Answers such a command in reply (initialised here; the caller destroys it). Returns true
 * when c has failed too often and must close after the reply. */
bool mongo__auth_command(mongo_client *c, const char *cmd, const bson_t *body, bson_t *reply);
/* Adds saslSupportedMechs and speculativeAuthenticate to the hello reply being built. */
void mongo__auth_hello(mongo_client *c, const bson_t *request, bson_t *reply);
/* Frees c's login state. */
void mongo__auth_free(mongo_client *c);

/* mongo_client.c */
void mongo__client_close(mongo_client *c, mongo_end why, const char *detail);
/* Statistics (mongo_count.c): a command arrived; the reply to the request in hand came. */
void mongo__count_request(mongo_client *c, const char *cmd);
void mongo__count_reply(mongo_client *c);
/* Gives the request in hand to b (already taken from the pool for c). */
void mongo__client_got_backend(mongo_client *c, struct mongo_backend *b);
/* The reply to c's request (takes ownership of msg, a buffer of cap bytes). */
void mongo__client_got_reply(mongo_client *c, const char *host, uint8_t *msg, size_t len,
                             size_t cap);
/* The backend's limits are known: answers the handshakes that waited for them. */
void mongo__client_answer_hellos(mongo_front *f);
/* c's moreToCome request was written. */
void mongo__client_sent(mongo_client *c);
/* Fails c's request in hand with an error reply; c reads its next request. */
void mongo__client_fail(mongo_client *c, int code, const char *code_name, const char *errmsg);
void mongo__client_backend_lost(mongo_client *c, const char *why);
void mongo__client_check_timeouts(mongo_client *c, uint64_t now);

/* mongo_session.c: cursors and transactions that outlive a request. */
void mongo__sessions_init(mongo_front *f);
void mongo__sessions_free(mongo_front *f);
/* Before forwarding body: sets c->r's session fields and c->r.pin. Returns 0, or -1 with *why
 * set when the request touches what belongs to another client (or would pass the client's own
 * bounds): it is then answered with that error and never forwarded. */
int mongo__sessions_note_request(mongo_client *c, const bson_t *body, mongo_refusal *why);
/* The request went out on a connection to host (pins a transaction's first statement). */
void mongo__sessions_note_sent(mongo_client *c, const char *host);
/* The reply to c's request: cursors opened or finished, transactions the server refused. */
void mongo__sessions_note_reply(mongo_client *c, const char *host, const bson_t *reply);
/* c leaves: its open transactions are aborted, its open cursors killed. */
void mongo__sessions_client_gone(mongo_client *c);
/* Drops cursors unused for longer than the server keeps sessions. */
void mongo__sessions_expire(mongo_front *f, uint64_t now);

/* mongo_backend.c: a connection's framing and reply routing. */
/* Ends b for why (detail: NULL or more words for the log and the client's error reply). */
void mongo__backend_close(mongo_backend *b, mongo_end why, const char *detail);
/* Writes a whole request (takes ownership of msg, a buffer of cap bytes). Returns 0 or a
 * negative error (the buffer is then released). */
int mongo__backend_send(mongo_backend *b, uint8_t *msg, size_t len, size_t cap);

/* mongo_pool.c: bounded pools, FIFO wait queue. */
void mongo__backend_set_state(mongo_backend *b, mongo_backend_state next);
/* Gives c a connection (to c->r.pin when set) now, or queues c. */
void mongo__pool_acquire(mongo_client *c);
/* b's request is done: the connection goes to the next waiter, back to the pool, or away. */
void mongo__pool_release(mongo_backend *b);
/* Asks the shell for a new connection to target ("" = the write primary). */
void mongo__pool_request_connect(mongo_front *f, const char *target);
/* A connect for target ("" = the write primary) failed: those who cannot wait fail. */
void mongo__pool_connect_failed(mongo_front *f, const char *target, const char *error);
/* Opens another connection if someone waits and there is room. */
void mongo__pool_connect_more(mongo_front *f);
/* Sends a command of Sluice's own (no reply wanted) on a connection to host. */
void mongo__pool_fire_and_forget(mongo_front *f, const char *host, const bson_t *cmd);
/* The janitor's pool work: query_timeout, max_idle_time, min_pool_size, connect retries. */
void mongo__pool_check_timeouts(mongo_front *f, uint64_t now);

/* ---- entry points: the only calls the shell makes into the core ---- */

/* Sets up f (zeroed by the caller; settings filled in by the shell), its buffers coming from
 * bufs (which must outlive it) / frees what it holds once every client and backend is gone. */
void mongo_core_front_init(mongo_front *f, struct mongo_shell_front *shell, const char *name,
                           gw_bufpool *bufs);
void mongo_core_front_free(mongo_front *f);
/* The front is listening: opens a first connection, to learn the server's limits before the
 * first client's hello (and to warm the pool). */
void mongo_core_start(mongo_front *f);
/* Shutdown: every client and backend is closed; nothing new starts. */
void mongo_core_stop(mongo_front *f);
/* The shell's timer, about every 100 ms: timeouts, and now and then expiry of cursors. */
/* A graceful shutdown (each tick): clients with no command in flight and no open transaction
 * are closed; the others once they get there. */
void mongo_core_drain(mongo_front *f);
void mongo_core_tick(mongo_front *f, uint64_t now);
/* The console lifted a PAUSE (mongo_shell_paused is false now): waiting requests get
 * connections. */
void mongo_core_resume(mongo_front *f);

/* A client connected on io. Returns its client (possibly already closing: over max_client_conn),
 * or NULL when out of memory (the shell then closes io itself). */
mongo_client *mongo_core_client_accepted(mongo_front *f, struct mongo_shell_conn *io);
/* Where the next read goes: *p and *n, or *n == 0 when no room can be had (out of memory). */
void mongo_core_client_read_buf(mongo_client *c, uint8_t **p, size_t *n);
/* n bytes arrived into the buffer the last read_buf gave. */
void mongo_core_client_read(mongo_client *c, size_t n);
/* Writes of len bytes finished (error NULL) or failed; hands msg (of cap bytes) back, or NULL
 * when the shell already released it. */
void mongo_core_client_written(mongo_client *c, uint8_t *msg, size_t len, size_t cap,
                               const char *error);
/* c's next message is answered with an Unauthorized error saying errmsg (static text), and the
 * connection closes: the shell refuses a client its line does not admit (cleartext when TLS is
 * required), in words the client's driver shows. */
void mongo_core_client_refuse(mongo_client *c, const char *errmsg);
/* The connection broke or ended (why: MONGO_END_CLIENT_LEFT, _IO or _NOMEM). */
void mongo_core_client_failed(mongo_client *c, mongo_end why, const char *detail);
/* The shell closed c's connection (after mongo_shell_client_close): c is freed. */
void mongo_core_client_closed(mongo_client *c);

/* A connect the core asked for succeeded: io is connected and handshaken to host. Returns the
 * backend (possibly already closing: the core asked the shell to close io), or NULL when it
 * cannot be used (shutting down, out of memory: the shell then closes io itself). */
mongo_backend *mongo_core_backend_connected(mongo_front *f, struct mongo_shell_conn *io,
                                            const char *host, const mongo_limits *limits);
/* A connect the core asked for failed (target as asked; error for the log and clients). */
void mongo_core_connect_failed(mongo_front *f, const char *target, const char *error);
void mongo_core_backend_read_buf(mongo_backend *b, uint8_t **p, size_t *n);
void mongo_core_backend_read(mongo_backend *b, size_t n);
void mongo_core_backend_written(mongo_backend *b, uint8_t *msg, size_t cap, const char *error);
/* why: MONGO_END_SERVER_CLOSED, _IO or _NOMEM. */
void mongo_core_backend_failed(mongo_backend *b, mongo_end why, const char *detail);
void mongo_core_backend_closed(mongo_backend *b);

#endif
