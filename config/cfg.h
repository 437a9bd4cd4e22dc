/*
 * cfg: Sluice's configuration, loaded from an INI file (libinih).
 *
 * Key names and meanings follow PgBouncer wherever the concept is the same. A loaded cfg is
 * immutable: a reload builds a new one and the caller swaps it whole.
 */
#ifndef SLUICE_CFG_H
#define SLUICE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cfg_pool_mode {
    CFG_POOL_SESSION = 0,     /* server stays with the client until it disconnects */
    CFG_POOL_TRANSACTION = 1, /* server returns to the pool at the end of each transaction */
} cfg_pool_mode;

typedef enum cfg_log_level {
    CFG_LOG_ERROR = 0,
    CFG_LOG_WARNING = 1,
    CFG_LOG_INFO = 2,
    CFG_LOG_DEBUG = 3,
} cfg_log_level;

/* log_format: how a log line is written (gateway/log.c). */
typedef enum cfg_log_format {
    CFG_LOGFMT_TEXT = 0, /* "time LEVEL [context] message" */
    CFG_LOGFMT_JSON = 1, /* one JSON object per line */
} cfg_log_format;

/* syslog_facility: PgBouncer's names, in this order (the values are not syslog's codes). */
typedef enum cfg_syslog_facility {
    CFG_FAC_AUTH = 0,
    CFG_FAC_AUTHPRIV,
    CFG_FAC_DAEMON,
    CFG_FAC_USER,
    CFG_FAC_LOCAL0,
    CFG_FAC_LOCAL1,
    CFG_FAC_LOCAL2,
    CFG_FAC_LOCAL3,
    CFG_FAC_LOCAL4,
    CFG_FAC_LOCAL5,
    CFG_FAC_LOCAL6,
    CFG_FAC_LOCAL7,
} cfg_syslog_facility;

/* How PostgreSQL clients prove who they are (PgBouncer's auth_type values and meanings). */
typedef enum cfg_auth_type {
    CFG_AUTH_TRUST = 0, /* any client may log in as any user; the server authenticates Sluice */
    CFG_AUTH_PLAIN,     /* cleartext password (AuthenticationCleartextPassword) */
    CFG_AUTH_MD5,       /* md5 challenge; SCRAM for a user whose secret is a SCRAM verifier */
    CFG_AUTH_SCRAM,     /* SCRAM-SHA-256 */
    CFG_AUTH_CERT,      /* client certificate; needs TLS, so no client can satisfy it yet */
    CFG_AUTH_HBA,       /* the method of the first matching auth_hba_file line */
} cfg_auth_type;

/* client_tls_sslmode and server_tls_sslmode: PgBouncer's values. The comments give the client
 * side's meanings; on the server side each is libpq's sslmode of the same name. */
typedef enum cfg_tls_mode {
    CFG_TLS_DISABLE = 0, /* no TLS: SSLRequest is answered 'N' */
    CFG_TLS_ALLOW,       /* TLS when the client asks for it */
    CFG_TLS_PREFER,      /* the same, on the accepting side */
    CFG_TLS_REQUIRE,     /* a TCP client without TLS is refused (28000) */
    CFG_TLS_VERIFY_CA,   /* and it must present a certificate signed by client_tls_ca_file */
    CFG_TLS_VERIFY_FULL, /* the same on the accepting side (no host name to check) */
} cfg_tls_mode;

/* A comma-separated list of names (admin_users, stats_users), owned by the cfg. */
typedef struct cfg_names {
    char **names;
    size_t n;
} cfg_names;

struct auth_userlist; /* auth/auth.h */
struct auth_hba;

/* One keyword=value pair, both NUL-terminated, owned by the cfg. */
typedef struct cfg_kv {
    char *key;
    char *value;
} cfg_kv;

/* One line of [databases]: `name = host=... port=... dbname=... [pool_size=N] [pool_mode=M]`. */
typedef struct cfg_database {
    char *name;   /* "*" is the fallback entry */
    cfg_kv *conn; /* libpq connection keywords in file order (pool_* keys removed) */
    size_t n_conn;
    int pool_size;          /* -1: use default_pool_size */
    int pool_mode;          /* -1: use the main pool_mode, else a cfg_pool_mode */
    int max_db_connections; /* -1: use the main max_db_connections; 0 = unlimited */
    /* PgBouncer's per-database auth_query settings; NULL means the [sluice] value. */
    char *auth_user;
    char *auth_dbname;
    char *auth_query;
    int line; /* line in the file, for diagnostics */
} cfg_database;

/* One line of [mongodb]: `name = listen_port=27018 uri=mongodb://... pool_size=10`. */
typedef struct cfg_mongo {
    char *name;
    char *listen_addr;              /* defaults to the main listen_addr */
    int listen_port;                /* required */
    char *uri;                      /* required; syntax validated by the mongo driver, not here */
    int pool_size;                  /* defaults to default_pool_size */
    uint64_t query_timeout_ms;      /* defaults to the main query_timeout */
    uint64_t query_wait_timeout_ms; /* defaults to the main query_wait_timeout */
    int max_client_conn;            /* clients of this line; 0 = not given: the main one */
    int min_pool_size;              /* backend connections kept open (MongoDB's minPoolSize) */
    uint64_t max_idle_time_ms;      /* idle backends closed after this (maxIdleTimeMS); 0 = never */
    int max_db_connections;         /* -1: the main max_db_connections; 0 = unlimited */
    /* CFG_AUTH_TRUST (default) or CFG_AUTH_SCRAM: clients log in to Sluice with SCRAM-SHA-256
     * or SCRAM-SHA-1, as users of auth_file (required then). */
    cfg_auth_type auth_type;
    /* TLS for this line's clients: the [sluice] client_tls_* values unless given on the line
     * (paths as given, see cfg_resolve_path). */
    int client_tls_sslmode; /* a cfg_tls_mode (-1 only while the file is read: not given) */
    char *client_tls_key_file, *client_tls_cert_file, *client_tls_ca_file;
    char *client_tls_protocols, *client_tls_ciphers;
    int line;
} cfg_mongo;

typedef struct cfg {
    char *path; /* the file this was loaded from */

    /* [sluice] */
    char *listen_addr;        /* default "127.0.0.1"; "*" means all addresses */
    int listen_port;          /* default 6432 */
    char *unix_socket_dir;    /* default "/tmp"; "" disables the Unix socket */
    char *metrics_addr;       /* default "127.0.0.1"; the HTTP metrics and probe endpoint */
    int metrics_port;         /* default 0 = no metrics endpoint */
    bool so_reuseport;        /* default 0: SO_REUSEPORT on the TCP listeners */
    cfg_pool_mode pool_mode;  /* default transaction */
    int default_pool_size;    /* default 20 */
    int min_pool_size;        /* default 0 */
    int max_client_conn;      /* default 100 */
    int max_db_connections;   /* default 0 = unlimited */
    int max_user_connections; /* server connections per user across databases; 0 = unlimited */
    int reserve_pool_size;    /* extra servers per pool for clients waiting too long; default 0 */
    char *server_reset_query; /* default "DISCARD ALL"; "" = none */
    bool server_reset_query_always; /* run it in transaction mode too; default 0 */
    char *server_check_query;       /* default "select 1"; "" = no check */
    /* Timeouts in milliseconds, 0 = disabled. The file gives seconds (fractions allowed). */
    uint64_t server_connect_timeout_ms;   /* default 15 s */
    uint64_t server_login_retry_ms;       /* default 15 s */
    uint64_t query_timeout_ms;            /* default 0 */
    uint64_t query_wait_timeout_ms;       /* default 120 s */
    uint64_t idle_transaction_timeout_ms; /* default 0 */
    uint64_t client_login_timeout_ms;     /* default 60 s */
    /* PgBouncer's meanings of 0: server_lifetime 0 means a server serves one client and then
     * closes; server_check_delay 0 means every reuse is checked; the others are then off. */
    uint64_t server_lifetime_ms;      /* default 3600 s */
    uint64_t server_idle_timeout_ms;  /* default 600 s */
    uint64_t server_check_delay_ms;   /* default 30 s */
    uint64_t client_idle_timeout_ms;  /* default 0 */
    uint64_t reserve_pool_timeout_ms; /* default 5 s */
    uint64_t autodb_idle_timeout_ms;  /* default 3600 s */
    uint64_t shutdown_timeout_ms;     /* default 60 s: bound of a graceful shutdown */
    int max_prepared_statements;      /* per server connection, default 200; 0 disables tracking */
    uint32_t max_packet_size;         /* bytes, default 2147483647 (PgBouncer's); min 1024 */
    uint32_t max_buffered_message;    /* bytes held whole per client message, default 16 MB */
    cfg_auth_type auth_type;          /* default trust */
    /* Paths as given; relative ones are read from the config file's directory. "" = none. */
    char *auth_file;       /* PgBouncer's userlist format */
    char *auth_hba_file;   /* pg_hba.conf subset, for auth_type hba */
    char *auth_query;      /* looks up a user missing from auth_file; "" = no lookup */
    char *auth_user;       /* the user auth_query runs as; "" = none (no lookup) */
    char *auth_dbname;     /* the database auth_query runs in; "" = the client's */
    cfg_names admin_users; /* stored for the admin console */
    cfg_names stats_users;
    bool auth_plain_without_tls; /* default 0: cleartext passwords only over Unix sockets */
    /* TLS for clients (PgBouncer's client_tls_* keys); paths as given, see cfg_resolve_path. */
    cfg_tls_mode client_tls_sslmode; /* default disable */
    char *client_tls_key_file;
    char *client_tls_cert_file;
    char *client_tls_ca_file;
    char *client_tls_protocols; /* default "secure" (TLS 1.2 and 1.3) */
    char *client_tls_ciphers;   /* default "default" */
    char *client_tls_ecdhcurve; /* default "auto" */
    char *client_tls_dheparams; /* default "auto" */
    /* TLS to servers (PgBouncer's server_tls_* keys): libpq parameters for lines that set none. */
    cfg_tls_mode server_tls_sslmode; /* default prefer */
    char *server_tls_ca_file;
    char *server_tls_key_file;
    char *server_tls_cert_file;
    char *server_tls_protocols; /* default "secure" */
    char *server_tls_ciphers;   /* default "default" */
    cfg_log_level log_level;    /* default info */
    uint64_t stats_period_ms;   /* default 60 s: the stats log line and SHOW STATS averages */
    cfg_log_format log_format;  /* default text */
    char *logfile;              /* appended to besides stderr; "" = none; see cfg_resolve_path */
    bool use_syslog;            /* the `syslog` key: also send lines to the local syslog */
    char *syslog_ident;         /* default "sluice" */
    cfg_syslog_facility syslog_facility; /* default daemon */
    bool log_connections;                /* default 1: a line per client login */
    bool log_disconnections;             /* default 1: a line per client close, with why */
    bool log_pooler_errors;              /* default 1: the errors Sluice sends clients */

    /* Loaded with the file, so --check validates them and a reload re-reads them. */
    struct auth_userlist *users; /* auth_file's users; NULL without auth_file */
    struct auth_hba *hba;        /* auth_hba_file's rules; NULL without auth_hba_file */

    cfg_database *dbs;
    size_t n_dbs;
    cfg_mongo *mongo;
    size_t n_mongo;
} cfg;

/*
 * Loads and validates path. On success returns 0 and stores a new cfg in *out (caller frees with
 * cfg_free). On failure returns -1 and *out is NULL. Every problem is written to diag (may be
 * NULL) as one line "path:line: message"; unknown keys suggest the nearest valid name.
 */
int cfg_load(const char *path, cfg **out, FILE *diag);
/* path as given when absolute, else relative to c's file's directory; "" stays "". Caller
 * frees; NULL when out of memory. */
char *cfg_resolve_path(const cfg *c, const char *path);
const char *cfg_tls_mode_name(cfg_tls_mode m);

/* Same as cfg_load but from a string in memory; name is used in diagnostics. */
int cfg_load_string(const char *text, const char *name, cfg **out, FILE *diag);

void cfg_free(cfg *c);

/* The [databases] entry for name, else the "*" entry, else NULL. */
const cfg_database *cfg_find_database(const cfg *c, const char *name);

/* Effective per-database values after applying main-section defaults. */
int cfg_db_pool_size(const cfg *c, const cfg_database *db);
cfg_pool_mode cfg_db_pool_mode(const cfg *c, const cfg_database *db);
int cfg_db_max_connections(const cfg *c, const cfg_database *db);

const char *cfg_pool_mode_name(cfg_pool_mode m);
const char *cfg_auth_type_name(cfg_auth_type t);

/* The database's auth_user, auth_dbname and auth_query, else the [sluice] ones; NULL when
 * neither sets one (auth_dbname NULL: the client's database). db may be NULL. */
const char *cfg_db_auth_user(const cfg *c, const cfg_database *db);
const char *cfg_db_auth_dbname(const cfg *c, const cfg_database *db);
const char *cfg_db_auth_query(const cfg *c, const cfg_database *db);

/* Whether names lists name. */
bool cfg_names_has(const cfg_names *l, const char *name);

/*
 * The [sluice] keys that differ between old and next and take effect only at a restart (the
 * listeners). Up to max of their names go to names (static strings); returns how many there are.
 */
size_t cfg_restart_keys(const cfg *old, const cfg *next, const char **names, size_t max);

/* Gives next the running values of the keys that need a restart (old gets next's), so the
 * config that replaces old describes the listeners that actually run. */
void cfg_keep_restart_keys(cfg *next, cfg *old);

/* Writes the [sluice] key reference (name, type and unit, default, reload policy, meaning) as a
 * Markdown table; config/README.md carries its output. */
void cfg_write_reference(FILE *out);
/* Writes the sluice.ini(5) manual page (roff, man macros): the file format, the [sluice] keys
 * from the same table, [databases] and [mongodb]. */
void cfg_write_man(FILE *out);

/* The admin console's view of the key table: the i-th key's name, its current value in c as
 * the file would give it, its default, and whether SET may change it (0), or -1 past the end. */
int cfg_key_show(const cfg *c, size_t i, const char **name, char *value, size_t cap,
                 const char **def, bool *changeable);
/* SET name = value on the running config (keys the console may change only). 0; -ENOENT for
 * an unknown key, -EPERM for one SET cannot change, -EINVAL for a bad value; err says why. */
int cfg_set(cfg *c, const char *name, const char *value, char *err, size_t cap);

#endif
