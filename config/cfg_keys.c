/*
 * cfg_keys: the [sluice] key table. Defaults, value parsing, range checks, the Markdown reference
 * and the reload policy all read the same rows, so they cannot drift apart.
 */
#include <stdlib.h>
#include <string.h>

#include "config/cfg_int.h"

#define OFF(f) offsetof(cfg, f)

const cfg_key cfg__keys[] = {
    {"listen_addr", CFG_T_STR, OFF(listen_addr), "127.0.0.1", CFG_RESTART,
     "Address for PostgreSQL clients; `*` listens on all addresses."},
    {"listen_port", CFG_T_PORT, OFF(listen_port), "6432", CFG_RESTART,
     "TCP port for PostgreSQL clients."},
    {"unix_socket_dir", CFG_T_STR, OFF(unix_socket_dir), "/tmp", CFG_RESTART,
     "Directory of the Unix socket `.s.PGSQL.<listen_port>`; empty disables it."},
    {"so_reuseport", CFG_T_BOOL, OFF(so_reuseport), "0", CFG_RESTART,
     "Sets SO_REUSEPORT on the TCP listeners (PostgreSQL and `[mongodb]`), so that several "
     "Sluice processes can listen on one port: the way to restart without refusing anyone."},
    {"pool_mode", CFG_T_MODE, OFF(pool_mode), "transaction", CFG_RELOAD,
     "When a server connection goes back to the pool: at client disconnect (`session`) or at "
     "the end of each transaction (`transaction`)."},
    {"default_pool_size", CFG_T_INT, OFF(default_pool_size), "20", CFG_RELOAD,
     "Server connections per (database, user) pool."},
    {"min_pool_size", CFG_T_INT0, OFF(min_pool_size), "0", CFG_RELOAD,
     "Server connections opened and kept per pool even when idle; at most default_pool_size."},
    {"max_client_conn", CFG_T_INT, OFF(max_client_conn), "100", CFG_RELOAD,
     "Client connections allowed at once; more are refused with SQLSTATE 53300."},
    {"max_db_connections", CFG_T_INT0, OFF(max_db_connections), "0", CFG_RELOAD,
     "Server connections per database across all users; 0 = unlimited."},
    {"server_reset_query", CFG_T_STR, OFF(server_reset_query), "DISCARD ALL", CFG_RELOAD,
     "Run on a server connection before another client gets it in session mode; empty = none."},
    {"server_login_retry", CFG_T_MS, OFF(server_login_retry_ms), "15", CFG_RELOAD,
     "After a server refuses Sluice's credentials (SQLSTATE class 28: wrong password, no hba "
     "entry), no new login to that pool is tried for this long, and clients that need one get "
     "the server's error at once; a client whose own login brings a new credential "
     "(passthrough) ends the wait. Other failures are retried after 0.5 s."},
    {"server_connect_timeout", CFG_T_MS, OFF(server_connect_timeout_ms), "15", CFG_RELOAD,
     "Time allowed to open a server connection, login included."},
    {"query_timeout", CFG_T_MS, OFF(query_timeout_ms), "0", CFG_RELOAD,
     "A query running longer is cancelled on the server (the client gets SQLSTATE 57014 and "
     "keeps its connection); 0 = off."},
    {"query_wait_timeout", CFG_T_MS, OFF(query_wait_timeout_ms), "120", CFG_RELOAD,
     "How long a client may wait for a server connection before it is disconnected; 0 = "
     "forever."},
    {"idle_transaction_timeout", CFG_T_MS, OFF(idle_transaction_timeout_ms), "0", CFG_RELOAD,
     "A client idle inside a transaction this long is rolled back and disconnected (SQLSTATE "
     "25P03); 0 = off."},
    {"client_login_timeout", CFG_T_MS, OFF(client_login_timeout_ms), "60", CFG_RELOAD,
     "Time a new client has to complete its login; 0 = off."},
    {"max_prepared_statements", CFG_T_INT0, OFF(max_prepared_statements), "200", CFG_RELOAD,
     "Protocol-level prepared statements tracked per server connection in transaction mode; "
     "0 turns tracking off."},
    {"max_packet_size", CFG_T_SIZE, OFF(max_packet_size), "2147483647", CFG_RELOAD,
     "Largest client message accepted; a larger one ends the connection (SQLSTATE 08P01)."},
    {"max_buffered_message", CFG_T_SIZE, OFF(max_buffered_message), "16MB", CFG_RELOAD,
     "Largest client message Sluice holds whole to read it (a Query, and Parse, Bind, Describe "
     "and Close in transaction mode); a larger one ends the connection (SQLSTATE 54000). Other "
     "messages (COPY data, large values in session mode) stream through."},
    {"auth_type", CFG_T_AUTH, OFF(auth_type), "trust", CFG_RELOAD,
     "How PostgreSQL clients authenticate: `trust` (anyone), `plain` (cleartext password), `md5` "
     "(md5 challenge; SCRAM for a user whose secret is a SCRAM verifier), `scram-sha-256`, "
     "`cert` (the CN of the client's TLS certificate, verified against client_tls_ca_file, is "
     "the user name), "
     "`hba` (the method of the first matching auth_hba_file line)."},
    {"auth_file", CFG_T_STR, OFF(auth_file), "", CFG_RELOAD,
     "Users file in PgBouncer's format (`\"user\" \"secret\"` per line; the secret is a password, "
     "an md5 hash or a SCRAM-SHA-256 verifier); relative to the config file's directory; "
     "re-read on reload."},
    {"auth_hba_file", CFG_T_STR, OFF(auth_hba_file), "", CFG_RELOAD,
     "pg_hba.conf-style rules for auth_type hba; relative to the config file's directory; "
     "re-read on reload."},
    {"auth_query", CFG_T_STR, OFF(auth_query),
     "SELECT usename, passwd FROM pg_shadow WHERE usename=$1", CFG_RELOAD,
     "Looks up the secret of a user missing from auth_file, run as auth_user; empty disables "
     "the lookup."},
    {"auth_user", CFG_T_STR, OFF(auth_user), "", CFG_RELOAD,
     "The user auth_query runs as; empty: no lookup (unless a database line sets one)."},
    {"auth_dbname", CFG_T_STR, OFF(auth_dbname), "", CFG_RELOAD,
     "The database auth_query runs in; empty: the one the client asked for."},
    {"admin_users", CFG_T_LIST, OFF(admin_users), "", CFG_RELOAD,
     "Comma-separated users allowed to run admin console commands (stored for later use)."},
    {"stats_users", CFG_T_LIST, OFF(stats_users), "", CFG_RELOAD,
     "Comma-separated users allowed read-only admin console commands (stored for later use)."},
    {"auth_plain_without_tls", CFG_T_BOOL, OFF(auth_plain_without_tls), "0", CFG_RELOAD,
     "Whether a TCP client without TLS may send a cleartext password (auth_type plain, hba "
     "`password`); by default only TLS and Unix-socket clients may (others get SQLSTATE 28000)."},
    {"client_tls_sslmode", CFG_T_TLSMODE, OFF(client_tls_sslmode), "disable", CFG_RELOAD,
     "TLS for clients: `disable` (SSLRequest answered `N`), `allow` and `prefer` (TLS when the "
     "client asks), `require` (a TCP client without TLS gets SQLSTATE 28000 before any "
     "password is asked), `verify-ca` and `verify-full` (also a client certificate signed by "
     "client_tls_ca_file). Applies to new connections."},
    {"client_tls_key_file", CFG_T_STR, OFF(client_tls_key_file), "", CFG_RELOAD,
     "Private key (PEM) of the certificate Sluice shows clients; re-read on reload."},
    {"client_tls_cert_file", CFG_T_STR, OFF(client_tls_cert_file), "", CFG_RELOAD,
     "Certificate (PEM, chain allowed) Sluice shows clients; re-read on reload."},
    {"client_tls_ca_file", CFG_T_STR, OFF(client_tls_ca_file), "", CFG_RELOAD,
     "CAs (PEM) that sign client certificates: asked for with verify-ca and verify-full, and "
     "checked when given (auth_type cert)."},
    {"client_tls_protocols", CFG_T_STR, OFF(client_tls_protocols), "secure", CFG_RELOAD,
     "TLS versions for clients: `secure` (tlsv1.2 and tlsv1.3), `all`, `legacy`, or a list of "
     "tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3 (the range they span)."},
    {"client_tls_ciphers", CFG_T_STR, OFF(client_tls_ciphers), "default", CFG_RELOAD,
     "TLS 1.2 cipher list in OpenSSL's syntax; `default` and `secure`: AEAD ciphers with "
     "forward secrecy; `compat`, `legacy`: `HIGH:!aNULL`. TLS 1.3 suites are OpenSSL's."},
    {"client_tls_ecdhcurve", CFG_T_STR, OFF(client_tls_ecdhcurve), "auto", CFG_RELOAD,
     "Elliptic-curve groups for the key exchange, OpenSSL's list syntax; `auto`: OpenSSL's "
     "defaults."},
    {"client_tls_dheparams", CFG_T_STR, OFF(client_tls_dheparams), "auto", CFG_RELOAD,
     "Finite-field DHE key exchange for TLS 1.2: `none`, or `auto` / `legacy` (OpenSSL's "
     "built-in groups sized to the certificate)."},
    {"shutdown_timeout", CFG_T_MS, OFF(shutdown_timeout_ms), "60", CFG_RELOAD,
     "How long SIGTERM (and SHUTDOWN WAIT_FOR_SERVERS / WAIT_FOR_CLIENTS) waits for "
     "transactions or clients to finish before closing what is left; 0 = no limit."},
    {"log_level", CFG_T_LOG, OFF(log_level), "info", CFG_RELOAD,
     "`error`, `warning`, `info` or `debug`."},
    {NULL, 0, 0, NULL, 0, NULL},
};

_Static_assert(sizeof cfg__keys / sizeof cfg__keys[0] <= CFG__MAX_KEYS + 1,
               "cfg__loader.key_line is too small for the key table");

static const char *const log_names[] = {"error", "warning", "info", "debug", NULL};

/* In cfg_auth_type order. */
static const char *const auth_names[] = {"trust", "plain", "md5", "scram-sha-256",
                                         "cert",  "hba",   NULL};
/* PgBouncer's other methods, so a config written for it gets "not supported", not "unknown". */
static const char *const pgbouncer_auth[] = {"any", "pam", "ldap", "peer", NULL};

/* In cfg_tls_mode order. */
static const char *const tls_mode_names[] = {"disable",   "allow",       "prefer", "require",
                                             "verify-ca", "verify-full", NULL};

const char *cfg_tls_mode_name(cfg_tls_mode m)
{
    return (size_t)m < sizeof tls_mode_names / sizeof tls_mode_names[0] - 1 ? tls_mode_names[m]
                                                                            : "?";
}

static const char *const bool_names[] = {"0", "off", "no", "false", "1", "on", "yes", "true", NULL};

const char *cfg_auth_type_name(cfg_auth_type t)
{
    return (size_t)t < sizeof auth_names / sizeof auth_names[0] - 1 ? auth_names[t] : "?";
}

const cfg_key *cfg__key(const char *name)
{
    for (const cfg_key *k = cfg__keys; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

static int set_auth(cfg__loader *l, const cfg_key *k, const char *v, int line, void *field)
{
    for (size_t i = 0; auth_names[i]; i++)
        if (strcmp(v, auth_names[i]) == 0) {
            *(cfg_auth_type *)field = (cfg_auth_type)i;
            return 0;
        }
    for (size_t i = 0; pgbouncer_auth[i]; i++)
        if (strcmp(v, pgbouncer_auth[i]) == 0) {
            cfg__error(l, line, "%s: '%s' is not supported", k->name, v);
            return -1;
        }
    cfg__error(l, line, "%s: expected trust, plain, md5, scram-sha-256, cert or hba, got '%s'",
               k->name, v);
    return -1;
}

int cfg__set_key(cfg__loader *l, const cfg_key *k, const char *v, int line)
{
    void *field = (char *)l->c + k->offset;
    long n;
    uint64_t u;
    cfg_pool_mode mode;
    switch (k->type) {
    case CFG_T_STR: {
        char *s = strdup(v);
        if (!s) {
            cfg__error(l, line, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = s;
        return 0;
    }
    case CFG_T_INT:
    case CFG_T_INT0: {
        long min = k->type == CFG_T_INT ? 1 : 0;
        if (cfg__parse_int(v, CFG__INT_MAX, &n) != 0 || n < min) {
            cfg__error(l, line, "%s: expected a whole number from %ld to %d, got '%s'", k->name,
                       min, CFG__INT_MAX, v);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    }
    case CFG_T_PORT:
        if (cfg__parse_int(v, 65535, &n) != 0 || n < 1) {
            cfg__error(l, line, "%s: expected a port number from 1 to 65535, got '%s'", k->name, v);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    case CFG_T_MS:
        if (cfg__parse_duration_ms(v, &u) != 0) {
            cfg__error(l, line,
                       "%s: expected seconds (e.g. 15, 0.5) or a number with ms, s, min or h, "
                       "got '%s'",
                       k->name, v);
            return -1;
        }
        *(uint64_t *)field = u;
        return 0;
    case CFG_T_SIZE:
        if (cfg__parse_size(v, &u) != 0 || u < 1024 || u > INT32_MAX) {
            cfg__error(l, line,
                       "%s: expected a size from 1024 to 2147483647 bytes (kB, MB, GB allowed), "
                       "got '%s'",
                       k->name, v);
            return -1;
        }
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    case CFG_T_MODE:
        if (cfg__parse_pool_mode(v, &mode) != 0) {
            cfg__error(l, line, "%s: expected session or transaction, got '%s'", k->name, v);
            return -1;
        }
        *(cfg_pool_mode *)field = mode;
        return 0;
    case CFG_T_AUTH:
        return set_auth(l, k, v, line, field);
    case CFG_T_LIST: {
        cfg_names names;
        if (cfg__parse_names(v, &names) != 0) {
            cfg__error(l, line, "out of memory");
            return -1;
        }
        cfg__free_names(field);
        *(cfg_names *)field = names;
        return 0;
    }
    case CFG_T_BOOL:
        for (int i = 0; bool_names[i]; i++)
            if (strcmp(v, bool_names[i]) == 0) {
                *(bool *)field = i >= 4;
                return 0;
            }
        cfg__error(l, line, "%s: expected 0 or 1 (off/on, no/yes, false/true), got '%s'", k->name,
                   v);
        return -1;
    case CFG_T_TLSMODE:
        for (int i = 0; tls_mode_names[i]; i++)
            if (strcmp(v, tls_mode_names[i]) == 0) {
                *(cfg_tls_mode *)field = (cfg_tls_mode)i;
                return 0;
            }
        cfg__error(l, line,
                   "%s: expected disable, allow, prefer, require, verify-ca or verify-full, "
                   "got '%s'",
                   k->name, v);
        return -1;
    case CFG_T_LOG:
        for (int i = 0; log_names[i]; i++)
            if (strcmp(v, log_names[i]) == 0) {
                *(cfg_log_level *)field = (cfg_log_level)i;
                return 0;
            }
        cfg__error(l, line, "%s: expected error, warning, info or debug, got '%s'", k->name, v);
        return -1;
    }
    abort(); /* a row with a type this switch does not know */
}

int cfg__set_defaults(cfg *c)
{
    /* Defaults go through the same parser as the file, so a bad default fails every test. */
    cfg__loader l = {.c = c, .name = "(defaults)"};
    for (const cfg_key *k = cfg__keys; k->name; k++)
        if (cfg__set_key(&l, k, k->def, 0) != 0)
            return -1;
    return 0;
}

static const char *type_unit(cfg_type t)
{
    switch (t) {
    case CFG_T_STR:
        return "string";
    case CFG_T_INT:
        return "integer ≥ 1";
    case CFG_T_INT0:
        return "integer ≥ 0";
    case CFG_T_PORT:
        return "port 1–65535";
    case CFG_T_MS:
        return "seconds";
    case CFG_T_SIZE:
        return "bytes";
    case CFG_T_MODE:
        return "session \\| transaction";
    case CFG_T_AUTH:
        return "trust \\| plain \\| md5 \\| scram-sha-256 \\| cert \\| hba";
    case CFG_T_LIST:
        return "list of names";
    case CFG_T_BOOL:
        return "0 \\| 1";
    case CFG_T_LOG:
        return "error \\| warning \\| info \\| debug";
    case CFG_T_TLSMODE:
        return "disable \\| allow \\| prefer \\| require \\| verify-ca \\| verify-full";
    }
    return "?";
}

void cfg_write_reference(FILE *out)
{
    fputs("| key | type / unit | default | on reload | meaning |\n", out);
    fputs("|---|---|---|---|---|\n", out);
    for (const cfg_key *k = cfg__keys; k->name; k++)
        fprintf(out, "| `%s` | %s | %s%s%s | %s | %s |\n", k->name, type_unit(k->type),
                *k->def ? "`" : "", *k->def ? k->def : "(empty)", *k->def ? "`" : "",
                k->reload == CFG_RELOAD ? "applied" : "needs restart", k->doc);
}

/* The bytes a key of type t occupies in struct cfg. */
static size_t field_size(cfg_type t)
{
    switch (t) {
    case CFG_T_STR:
        return sizeof(char *);
    case CFG_T_MS:
        return sizeof(uint64_t);
    case CFG_T_SIZE:
        return sizeof(uint32_t);
    case CFG_T_MODE:
        return sizeof(cfg_pool_mode);
    case CFG_T_AUTH:
        return sizeof(cfg_auth_type);
    case CFG_T_LOG:
        return sizeof(cfg_log_level);
    case CFG_T_TLSMODE:
        return sizeof(cfg_tls_mode);
    case CFG_T_BOOL:
        return sizeof(bool);
    case CFG_T_LIST:
        return sizeof(cfg_names);
    case CFG_T_INT:
    case CFG_T_INT0:
    case CFG_T_PORT:
        return sizeof(int);
    }
    abort();
}

static bool same_value(const cfg_key *k, const cfg *a, const cfg *b)
{
    const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
    if (k->type == CFG_T_STR)
        return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
    if (k->type == CFG_T_LIST) {
        const cfg_names *na = (const cfg_names *)fa, *nb = (const cfg_names *)fb;
        if (na->n != nb->n)
            return false;
        for (size_t i = 0; i < na->n; i++)
            if (strcmp(na->names[i], nb->names[i]) != 0)
                return false;
        return true;
    }
    /* Scalars: bool and the enums are written only through cfg__set_key, so equal values have
     * equal bytes. */
    return memcmp(fa, fb, field_size(k->type)) == 0;
}

void cfg_keep_restart_keys(cfg *next, cfg *old)
{
    for (const cfg_key *k = cfg__keys; k->name; k++) {
        if (k->reload != CFG_RESTART || same_value(k, old, next))
            continue;
        /* Exchanged, not copied: each cfg keeps owning exactly one of the two strings. */
        char tmp[sizeof(cfg_names)];
        size_t n = field_size(k->type);
        char *a = (char *)next + k->offset, *b = (char *)old + k->offset;
        memcpy(tmp, a, n);
        memcpy(a, b, n);
        memcpy(b, tmp, n);
    }
}

size_t cfg_restart_keys(const cfg *old, const cfg *next, const char **names, size_t max)
{
    size_t n = 0;
    for (const cfg_key *k = cfg__keys; k->name; k++) {
        if (k->reload != CFG_RESTART || same_value(k, old, next))
            continue;
        if (n < max)
            names[n] = k->name;
        n++;
    }
    return n;
}
