/*
 * pg_int.h: the PostgreSQL front end's types, shared by its files and nothing else.
 *
 * Ownership: the pg_gateway owns every pool, client and server. Clients and servers are freed
 * only in their handle's close callback; anything that may run after a close (write callbacks,
 * the ready list) checks pg_conn_closing first.
 *
 * States: a client's and a server's state say which pool list it is on, and only
 * pg_client_set_state / pg_server_set_state write them (they abort on a transition that cannot
 * happen). Every close records a pg_end reason in conn.end.
 */
#ifndef SLUICE_PG_INT_H
#define SLUICE_PG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "drivers/pg/pg_end.h"
#include "drivers/pg/pg_params.h"
#include "drivers/pg/pg_stmt.h"
#include "gateway/buf.h"
#include "gateway/ctx.h"
#include "gateway/htable.h"
#include "gateway/list.h"
#include "gateway/stats.h"

/* Longest message a client may send during its login exchange (a password, a SASL message):
 * PostgreSQL's own password packets stay far below it. */
#define PG_AUTH_MSG_MAX 8192u
/* Reading from one side pauses while the other side has this much unsent output. */
#define PG_HIGH_WATER (256u * 1024u)
/* Client messages larger than this are streamed to the server as they arrive. */
#define PG_STREAM_OVER (64u * 1024u)
/* A client's input is not processed further while this many of its requests await answers, so
 * a pipeline that never reads cannot grow the request queue without bound. */
#define PG_MAX_QUEUED 4096u
/* Server messages Sluice must hold whole (errors, row descriptions) larger than this end the
 * server connection: five header bytes must not make Sluice allocate gigabytes. */
#define PG_SERVER_WHOLE_MAX (64u * 1024u * 1024u)
/* Server messages streamed through (rows, COPY data) larger than this end the server
 * connection: PostgreSQL builds no message over 1 GiB (MaxAllocSize), so a larger length means a
 * broken stream. */
#define PG_SERVER_STREAM_MAX ((size_t)1024u * 1024u * 1024u + 5u)

struct pg_pool;
struct pg_client;
struct pg_server;
typedef struct pg_notify pg_notify;
typedef struct pg_login pg_login;
typedef struct pg_listen_conn pg_listen_conn;

typedef enum pg_conn_kind {
    PG_CONN_CLIENT,
    PG_CONN_SERVER,
} pg_conn_kind;

/* What clients and servers share: input and output buffers, and flow control. Their socket
 * belongs to the shell, which allocates each client and server together with its handles. */
typedef struct pg_conn {
    struct pg_gateway *gw;
    gw_buf in;     /* received, not yet processed */
    gw_buf out;    /* built while handling an event, written when the ready list runs */
    gw_list ready; /* on gw->ready while it has output to flush or input to process */
    /* Small types where they suffice: every idle client carries them. */
    uint32_t pending;      /* wire bytes queued in uv_write requests whose callback has not run
                            * (ciphertext under TLS, the session's own records included); the
                            * transport's own count, which stays below 4 GiB */
    uint32_t want_in;      /* a whole message of this many bytes is awaited in `in` (0: none);
                            * bounded by max_buffered_message or PG_STREAM_OVER */
    uint32_t pass_left;    /* bytes of the current message still to stream through */
    uint8_t end;           /* pg_end: why it ended, recorded as it enters its CLOSING state */
    uint8_t kind;          /* pg_conn_kind */
    bool pass_drop : 1;    /* the streamed message is being dropped, not forwarded */
    bool stream_open : 1;  /* the shell's stream handle was initialised and needs closing */
    bool reading : 1;      /* the transport reads (uv_read_start is in effect) */
    bool need_process : 1; /* input is waiting for processing (set when ready is queued) */
    bool in_blocked : 1;   /* processing stopped because output or queued requests hit a bound */
} pg_conn;

/* How the response(s) to one request sent to a server reach the client. */
typedef enum pg_req_action {
    PG_REQ_FORWARD, /* the client sent it; its responses go to the client */
    PG_REQ_SKIP,    /* Sluice injected it; its responses are consumed, errors excepted */
    PG_REQ_FAKE,    /* never sent: Sluice answers it itself once it reaches the queue head */
    PG_REQ_SILENT,  /* never answered (pg_copy): popped unanswered once it reaches the head */
} pg_req_action;

/* One request that expects a response, in the order it was (or would have been) sent. */
typedef struct pg_req {
    uint8_t type;      /* frontend message type: P B D E C S Q F, or c f (PG_REQ_SILENT) */
    uint8_t action;    /* pg_req_action */
    bool client_named; /* a Parse of a client-named statement (undo the name on failure) */
    bool unnamed;      /* a Parse of the unnamed statement; stmt holds its body */
    bool after_copy;   /* a Sync sent after COPY data (pg_copy) */
    bool copy_ended;   /* a CopyDone or CopyFail marker whose COPY has ended (pg_copy) */
    pg_stmt *stmt;     /* Parse/Close of a tracked statement: holds a reference */
} pg_req;

typedef struct pg_reqq {
    pg_req *items;
    uint32_t head, count, cap;
} pg_reqq;

/* Every state but NEW is on pool->servers and counts in pool->n_servers until CLOSING. */
typedef enum pg_server_state {
    PG_SV_NEW,        /* transient: allocated, not yet counted by its pool */
    PG_SV_CONNECTING, /* libpq handshake in progress (uv_poll on PQsocket); pool->n_connecting */
    PG_SV_IDLE,       /* on pool->idle, transaction status idle, no requests pending */
    PG_SV_ACTIVE,     /* linked to a client */
    PG_SV_RESETTING,  /* transient: unlinked, running ROLLBACK/reset, or server_check_query
                       * (s->checking); placed by the pool again at ReadyForQuery */
    PG_SV_CLOSING,    /* transient: off every pool list, handles closing, freed in the callback */
} pg_server_state;

typedef struct pg_server {
    pg_conn conn;
    struct pg_pool *pool;
    struct pg_client *client; /* the linked client in PG_SV_ACTIVE, else NULL */
    gw_list pool_node;        /* pool->servers */
    gw_list idle_node;        /* pool->idle while PG_SV_IDLE */
    pg_server_state state;
    unsigned conn_gen; /* the pool's conn_gen it was connected with */
    char tx;           /* transaction status of the last ReadyForQuery: I, T or E */
    pg_reqq q;         /* requests awaiting responses */
    pg_params params;  /* the server's current session parameters */
    pg_server_stmts stmts;
    uint64_t since;      /* entered the current state (connect start for CONNECTING) */
    uint64_t busy_since; /* the oldest unanswered request was sent (query_timeout) */
    uint64_t idle_since; /* the last ReadyForQuery arrived (idle_transaction_timeout) */
    uint64_t cancel_at;  /* when query_timeout sent a cancel, 0 if none */
    uint64_t born;       /* the login completed (server_lifetime counts from here) */
    bool used;           /* has served a client (server_lifetime 0: it then closes) */
    bool checking;       /* RESETTING for server_check_query: counted in pool->n_checking */
    uint32_t id;
    uint32_t cancels; /* cancels in flight: the server goes to no other client until they land */
    uint64_t req_seq; /* number of the last request queued */
    uint64_t last_sync_seq; /* number of the last Sync queued */
    uint64_t synced_fp;     /* fingerprint of the params of the client the server now matches */
    bool synced; /* synced_fp is valid: no change since that client's parameters applied */
    /* The unnamed statement as Sluice last sent it: a Parse("") sets it, a simple query or a
     * Close of it clears it. unnamed_unknown: a Parse of it was skipped or failed, or a Query
     * that would have dropped it was refused or skipped, so the server may hold anything.
     * unnamed_seq: the request number of its unanswered Parse, else 0. */
    pg_stmt *unnamed;
    uint64_t unnamed_seq;
    bool unnamed_unknown;
    /* COPY FROM STDIN (pg_copy). copy_in: the server sent CopyInResponse and has not ended the
     * COPY. copy_open: copy_in, and the client has not sent CopyDone or CopyFail yet: its Syncs
     * are not queued. copy_sent: the client sent COPY data since its last request.
     * copy_unsure: a Sync sent among the data is taken as ignored, right only if the COPY runs
     * to its end. copy_marked: the client's CopyDone or CopyFail for it is queued as a marker. */
    bool copy_in, copy_open, copy_sent, copy_unsure, copy_marked;
    /* A query that may reset parameters (RESET, SET ... TO DEFAULT, DISCARD ALL) is unanswered:
     * values reported until its ReadyForQuery may be the server's own defaults. */
    bool reset_possible;
    /* A reset took the server back to its own defaults where the client had other startup
     * values: they are SET again as soon as the server is idle between requests. */
    bool resync;
    /* Sluice's own login to the server (pg_login.c), when libpq cannot do it: the exchange in
     * progress while CONNECTING, NULL otherwise (and always for libpq's connections). */
    pg_login *login;
    /* Statistics (pg_count.c), monotonic µs (gw_stats_now_us): when the running query and
     * transaction of the linked client began (0: none), its last query began, it connected. */
    uint64_t query_start_us, xact_start_us;
    uint64_t request_us, connect_us;
    bool close_needed;    /* RECONNECT: closes instead of going back to the pool */
    bool own_login;       /* logged in by pg_login, not by libpq: cancels need backend_key */
    uint32_t backend_pid; /* BackendKeyData of an own login */
    uint32_t backend_key;
} pg_server;

/* Every state from STARTUP to ACTIVE is on gw->clients. */
typedef enum pg_client_state {
    PG_CL_NEW,        /* transient: allocated, not yet accepted */
    PG_CL_STARTUP,    /* reading the startup packet; client_login_timeout runs */
    PG_CL_AUTH,       /* proving who it is (pg_auth.c: c->auth holds the exchange's own
                       * state); client_login_timeout runs */
    PG_CL_LOGIN_WAIT, /* waiting on pool->login_waiters for the pool's first server parameters */
    PG_CL_IDLE,       /* logged in, no server linked */
    PG_CL_WAITING,    /* has a request, queued on pool->waiters for a server */
    PG_CL_ACTIVE,     /* linked to a server */
    PG_CL_CLOSING,    /* transient: off every list, flushing a last message or closing; freed in
                       * the close callback */
} pg_client_state;

/* What a client proved itself with, for Sluice's own login to the server as that user
 * (server-side passthrough). Allocated by pg_auth.c for the login exchange; its pool learns
 * from it (pg_pool_cred_learn) once the login succeeds, and it is then wiped with
 * OPENSSL_cleanse and freed (pg_auth_cred_wipe), as it is when the client closes first. */
typedef struct pg_client_cred {
    /* The user's stored secret (auth_file or auth_query), an owned copy: a reload may free the
     * users list it came from. Valid when have_secret. */
    auth_secret secret;
    bool have_secret;
    /* The cleartext password the client sent (auth_type plain, hba password), owned, or NULL. */
    char *password;
    /* The ClientKey recovered from a correct SCRAM proof: with the verifier's ServerKey it lets
     * Sluice answer the server's SCRAM challenge as the client would. */
    uint8_t client_key[AUTH_SHA256_LEN];
    bool have_client_key;
} pg_client_cred;

struct pg_auth; /* the exchange under way in PG_CL_AUTH (pg_auth.c) */

/* What a client needs only until it is logged in: allocated with the client (pg_client_start)
 * and freed once it is (pg_client_finish_login) or closes first, so an idle client carries
 * none of it. */
typedef struct pg_client_login_state {
    uint64_t accepted;      /* gw_now when it connected: client_login_timeout counts from here,
                             * whatever login states it goes through */
    struct pg_authq *authq; /* the shell's auth_query lookup for it in flight, else NULL */
    struct pg_auth *auth;   /* the login exchange, only in PG_CL_AUTH; owned */
    pg_client_cred *cred;   /* what it proved itself with; owned, wiped when freed */
    /* The database and user its startup packet named (cut to PostgreSQL's 63 bytes), so the
     * log names them for a login refused before the login exchange begins. */
    char db[64], user[64];
} pg_client_login_state;

/* The peer's address, kept in binary (formatted only for a log line): asked of the shell once,
 * since the disconnect line may come after the peer is gone, when the socket can no longer
 * tell. */
typedef struct pg_peer {
    uint8_t kind;     /* pg_peer_kind */
    uint16_t port;    /* host order */
    uint8_t addr[16]; /* IPv4: the first 4 */
} pg_peer;

typedef enum pg_peer_kind {
    PG_PEER_UNKNOWN, /* not asked yet, or the shell could not tell */
    PG_PEER_UNIX,
    PG_PEER_IPV4,
    PG_PEER_IPV6,
} pg_peer_kind;

struct pg_client_listen; /* LISTEN emulation's per-client state (pg_notify.c) */

/* Field order keeps the idle client small (a unit test bounds its size): pointers and 64-bit
 * values first, then 32-bit ones, then flags. What only some clients need (the login, LISTEN,
 * the console) hangs off a pointer. */
typedef struct pg_client {
    pg_conn conn;
    gw_list node;      /* gw->clients */
    gw_list wait_node; /* pool->waiters or pool->login_waiters */
    gw_hnode key_node; /* gw->keys, by pid, once logged in */
    struct pg_pool *pool;
    struct pg_server *server;
    uint64_t since; /* entered the current state */
    /* Statistics, monotonic µs (gw_stats_now_us): when it entered PG_CL_WAITING, connected. */
    uint64_t wait_start_us, connect_us;
    pg_params params;  /* parameters this client chose (startup packet, its own SETs) */
    pg_params startup; /* what its startup packet chose: where RESET and DISCARD ALL return */
    pg_stmt *unnamed;  /* the body of its unnamed statement (transaction mode), or NULL */
    pg_client_stmts stmts;
    /* LISTEN emulation (pg_notify.c): its channels, a LISTEN query being confirmed and
     * notifications held back; NULL until its first LISTEN or UNLISTEN. Owned. */
    struct pg_client_listen *listen;
    pg_client_login_state *login; /* until it is logged in (pg_client_login_state); owned */
    /* The admin console (pg_admin.c): a console session has no pool. */
    struct pg_admin *admin; /* owned; NULL for every other client */
    uint32_t pid, key;      /* the BackendKeyData Sluice issued */
    pg_peer peer;           /* for the log (pg_log.c) */
    uint8_t state;          /* pg_client_state */
    /* Flags (bits: every idle client carries them). */
    bool keyed : 1;       /* key_node is in gw->keys */
    bool stalled : 1;     /* input waits until an unconfirmed Parse behind a Sync is answered */
    bool rejected : 1;    /* over max_client_conn: refuse after reading the startup packet */
    bool counted : 1;     /* counts toward max_client_conn */
    bool discard : 1;     /* a cancel ended its wait: drop messages up to the next Sync or Query */
    bool served : 1;      /* has had a server: a drain may close it between transactions */
    bool listen_wait : 1; /* input waits for the answer to its LISTEN query (pg_notify.c) */
    bool pinned : 1;      /* keeps its server until it disconnects (transaction mode; pg_pin.c
                           * logged why) */
    /* The shell's (pg_io.c): something was read (a ClientHello now is not direct TLS); TLS
     * began with the ClientHello (no SSLRequest): ALPN is required. */
    bool io_saw_input : 1;
    bool io_direct : 1;
} pg_client;

/* What a pool logs in to its servers with when the [databases] line gives no password
 * (pg_login.c): the strongest credential learned so far, from the users file or from a client's
 * login. Wiped when the pool is freed. */
typedef enum pg_cred_kind {
    PG_CRED_NONE,     /* nothing known: libpq logs in as the line says (trust, .pgpass off) */
    PG_CRED_PASSWORD, /* the plaintext password: libpq logs in with it */
    PG_CRED_MD5,      /* only PostgreSQL's md5 hash: Sluice answers an md5 challenge itself */
    PG_CRED_SCRAM,    /* a SCRAM verifier and the ClientKey a client proved: Sluice answers the
                       * server's SCRAM exchange itself (passthrough) */
} pg_cred_kind;

typedef struct pg_pool_cred {
    pg_cred_kind kind;
    char *password;         /* PG_CRED_PASSWORD, owned */
    char md5[40];           /* PG_CRED_MD5: "md5" + 32 hex digits */
    uint8_t client_key[32]; /* PG_CRED_SCRAM */
    uint8_t server_key[32]; /* PG_CRED_SCRAM, to check the server's signature */
    bool verifier_known;    /* a SCRAM verifier is known, its ClientKey not yet */
} pg_pool_cred;

typedef struct pg_pool {
    gw_list node; /* gw->pools */
    struct pg_gateway *gw;
    char *dbname; /* the database name clients use */
    char *user;
    char **kw, **val;  /* libpq keywords for new server connections, NULL-terminated, owned */
    unsigned cfg_gen;  /* ctx->cfg_gen the settings below were derived from; 0 = never */
    unsigned conn_gen; /* bumped when a reload changes kw/val: older servers are retired */
    bool removed;      /* the reload removed its database: no new clients, no idle servers */
    int size;
    cfg_pool_mode mode;
    int db_max;    /* max_db_connections for this database, 0 = unlimited */
    bool autodb;   /* made through the "*" entry: freed after autodb_idle_timeout without clients */
    bool dropping; /* autodb_idle_timeout passed: no new server; freed once n_alive is 0 */
    gw_list servers;
    gw_list idle; /* LIFO: the most recently used server is reused first */
    uint32_t n_servers, n_connecting;
    uint32_t n_checking; /* servers running server_check_query for a waiting client */
    /* Objects that point at the pool: clients from their login to their close callback, servers
     * from their connect attempt to theirs. The pool may be freed only when both are 0. */
    uint32_t n_clients, n_alive;
    uint64_t unused_since; /* n_clients last dropped to 0 (autodb_idle_timeout) */
    gw_list waiters;       /* FIFO of clients in PG_CL_WAITING */
    gw_list login_waiters; /* clients in PG_CL_LOGIN_WAIT */
    pg_params defaults;    /* parameters a fresh server reports */
    bool have_defaults;
    uint64_t last_fail; /* when the last connection attempt failed, 0 if it did not */
    char last_error[256];
    char last_sqlstate[6]; /* the server's SQLSTATE when it refused the login, else "" */
    pg_notify *notify;     /* LISTEN emulation's channels (core), NULL until the first LISTEN */
    pg_listen_conn *listen_conn; /* its listening connection (shell), NULL while there is none */
    bool cleartext_warned;       /* the own login's "no TLS although sslmode prefer" was logged */
    bool line_password;          /* the [databases] line gives the password: cred is unused */
    pg_pool_cred cred;
    gw_pool_stats stats; /* this loop's counters for the pool (pg_count.c) */
    /* Its clients by state, kept by pg_client_set_state from the login on (SHOW POOLS). */
    uint32_t n_cl[PG_CL_CLOSING + 1];
} pg_pool;

/* The core's part of the front end; the shell allocates it together with its listeners and
 * timers (pg_gateway.c). */
typedef struct pg_gateway {
    gw_ctx *ctx;
    gw_list clients;
    gw_list pools;
    gw_list ready;
    uint32_t n_clients; /* counted toward max_client_conn */
    uint32_t next_pid;
    uint32_t next_server_id;
    gw_htable keys; /* logged-in clients by pid, for CancelRequest */
    pg_stmt_registry stmts;
    gw_bufpool *bufs; /* the loop's pool (ctx->bufs), shared with the MongoDB side */
    uint64_t rng;     /* splitmix64 state for cancel keys */
    uint32_t live;    /* clients and servers not yet freed */
    uint32_t pending_cancels;
    uint32_t pinned_clients; /* clients now pinned to their server (pg_pin.c) */
    uint64_t pinned_total;   /* clients ever pinned */
    uint64_t autodb_freed;   /* pools of the "*" entry freed after autodb_idle_timeout */
    bool stopping;
    gw_list admin_waiting; /* console sessions whose command waits (pg_admin.c) */
    /* A graceful shutdown: the listeners are closed and clients leave as they finish (every
     * client between transactions is closed, pg_core_drain), or, with drain_clients, when they
     * choose to. */
    bool draining;
    bool drain_clients;
    struct gw_creds *creds; /* SCRAM credentials of plaintext users (pg_auth.c), lazily made */
} pg_gateway;

/* ---- The core's entry points: the shell (pg_shell.h) calls up only through these. ---- */

/* Input arrived in c->in (or processing was asked for with pg_conn_mark_process). */
void pg_conn_input(pg_conn *c);
void pg_client_process(pg_client *c);
void pg_server_process(pg_server *s);
/* The peer closed (eof) or reading failed (detail says why). */
void pg_conn_input_ended(pg_conn *c, bool eof, const char *detail);
/* Writing failed, or the shell could not start reading. */
void pg_conn_close(pg_conn *c, pg_end why, const char *detail);
/* Flow control: whether the shell should read c now, and the other end of its link. */
bool pg_conn_wants_input(const pg_conn *c);
pg_conn *pg_conn_peer(const pg_conn *c);
/* An accepted client starts reading its startup packet. 0, or -ENOMEM: the caller then closes
 * it (pg_client_close, PG_END_NO_MEMORY). */
int pg_client_start(pg_client *c, pg_gateway *gw);
/* A server object the shell created for a connect attempt joins its pool (CONNECTING). */
void pg_server_init(pg_server *s, pg_pool *pool);
/* The login to the server completed; s->params holds what it reported. */
void pg_server_connected(pg_server *s, int backend_pid);
/* The attempt of s failed (msg: libpq's text, copied before anything is freed). */
void pg_server_connect_failed(pg_server *s, const char *msg);
/* An attempt failed before any server object existed. */
void pg_server_start_failed(pg_pool *pool, const char *msg);
/* The auth_query lookup of c ended: secret is the user's stored secret (NULL: no such user),
 * or error says why the lookup failed. Both are copied if kept. */
void pg_auth_lookup_done(pg_client *c, const char *secret, const char *error);
/* A close callback ran: the core releases what it holds; the shell frees the object. */
void pg_client_closed(pg_client *c);
void pg_server_closed(pg_server *s);
/* Timer tick (every janitor period): timeouts, connection targets. */
void pg_core_tick(pg_gateway *gw, uint64_t now);
/* Stopping: every client and server is closed with PG_END_SHUTDOWN. */
void pg_core_shutdown(pg_gateway *gw);
/* Draining without drain_clients (each tick): clients with no transaction under way are closed
 * with 57P01, the others once their transaction ends; logins finish, and a client that has not
 * had a server yet gets a moment for its first request (pg_tick.c). */
void pg_core_drain(pg_gateway *gw);
/* A CancelRequest packet, and the end of a cancel the shell sent for server server_id. */
void pg_cancel_request(pg_gateway *gw, uint32_t pid, uint32_t key);
void pg_server_cancel_done(pg_gateway *gw, uint32_t server_id);
/* The I/O errors that end connections arrive through pg_client_close / pg_server_close. */
/* The answer to pg_shell_auth_lookup: the user's secret as auth_query returned it (NULL: no
 * such user), or error (the lookup failed: the client gets 28000, the log says why). Copied;
 * must not be called once c's close began (the shell was told with pg_shell_auth_lookup_cancel). */
void pg_auth_lookup_done(pg_client *c, const char *secret, const char *error);
/* What a lookup is for: the user and the database the client logs in as (valid in PG_CL_AUTH). */
const char *pg_auth_user(const pg_client *c);
const char *pg_auth_dbname(const pg_client *c);
/* LISTEN emulation's listening connection (pg_shell_listen_open): logged in; the oldest
 * command sent finished; lost (its commands dropped, p->listen_conn already NULL); a
 * notification arrived on it. */
void pg_notify_opened(pg_pool *p);
void pg_notify_cmd_done(pg_pool *p);
void pg_notify_lost(pg_pool *p, const char *why);
void pg_notify_deliver(pg_pool *p, const char *channel, uint32_t be_pid, const char *payload);

/* The core's part of the gateway object: lists, indexes, buffers (pg_core_free frees them and
 * every pool, once no client or server is left). */
void pg_core_init(pg_gateway *gw, gw_ctx *ctx);
void pg_core_free(pg_gateway *gw);

/* pg_conn.c: what clients and servers share that needs no I/O. */
void pg_conn_init(pg_conn *c, pg_gateway *gw, pg_conn_kind kind);
/* Output was appended to c->out (or its reading may need re-evaluation): the shell writes it
 * and re-evaluates reading at the end of this loop iteration (gw->ready). */
void pg_conn_mark(pg_conn *c);
/* As pg_conn_mark, and c's input is processed again then. */
void pg_conn_mark_process(pg_conn *c);
/* Streams what has arrived of the message being passed through (from->pass_left bytes at most)
 * from p to the output of `to` (NULL: dropped). Returns the bytes taken, or -ENOMEM. */
long pg_conn_pass(pg_conn *from, pg_conn *to, const uint8_t *p, size_t avail);
uint32_t pg_gateway_random(pg_gateway *gw);
/* Whether its close has begun: nothing may be queued on it any more. */
static inline bool pg_conn_closing(const pg_conn *c)
{
    if (c->kind == PG_CONN_CLIENT)
        return ((const pg_client *)c)->state == PG_CL_CLOSING;
    return ((const pg_server *)c)->state == PG_SV_CLOSING;
}

/* Whether c's output ends part-way through a message its server is streaming to it: nothing
 * else may be put into that output (it would land inside the message), and a client closed now
 * gets only the part already relayed, then the end of its connection. */
static inline bool pg_client_out_mid_message(const pg_client *c)
{
    const pg_server *s = c->server;
    return s && s->conn.pass_left && !s->conn.pass_drop;
}

/* pg_client.c */
/* Sends a FATAL error (when sqlstate is not NULL) and closes once it is written. A client whose
 * output is mid-message (pg_client_out_mid_message) is closed without the error. */
void pg_client_fatal(pg_client *c, pg_end why, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Closes without a message (the client left, or its socket failed; detail is logged). */
void pg_client_close(pg_client *c, pg_end why, const char *detail);

/* Connection lines about a client (pg_log.c), carrying its id, server, database, user and
 * address: a login (log_connections), its end with why (log_disconnections), an error Sluice
 * sent it (log_pooler_errors), and any other line about it. */
void pg_client_log(pg_client *c, cfg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pg_client_log_login(pg_client *c);
void pg_client_log_end(pg_client *c, pg_end why, const char *detail);
void pg_client_log_error(pg_client *c, const char *sqlstate, const char *msg);
void pg_client_finish_login(pg_client *c);
/* The client is who it says (or trust): join the pool of (dbname, user) and finish the login. */
void pg_client_login(pg_client *c, const char *dbname, const char *user);
void pg_client_set_state(pg_client *c, pg_client_state st);
/* A cancel reached a client waiting for a server: its request ends with 57014. */
void pg_client_cancel_wait(pg_client *c);

/* pg_auth.c: the client's login exchange (auth_type, auth_file, auth_hba_file). */
/* Starts it for a client whose startup packet named dbname and user: trust logs in at once
 * (pg_client_login); other methods send their challenge and enter PG_CL_AUTH. */
void pg_auth_begin(pg_client *c, const char *dbname, const char *user);
/* A whole message of type t (body len bytes) from a client in PG_CL_AUTH. */
void pg_auth_input(pg_client *c, uint8_t t, const uint8_t *body, size_t len);
/* Its close began: a lookup under way is cancelled and the exchange freed. */
void pg_auth_client_gone(pg_client *c);
/* Its credentials are wiped (the pool learned them, or the client's login state is freed). */
void pg_auth_cred_wipe(pg_client *c);

/* pg_server.c */
void pg_server_close(pg_server *s, pg_end why, const char *detail);
void pg_server_set_state(pg_server *s, pg_server_state st);

/* pg_pool.c */
pg_pool *pg_pool_get(pg_gateway *gw, const cfg_database *db, const char *dbname, const char *user);
void pg_pool_refresh(pg_pool *p, const gw_ctx *ctx);
void pg_pool_free(pg_pool *p, pg_gateway *gw);
/* Links a server to c now, or queues c. Returns true when linked. */
bool pg_pool_acquire(pg_client *c);
/* The client is done with its server (transaction end, or client_left): clean the server
 * (ROLLBACK, and server_reset_query in session mode) and hand it on. */
void pg_pool_release(pg_server *s, bool client_left);
/* Transaction mode: releases s once its client's transaction is over (no request pending, idle,
 * no message half-way through on either side, client not pinned). */
void pg_pool_release_if_done(pg_server *s);
/* s is clean and unlinked: give it to the first waiter or put it on the idle list. */
void pg_pool_server_ready(pg_server *s);
/* A connect attempt failed: when no other server may come, fail the waiters with msg and
 * p->last_sqlstate (08006 when empty). */
void pg_pool_connect_failed(pg_pool *p, const char *msg);
void pg_pool_maybe_connect(pg_pool *p);

/* pg_limits.c: the bounds a pool's server count is under: its pool_size (plus
 * reserve_pool_size once a client has waited reserve_pool_timeout), and the limits it shares
 * with other pools (max_db_connections per database, max_user_connections per user). */
/* Servers p may have now. */
uint32_t pg_limits_pool_max(const pg_pool *p, uint64_t now);
/* Whether p may open one more server. When only a shared limit stops it, an idle server of a
 * pool sharing that limit is closed to make room (its open follows from the janitor). */
bool pg_limits_may_open(pg_pool *p, uint64_t now);
/* s of p is about to be placed: the pool under a shared limit whose first client has waited
 * longer than any of p's, when p is at that limit, else NULL. s should then make room for it,
 * so one busy pool cannot starve the others of the same database or user. */
pg_pool *pg_limits_longer_waiter(pg_pool *p);
/* Servers open to dbname across its pools (SHOW DATABASES' current_connections). */
uint32_t pg_pool_db_servers(pg_gateway *gw, const char *dbname);

/* pg_login.c: the credential a pool logs in with, and Sluice's own login for the credentials
 * libpq cannot use (an md5 hash, a SCRAM ClientKey). */
/* Takes what the users file knows of the pool's server user (at pool creation and reload). */
void pg_pool_cred_from_file(pg_pool *p, const gw_ctx *ctx);
/* A client of the pool logged in with cr: when the pool's server user is that client's user,
 * the pool learns the best credential in it (the client's own cleartext password, a plaintext
 * secret, the ClientKey its SCRAM proof revealed with the verifier's ServerKey, an md5 hash). A
 * pool whose last attempt failed tries again at once with a new credential. */
void pg_pool_cred_learn(pg_pool *p, const pg_client_cred *cr);
void pg_pool_cred_clear(pg_pool *p);
/* Whether new connections of p log in through pg_login (else through libpq, with
 * pg_pool_cred_password added when the line has none). */
bool pg_login_wanted(const pg_pool *p);
const char *pg_pool_cred_password(const pg_pool *p);
/* Shell entry point: the socket of an own-login server is connected; the core sends the startup
 * packet and runs the login as the server's messages arrive (pg_login_process). */
void pg_login_begin(pg_server *s);
/* Handles the server's login messages in s->conn.in; on ReadyForQuery the server is connected. */
void pg_login_process(pg_server *s);
/* The shell's TLS handshake with the server completed (after the server accepted the
 * SSLRequest): the startup packet goes out now. */
void pg_login_tls_ready(pg_server *s);
void pg_login_free(pg_server *s);

/* How a client message goes in the request queue while COPY FROM STDIN may run (pg_copy). */
typedef enum pg_copy_queue {
    PG_COPY_USUAL,  /* as any message of its type */
    PG_COPY_MARKER, /* as a PG_REQ_SILENT entry: a CopyDone or CopyFail ahead of the COPY */
    PG_COPY_NONE,   /* not at all: a Sync the server reads as COPY data and ignores */
} pg_copy_queue;

/* COPY FROM STDIN (pg_copy). Before the client's message t goes to s: an error text when s
 * copies in and t is a request (the client and s must close), else NULL with *queue set. */
const char *pg_copy_client_msg_slow(pg_server *s, uint8_t t, pg_copy_queue *queue);
static inline const char *pg_copy_client_msg(pg_server *s, uint8_t t, pg_copy_queue *queue)
{
    /* Most messages: no COPY data sent or running, and t is none of it. */
    if (!s->copy_open && !s->copy_sent && t != 'd' && t != 'c' && t != 'f') {
        *queue = PG_COPY_USUAL;
        return NULL;
    }
    return pg_copy_client_msg_slow(s, t, queue);
}
/* At s's CopyInResponse to the head request: the client's Syncs up to its CopyDone or
 * CopyFail become silent. An error text when a request lies among them. */
const char *pg_copy_in_begins(pg_server *s);
/* At the COPY's CommandComplete (failed false) or ErrorResponse: an error text when a failure
 * leaves the count of Syncs the server read unknown (the client and s must close). */
const char *pg_copy_in_ends(pg_server *s, bool failed);

/* The relay: what crosses a link, message by message. pg_reqq.c (request queue), pg_front.c
 * (client to server), pg_sync.c (session parameters), pg_back.c (server to client). */
void pg_reqq_free(pg_reqq *q, pg_gateway *gw);
int pg_reqq_push(pg_server *s, uint8_t type, pg_req_action action, pg_stmt *stmt, bool named);
/* Handles one complete client message of type t (body excludes the 5-byte header) for the
 * linked server. plain: for a Query or Parse, whether its text is plain (pg_sql_plain), when
 * pg_relay_idle_local found out; -1 when not known yet. Returns 0; 1 when the message must wait
 * (c->stalled, nothing consumed); or -1 when the client must be closed (already reported). */
int pg_relay_client_msg(pg_client *c, uint8_t t, const uint8_t *msg, size_t len, int plain);
/* A Parse from a client without a server, of a statement some server of its pool already
 * accepted, is answered by Sluice: 1 when done, 0 when a server is needed, -1 on ENOMEM. This
 * keeps clients that prepare synchronously (libpq's PQprepare) from waiting for a server. */
int pg_relay_parse_local(pg_client *c, const uint8_t *msg, size_t total);
/* Whether a client message of this type must be complete before it can be relayed. */
bool pg_relay_needs_whole(const pg_client *c, uint8_t t);
/* A server message of type t begins: why the server connection must end when it cannot come
 * now (a login message after the login, or a type the protocol does not have: the stream is out
 * of sync); else NULL, *whole says it must be held whole and handed to pg_relay_server_msg,
 * *drop that its bytes go nowhere (no client, or an injected query's). */
const char *pg_relay_server_header(pg_server *s, uint8_t t, bool *drop, bool *whole);
/* Handles a whole server message (msg holds its len bytes, header included). 0, or -1 when the
 * server was closed (already reported). */
int pg_relay_server_msg(pg_server *s, uint8_t t, const uint8_t *msg, size_t len);
/* Answers the fake requests at the head of the queue. 0, or -1 when the client (and with it
 * this server) was closed for want of memory. */
int pg_relay_drain_fakes(pg_server *s);
int pg_relay_sync_params(pg_server *s, pg_client *c);
bool pg_relay_tracks_stmts(const pg_client *c);
/* A simple-query DEALLOCATE of one of the client's protocol-level statements (drivers such as
 * psycopg 3 drop statements that way) is answered by Sluice: the server-side statement is
 * shared. 1 when answered, 0 when the query goes to the server, -1 on ENOMEM. */
int pg_relay_deallocate(pg_client *c, const uint8_t *msg, size_t total);
void pg_relay_set_unnamed(pg_stmt **slot, pg_stmt *st, pg_gateway *gw);

/* pg_sql.c: the little SQL Sluice must recognise. */
/* The statement name of "DEALLOCATE [PREPARE] name" (folded as the server folds it) copied to
 * out; false for anything else, DEALLOCATE ALL included. */
bool pg_sql_deallocate_name(const char *sql, char *out, size_t cap);
/* Whether a query text may reset session parameters to their defaults. */
bool pg_sql_may_reset(const char *sql, size_t len);

/* Handles a message of an idle client (no server) that Sluice can answer itself: a Parse of a
 * known statement, a DEALLOCATE, a LISTEN/UNLISTEN query. 1 when answered, 0 when a server is
 * needed, -1 when the client was closed. Sets *plain for pg_relay_client_msg: whether a Query's
 * text is plain, -1 for other messages. */
int pg_relay_idle_local(pg_client *c, uint8_t t, const uint8_t *msg, size_t total, int *plain);
/* The server's session went back to its connection defaults (DISCARD ALL, RESET ALL). */
int pg_server_params_reset(pg_server *s);

/* pg_notify.c: LISTEN emulation's channels, subscriptions and notification routing. */
/* A query made only of LISTEN/UNLISTEN from an idle client in transaction mode: 1 when taken
 * (answered now or once the listening connection confirms; c->listen_wait until then), 0 when
 * it is something else, -1 when the client was closed. */
int pg_notify_query(pg_client *c, const char *sql, size_t len);
void pg_notify_client_gone(pg_client *c);
/* Its close callback ran: what LISTEN emulation kept for it is freed. */
void pg_notify_client_free(pg_client *c);
/* Moves held notifications to the client's output when it is at a message boundary. */
void pg_notify_flush(pg_client *c);
/* From pg_core_tick: the listening connection's connect timeout, and its reopening after a
 * loss while clients still listen. */
void pg_notify_tick(pg_pool *p, uint64_t now);
/* Shutdown: the listening connection is closed and not reopened. */
void pg_notify_stop(pg_pool *p);
void pg_notify_free(pg_pool *p);

/* pg_count.c: the statistics kept on the message path (gateway/stats.h). */
/* A client enters or leaves PG_CL_WAITING. */
void pg_count_wait(pg_client *c, pg_client_state old, pg_client_state st);
/* A request of type t went to server s for its client (action FORWARD). */
void pg_count_request(pg_server *s, uint8_t t);
/* A ReadyForQuery answered a client's Query, Sync or FunctionCall on s. */
void pg_count_ready(pg_server *s);
/* An ErrorResponse body (len bytes) goes to a client of pool p. */
void pg_count_error(pg_pool *p, const uint8_t *body, size_t len);

/* pg_admin.c: the admin console's sessions (the virtual database sluice, alias pgbouncer). */
bool pg_admin_dbname(const char *dbname);
/* Logs c in to the console as user (its authentication done): 28000 unless admin_users or
 * stats_users lists it. */
void pg_admin_login(pg_client *c, const char *user);
/* One whole message of a console session. 0, or -1 when c was closed. */
int pg_admin_msg(pg_client *c, uint8_t t, const uint8_t *msg, size_t total);
/* Whether a command of c is still under way: its input waits. */
bool pg_admin_busy(const pg_client *c);
/* The session's user name (SHOW CLIENTS). */
const char *pg_admin_user(const pg_client *c);
/* Its close began (a command in progress may have closed it: the session stays readable until
 * pg_admin_client_free, from the close callback). */
void pg_admin_client_gone(pg_client *c);
void pg_admin_client_free(pg_client *c);
/* From the janitor: commands that wait (PAUSE, WAIT_CLOSE) are checked again. */
void pg_admin_tick(pg_gateway *gw);
/* The ParameterStatus messages a console session starts with. */
int pg_admin_params(gw_buf *out, gw_bufpool *bufs);

/* pg_pool.c, for the console: waiting clients of p get servers again after a pause. */
void pg_pool_resume(pg_pool *p);

/* pg_pin.c */
/* Why running sql would leave session state Sluice cannot carry between servers (a static
 * string), or NULL. *flags (may be NULL) receives pg_sql_scan's flags. */
const char *pg_pin_reason(const pg_pool *pool, const char *sql, size_t len, unsigned *flags);
void pg_pin(pg_client *c, const char *reason);
void pg_unpin(pg_client *c);

static inline gw_ctx *pg_ctx(const pg_conn *c)
{
    return c->gw->ctx;
}

#endif
