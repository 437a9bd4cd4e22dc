/* Unit tests for configuration loading and validation. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "config/cfg.h"
#include "config/cfg_int.h"

/* Loads text as "test.ini"; returns the cfg (or NULL) and the diagnostics in *diag (caller
 * frees). */
static cfg *load(const char *text, char **diag)
{
    size_t len;
    FILE *f = open_memstream(diag, &len);
    cr_assert_not_null(f);
    cfg *c = (cfg *)1;
    int rc = cfg_load_string(text, "test.ini", &c, f);
    fclose(f);
    cr_assert_eq(rc, c ? 0 : -1, "the return code and *out agree");
    return c;
}

/* Asserts that text fails to load and that its diagnostics contain each of the lines given. */
static void fails_with(const char *text, const char *const *expected)
{
    char *diag;
    cfg *c = load(text, &diag);
    cr_assert_null(c, "loaded although it should not:\n%s", text);
    for (; *expected; expected++)
        cr_assert(strstr(diag, *expected), "missing \"%s\" in:\n%s", *expected, diag);
    free(diag);
}

#define FAILS_WITH(text, ...) fails_with(text, (const char *const[]){__VA_ARGS__, NULL})

static cfg *loads(const char *text)
{
    char *diag;
    cfg *c = load(text, &diag);
    cr_assert_not_null(c, "%s", diag);
    cr_assert_str_empty(diag, "a valid file gives no diagnostics");
    free(diag);
    return c;
}

static const char *source_root(void)
{
    const char *root = getenv("MESON_SOURCE_ROOT");
    return root ? root : SOURCE_ROOT;
}

/* ---- [sluice] ---- */

Test(cfg, defaults_match_pgbouncer_names_and_values)
{
    cfg *c = loads("[sluice]\n");
    cr_assert_str_eq(c->path, "test.ini");
    cr_assert_str_eq(c->listen_addr, "127.0.0.1");
    cr_assert_eq(c->listen_port, 6432);
    cr_assert_str_eq(c->unix_socket_dir, "/tmp");
    cr_assert_eq(c->pool_mode, CFG_POOL_TRANSACTION);
    cr_assert_eq(c->default_pool_size, 20);
    cr_assert_eq(c->min_pool_size, 0);
    cr_assert_eq(c->max_client_conn, 100);
    cr_assert_eq(c->max_db_connections, 0);
    cr_assert_str_eq(c->server_reset_query, "DISCARD ALL");
    cr_assert_eq(c->server_connect_timeout_ms, 15000);
    cr_assert_eq(c->query_timeout_ms, 0);
    cr_assert_eq(c->query_wait_timeout_ms, 120000);
    cr_assert_eq(c->idle_transaction_timeout_ms, 0);
    cr_assert_eq(c->client_login_timeout_ms, 60000);
    cr_assert_eq(c->max_prepared_statements, 200);
    cr_assert_eq(c->max_packet_size, 2147483647u);
    cr_assert_eq(c->auth_type, CFG_AUTH_TRUST);
    cr_assert_str_eq(c->auth_file, "");
    cr_assert_str_eq(c->auth_hba_file, "");
    cr_assert_str_eq(c->auth_query, "SELECT usename, passwd FROM pg_shadow WHERE usename=$1");
    cr_assert_str_eq(c->auth_user, "");
    cr_assert_str_eq(c->auth_dbname, "");
    cr_assert_eq(c->admin_users.n, 0);
    cr_assert_eq(c->stats_users.n, 0);
    cr_assert_eq(c->auth_plain_without_tls, false);
    cr_assert_null(c->users);
    cr_assert_null(c->hba);
    cr_assert_eq(c->log_level, CFG_LOG_INFO);
    cr_assert_eq(c->n_dbs, 0);
    cr_assert_eq(c->n_mongo, 0);
    cfg_free(c);

    c = loads("");
    cr_assert_eq(c->listen_port, 6432, "an empty file is all defaults");
    cfg_free(c);
}

Test(cfg, every_key_is_parsed)
{
    cfg *c = loads("[sluice]\nlisten_addr = *\nlisten_port = 7000\nunix_socket_dir =\n"
                   "pool_mode = session\ndefault_pool_size = 7\nmin_pool_size = 2\n"
                   "max_client_conn = 900\nmax_db_connections = 30\nserver_reset_query =\n"
                   "server_connect_timeout = 1.5\nquery_timeout = 250ms\n"
                   "query_wait_timeout = 2min\nidle_transaction_timeout = 1h\n"
                   "client_login_timeout = 0\nmax_prepared_statements = 0\n"
                   "max_packet_size = 64kB\nauth_type = trust\nlog_level = debug\n");
    cr_assert_str_eq(c->listen_addr, "*");
    cr_assert_eq(c->listen_port, 7000);
    cr_assert_str_eq(c->unix_socket_dir, "");
    cr_assert_eq(c->pool_mode, CFG_POOL_SESSION);
    cr_assert_eq(c->default_pool_size, 7);
    cr_assert_eq(c->min_pool_size, 2);
    cr_assert_eq(c->max_client_conn, 900);
    cr_assert_eq(c->max_db_connections, 30);
    cr_assert_str_eq(c->server_reset_query, "");
    cr_assert_eq(c->server_connect_timeout_ms, 1500);
    cr_assert_eq(c->query_timeout_ms, 250);
    cr_assert_eq(c->query_wait_timeout_ms, 120000);
    cr_assert_eq(c->idle_transaction_timeout_ms, 3600000);
    cr_assert_eq(c->client_login_timeout_ms, 0);
    cr_assert_eq(c->max_prepared_statements, 0);
    cr_assert_eq(c->max_packet_size, 65536u);
    cr_assert_eq(c->log_level, CFG_LOG_DEBUG);
    cfg_free(c);

    static const char *const levels[] = {"error", "warning", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        char text[64];
        snprintf(text, sizeof text, "[sluice]\nlog_level = %s\n", levels[i]);
        c = loads(text);
        cr_assert_eq(c->log_level, (cfg_log_level)i);
        cfg_free(c);
    }
}

Test(cfg, durations_take_seconds_or_a_unit)
{
    static const struct {
        const char *in;
        uint64_t ms;
    } good[] = {{"15", 15000},  {"0.5", 500},     {".25", 250},      {"1.25s", 1250},
                {"250ms", 250}, {"2min", 120000}, {"2 min", 120000}, {"1h", 3600000},
                {"0", 0},       {"0.0001", 1},    {"1.5ms", 2},      {"0.1234567891234", 123}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t ms = 12345;
        cr_assert_eq(cfg__parse_duration_ms(good[i].in, &ms), 0, "'%s'", good[i].in);
        cr_assert_eq(ms, good[i].ms, "'%s' gave %llu", good[i].in, (unsigned long long)ms);
    }
    static const char *const bad[] = {"",
                                      "-1",
                                      "nan",
                                      "inf",
                                      "1e3",
                                      "0x10",
                                      "5 sec",
                                      "1.2.3",
                                      ".",
                                      "+5",
                                      " 5",
                                      "5m",
                                      "10 S",
                                      "99999999999999999999",
                                      "100000000000h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms;
        cr_assert_eq(cfg__parse_duration_ms(bad[i], &ms), -1, "'%s' accepted", bad[i]);
    }
}

Test(cfg, sizes_take_bytes_or_a_1024_based_unit)
{
    static const struct {
        const char *in;
        uint64_t bytes;
    } good[] = {{"1024", 1024},      {"64kB", 65536}, {"64KB", 65536},   {"16MB", 16u << 20},
                {"1GB", 1ull << 30}, {"100 B", 100},  {"2 MB", 2u << 20}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t n = 0;
        cr_assert_eq(cfg__parse_size(good[i].in, &n), 0, "'%s'", good[i].in);
        cr_assert_eq(n, good[i].bytes, "'%s'", good[i].in);
    }
    static const char *const bad[] = {
        "", "1TB", "-5", "abc", "1.5MB", "kB", "1 kb", "0x400", "18446744073709551615GB"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t n;
        cr_assert_eq(cfg__parse_size(bad[i], &n), -1, "'%s' accepted", bad[i]);
    }
    cfg *c = loads("[sluice]\nmax_packet_size = 1kB\n");
    cr_assert_eq(c->max_packet_size, 1024u, "the minimum is allowed");
    cfg_free(c);
    FAILS_WITH("[sluice]\nmax_packet_size = 2GB\n",
               "test.ini:2: max_packet_size: expected a size from 1024 to 2147483647 bytes "
               "(kB, MB, GB allowed), got '2GB'");
    FAILS_WITH("[sluice]\nmax_packet_size = 1023\n", "test.ini:2: max_packet_size");
}

Test(cfg, comments_whitespace_and_line_endings)
{
    cfg *c = loads("\xEF\xBB\xBF; leading comment\r\n# another\r\n[sluice] ; main section\r\n"
                   "   listen_port = 7001   ; inline comment\r\n"
                   "\tserver_reset_query = SELECT 'a ;b'; RESET ALL ; trailing\r\n"
                   "pool_mode=session\r\n");
    cr_assert_eq(c->listen_port, 7001);
    cr_assert_str_eq(c->server_reset_query, "SELECT 'a ;b'; RESET ALL");
    cr_assert_eq(c->pool_mode, CFG_POOL_SESSION);
    cfg_free(c);
}

Test(cfg, indented_lines_are_not_continuations)
{
    /* inih would pass "  port=5432" to the handler as a second value for "app". */
    cfg *c =
        loads("[databases]\napp = host=x\n  other = host=y\n\n  [sluice]\n  listen_port = 7\n");
    cr_assert_eq(c->n_dbs, 2);
    cr_assert_str_eq(c->dbs[1].name, "other");
    cr_assert_eq(c->listen_port, 7);
    cfg_free(c);
}

Test(cfg, sections_in_any_order)
{
    cfg *c = loads("[mongodb]\nm = listen_port=27018 uri=mongodb://h/\n[databases]\n"
                   "* = host=h\n[sluice]\ndefault_pool_size = 4\nquery_timeout = 3\n");
    cr_assert_eq(c->mongo[0].pool_size, 4, "defaults come from [sluice] even when it is later");
    cr_assert_eq(c->mongo[0].query_timeout_ms, 3000);
    cr_assert_eq(cfg_db_pool_size(c, cfg_find_database(c, "x")), 4);
    cfg_free(c);
}

/* ---- [databases] ---- */

Test(cfg, database_lines_and_fallback)
{
    cfg *c = loads("[sluice]\ndefault_pool_size = 9\nmax_db_connections = 30\n[databases]\n"
                   "app = host=127.0.0.1 port=5432 dbname=app user=app password='a b''c' "
                   "pool_size=3 pool_mode=session max_db_connections=0 sslmode=disable\n"
                   "* = host=/var/run/postgresql\n"
                   "q = password='it\\'s ;x' ; a comment\n"
                   "empty =\n");
    cr_assert_eq(c->n_dbs, 4);
    const cfg_database *app = cfg_find_database(c, "app");
    cr_assert_str_eq(app->name, "app");
    cr_assert_eq(app->line, 5);
    cr_assert_eq(app->n_conn, 6, "pool_size, pool_mode, max_db_connections are not libpq's");
    static const char *const keys[] = {"host", "port", "dbname", "user", "password", "sslmode"};
    static const char *const vals[] = {"127.0.0.1", "5432", "app", "app", "a b'c", "disable"};
    for (size_t i = 0; i < 6; i++) {
        cr_assert_str_eq(app->conn[i].key, keys[i], "file order is kept");
        cr_assert_str_eq(app->conn[i].value, vals[i]);
    }
    cr_assert_eq(cfg_db_pool_size(c, app), 3);
    cr_assert_eq(cfg_db_pool_mode(c, app), CFG_POOL_SESSION);
    cr_assert_eq(cfg_db_max_connections(c, app), 0, "0 here means unlimited, not 'use 30'");

    const cfg_database *other = cfg_find_database(c, "anything");
    cr_assert_str_eq(other->name, "*");
    cr_assert_eq(other->pool_size, -1);
    cr_assert_eq(cfg_db_pool_size(c, other), 9);
    cr_assert_eq(cfg_db_pool_mode(c, other), CFG_POOL_TRANSACTION);
    cr_assert_eq(cfg_db_max_connections(c, other), 30);

    const cfg_database *q = cfg_find_database(c, "q");
    cr_assert_eq(q->n_conn, 1);
    cr_assert_str_eq(q->conn[0].value, "it's ;x", "quoted text is not a comment");
    cr_assert_eq(cfg_find_database(c, "empty")->n_conn, 0);
    cfg_free(c);

    c = loads("[databases]\napp = host=x\n");
    cr_assert_null(cfg_find_database(c, "other"), "no fallback without a * entry");
    cr_assert_not_null(cfg_find_database(c, "app"));
    cfg_free(c);
}

Test(cfg, lines_longer_than_inih_buffer)
{
    char pw[1001];
    memset(pw, 'p', 1000);
    pw[1000] = 0;
    char text[2000];
    snprintf(text, sizeof text,
             "[databases]\nbig = host=db.example.com password='%s' pool_size=5\nnext = host=n\n",
             pw);
    cfg *c = loads(text);
    cr_assert_eq(c->n_dbs, 2);
    cr_assert_str_eq(c->dbs[0].conn[1].value, pw);
    cr_assert_eq(c->dbs[0].pool_size, 5);
    cr_assert_eq(c->dbs[1].line, 3, "line numbers stay right after a long line");
    cfg_free(c);
}

Test(cfg, database_errors)
{
    FAILS_WITH(
        "[databases]\na = host=x prot=1\n",
        "test.ini:2: unknown connection keyword 'prot' in database 'a'; did you mean 'port'?");
    FAILS_WITH("[databases]\na = host=x pool_siz=1\n",
               "test.ini:2: unknown connection keyword 'pool_siz' in database 'a'; did you mean "
               "'pool_size'?");
    FAILS_WITH("[databases]\na = host=x reserve_pool=2\n",
               "test.ini:2: database 'a': 'reserve_pool' is a PgBouncer setting Sluice does "
               "not support");
    FAILS_WITH("[databases]\na = host=x\n\na = host=y\n",
               "test.ini:4: database 'a' is defined twice (first on line 2)");
    FAILS_WITH("[databases]\nb = host\n", "test.ini:2: database 'b': expected keyword=value pairs");
    FAILS_WITH("[databases]\nb = password='open\n",
               "test.ini:2: database 'b': unterminated quoted value");
    FAILS_WITH("[databases]\nb = host=x host=y\n",
               "test.ini:2: database 'b': 'host' is given twice");
    FAILS_WITH("[databases]\nb = pool_size=0 pool_mode=statement max_db_connections=-1\n",
               "test.ini:2: database 'b': pool_size: expected a whole number from 1 to 1000000, "
               "got '0'",
               "test.ini:2: database 'b': pool_mode: expected session or transaction, got "
               "'statement'",
               "test.ini:2: database 'b': max_db_connections: expected a whole number from 0 to "
               "1000000, got '-1'");
}

Test(cfg, database_auth_settings)
{
    cfg *c = loads("[sluice]\nauth_user = pgb\nauth_query = SELECT 1\n[databases]\n"
                   "a = host=x auth_user=own auth_dbname=postgres auth_query='SELECT p FROM u "
                   "WHERE n=$1'\n"
                   "b = host=y\n");
    const cfg_database *a = cfg_find_database(c, "a"), *b = cfg_find_database(c, "b");
    cr_assert_eq(a->n_conn, 1, "auth_* keys are not libpq's");
    cr_assert_str_eq(cfg_db_auth_user(c, a), "own");
    cr_assert_str_eq(cfg_db_auth_dbname(c, a), "postgres");
    cr_assert_str_eq(cfg_db_auth_query(c, a), "SELECT p FROM u WHERE n=$1");
    cr_assert_null(b->auth_user, "NULL: the [sluice] value");
    cr_assert_str_eq(cfg_db_auth_user(c, b), "pgb");
    cr_assert_null(cfg_db_auth_dbname(c, b), "no auth_dbname: the client's database");
    cr_assert_str_eq(cfg_db_auth_query(c, b), "SELECT 1");
    cr_assert_str_eq(cfg_db_auth_user(c, NULL), "pgb");
    cfg_free(c);
}

/* ---- [mongodb] ---- */

Test(cfg, mongodb_lines_take_main_defaults)
{
    cfg *c = loads("[sluice]\nquery_wait_timeout = 5\ndefault_pool_size = 6\n"
                   "listen_addr = 10.0.0.1\n[mongodb]\n"
                   "m = listen_port=27018 uri=mongodb://127.0.0.1:27017/?appname=x pool_size=10\n"
                   "n = listen_port=27019 uri='mongodb://h/?w=1&replicaSet=rs' "
                   "listen_addr=0.0.0.0 query_timeout=2 query_wait_timeout=500ms\n");
    cr_assert_eq(c->n_mongo, 2);
    const cfg_mongo *m = &c->mongo[0], *n = &c->mongo[1];
    cr_assert_str_eq(m->name, "m");
    cr_assert_eq(m->line, 6);
    cr_assert_eq(m->listen_port, 27018);
    cr_assert_str_eq(m->uri, "mongodb://127.0.0.1:27017/?appname=x");
    cr_assert_eq(m->pool_size, 10);
    cr_assert_str_eq(m->listen_addr, "10.0.0.1");
    cr_assert_eq(m->query_timeout_ms, 0);
    cr_assert_eq(m->query_wait_timeout_ms, 5000);
    cr_assert_eq(n->pool_size, 6);
    cr_assert_str_eq(n->uri, "mongodb://h/?w=1&replicaSet=rs");
    cr_assert_eq(n->query_timeout_ms, 2000);
    cr_assert_eq(n->query_wait_timeout_ms, 500);
    cr_assert_str_eq(n->listen_addr, "0.0.0.0");
    cfg_free(c);
}

Test(cfg, mongodb_client_tls_defaults_to_the_main_keys)
{
    cfg *c = loads("[mongodb]\n"
                   "m = listen_port=27018 uri=mongodb://h/\n"
                   "n = listen_port=27019 uri=mongodb://h/ client_tls_sslmode=verify-full "
                   "client_tls_ca_file=other.crt client_tls_protocols=tlsv1.3\n"
                   "[sluice]\nclient_tls_sslmode = prefer\nclient_tls_key_file = s.key\n"
                   "client_tls_cert_file = s.crt\nclient_tls_ca_file = ca.crt\n"
                   "client_tls_ciphers = HIGH\n");
    const cfg_mongo *m = &c->mongo[0], *n = &c->mongo[1];
    cr_assert_eq(m->client_tls_sslmode, CFG_TLS_PREFER, "from [sluice], even when it is later");
    cr_assert_str_eq(m->client_tls_key_file, "s.key");
    cr_assert_str_eq(m->client_tls_ca_file, "ca.crt");
    cr_assert_str_eq(m->client_tls_protocols, "secure");
    cr_assert_eq(n->client_tls_sslmode, CFG_TLS_VERIFY_FULL);
    cr_assert_str_eq(n->client_tls_cert_file, "s.crt");
    cr_assert_str_eq(n->client_tls_ca_file, "other.crt");
    cr_assert_str_eq(n->client_tls_protocols, "tlsv1.3");
    cr_assert_str_eq(n->client_tls_ciphers, "HIGH");
    cfg_free(c);

    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x client_tls_sslmode=sometimes\n",
               "test.ini:2: mongodb entry 'm': client_tls_sslmode: expected disable, allow, "
               "prefer, require, verify-ca or verify-full, got 'sometimes'");
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x client_tls_sslmode=require\n",
               "test.ini:2: mongodb entry 'm': client_tls_sslmode require needs "
               "client_tls_key_file and client_tls_cert_file");
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x client_tls_sslmode=verify-ca "
               "client_tls_key_file=k client_tls_cert_file=c\n",
               "test.ini:2: mongodb entry 'm': client_tls_sslmode verify-ca needs "
               "client_tls_ca_file");
}

Test(cfg, mongodb_max_client_conn)
{
    cfg *c = loads("[mongodb]\nm = listen_port=27018 uri=mongodb://h/ max_client_conn=7\n"
                   "n = listen_port=27019 uri=mongodb://h/\n");
    cr_assert_eq(c->mongo[0].max_client_conn, 7);
    cr_assert_eq(c->mongo[1].max_client_conn, 0, "not given: the driver takes the main one");
    cfg_free(c);
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x max_client_conn=0\n",
               "test.ini:2: mongodb entry 'm': max_client_conn: expected a whole number from 1 "
               "to");
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x max_client_con=3\n",
               "test.ini:2: unknown key 'max_client_con' in mongodb entry 'm'; did you mean "
               "'max_client_conn'?");
}

Test(cfg, mongodb_backend_lifecycle_keys)
{
    cfg *c = loads("[sluice]\nmax_db_connections = 4\n[mongodb]\n"
                   "m = listen_port=27018 uri=mongodb://h/ pool_size=5 min_pool_size=2 "
                   "max_idle_time=1.5 max_db_connections=0\n"
                   "n = listen_port=27019 uri=mongodb://h/\n");
    cr_assert_eq(c->mongo[0].min_pool_size, 2);
    cr_assert_eq(c->mongo[0].max_idle_time_ms, 1500);
    cr_assert_eq(c->mongo[0].max_db_connections, 0, "0 on the line: unlimited, not the main");
    cr_assert_eq(c->mongo[1].min_pool_size, 0);
    cr_assert_eq(c->mongo[1].max_idle_time_ms, 0, "idle backends are kept unless asked");
    cr_assert_eq(c->mongo[1].max_db_connections, 4, "not given: the main one");
    cfg_free(c);
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x pool_size=2 min_pool_size=3\n",
               "test.ini:2: mongodb entry 'm': min_pool_size 3 exceeds pool_size 2");
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x max_idle_time=-1 min_pool_size=x\n",
               "test.ini:2: mongodb entry 'm': max_idle_time: expected seconds",
               "test.ini:2: mongodb entry 'm': min_pool_size: expected a whole number from 0");
}

Test(cfg, lifecycle_keys_take_pgbouncer_defaults)
{
    cfg *c = loads("[sluice]\n");
    cr_assert_eq(c->server_lifetime_ms, 3600000);
    cr_assert_eq(c->server_idle_timeout_ms, 600000);
    cr_assert_eq(c->server_check_delay_ms, 30000);
    cr_assert_str_eq(c->server_check_query, "select 1");
    cr_assert_eq(c->server_reset_query_always, false);
    cr_assert_eq(c->client_idle_timeout_ms, 0);
    cr_assert_eq(c->reserve_pool_size, 0);
    cr_assert_eq(c->reserve_pool_timeout_ms, 5000);
    cr_assert_eq(c->max_user_connections, 0);
    cr_assert_eq(c->autodb_idle_timeout_ms, 3600000);
    cfg_free(c);
}

Test(cfg, mongodb_errors)
{
    FAILS_WITH("[mongodb]\nm = uri=mongodb://x/\n",
               "test.ini:2: mongodb entry 'm': listen_port= is required");
    FAILS_WITH("[mongodb]\nm = listen_port=1\n", "test.ini:2: mongodb entry 'm': uri= is required");
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x pool_sise=3\n",
               "test.ini:2: unknown key 'pool_sise' in mongodb entry 'm'; did you mean "
               "'pool_size'?");
    FAILS_WITH("[mongodb]\nm = listen_port=0 uri=x query_timeout=soon\n",
               "test.ini:2: mongodb entry 'm': listen_port: expected a whole number from 1 to "
               "65535, got '0'",
               "test.ini:2: mongodb entry 'm': query_timeout: expected seconds");
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x\nn = listen_port=27018 uri=y\n"
               "o = listen_port=6432 uri=z\nm = listen_port=1 uri=x\n",
               "test.ini:3: mongodb entry 'n': listen_port 27018 is already used by 'm'",
               "test.ini:4: mongodb entry 'o': listen_port 6432 is already the PostgreSQL "
               "listen_port",
               "test.ini:5: mongodb entry 'm' is defined twice (first on line 2)");
}

/* ---- diagnostics ---- */

Test(cfg, errors_name_file_line_and_suggest)
{
    FAILS_WITH("[sluice]\npool_mod = session\npool_mode = sesion\nlisten_port = 70000\n"
               "query_timeout = soon\n[databses]\nignored = x\n[databases]\nb = host\n",
               "test.ini:2: unknown key 'pool_mod' in [sluice]; did you mean 'pool_mode'?",
               "test.ini:3: pool_mode: expected session or transaction, got 'sesion'",
               "test.ini:4: listen_port: expected a port number from 1 to 65535, got '70000'",
               "test.ini:5: query_timeout: expected seconds (e.g. 15, 0.5) or a number with ms, "
               "s, min or h, got 'soon'",
               "test.ini:6: unknown section 'databses'; did you mean 'databases'?",
               "test.ini:9: database 'b': expected keyword=value pairs");
    char *diag;
    cr_assert_null(load("[sluice]\ncompletely_unrelated = 1\n[Sluice]\n", &diag));
    cr_assert(strstr(diag, "test.ini:2: unknown key 'completely_unrelated' in [sluice]\n"), "%s",
              diag);
    cr_assert(strstr(diag, "test.ini:3: unknown section 'Sluice'; did you mean 'sluice'?"), "%s",
              diag);
    free(diag);
    cr_assert_null(load("[nowhere]\na = 1\nb = 2\n", &diag));
    cr_assert_eq(strchr(diag, '\n'), diag + strlen(diag) - 1,
                 "the entries of an unknown section are not reported again: %s", diag);
    free(diag);
}

Test(cfg, syntax_errors_are_all_reported)
{
    FAILS_WITH("listen_port = 1\n[sluice]\nthis line has no equals sign\n[sluice\n"
               "= 5\nfoo:bar = 1\nanother bad line\n[databases] junk\n",
               "test.ini:1: 'listen_port' comes before any [section]",
               "test.ini:3: expected 'name = value' or '[section]', got 'this line has no "
               "equals sign'",
               "test.ini:4: expected ']' to close the section name",
               "test.ini:5: missing a name before '='",
               "test.ini:6: 'foo:bar': a name may not contain ':' or ';'",
               "test.ini:7: expected 'name = value' or '[section]', got 'another bad line'",
               "test.ini:8: unexpected text after [databases]: 'junk'");
}

Test(cfg, value_and_range_errors)
{
    FAILS_WITH("[sluice]\nauth_type = pam\nmin_pool_size = 30\nmax_client_conn = 0\n"
               "log_level = verbose\nlisten_port = 5\nlisten_port = 6\ndefault_pool_size = "
               "2000000\nauth_type = trsut\n",
               "test.ini:2: auth_type: 'pam' is not supported",
               "test.ini:4: max_client_conn: expected a whole number from 1 to 1000000, got '0'",
               "test.ini:5: log_level: expected error, warning, info or debug, got 'verbose'",
               "test.ini:7: listen_port is set twice (first on line 6)",
               "test.ini:8: default_pool_size: expected a whole number from 1 to 1000000",
               "test.ini:9: auth_type is set twice (first on line 2)");
    FAILS_WITH("[sluice]\nauth_type = trsut\n",
               "test.ini:2: auth_type: expected trust, plain, md5, scram-sha-256, cert or hba, "
               "got 'trsut'");
    FAILS_WITH("[sluice]\nmin_pool_size = 30\n",
               "test.ini:2: min_pool_size (30) is larger than default_pool_size (20)");
    FAILS_WITH("[sluice]\nmin_pool_size = 5\n\ndefault_pool_size = 4\n",
               "test.ini:4: min_pool_size (5) is larger than default_pool_size (4)");
    FAILS_WITH("[sluice]\nlisten_port =\n", "test.ini:2: listen_port: expected a port number");
}

Test(cfg, auth_keys)
{
    static const char *const types[] = {"trust", "plain", "md5", "scram-sha-256", "cert", "hba"};
    char empty[] = "/tmp/sluice-cfg-hba-XXXXXX"; /* an hba file without lines */
    int fd = mkstemp(empty);
    cr_assert_geq(fd, 0);
    close(fd);
    for (int i = 0; i < 6; i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "[sluice]\nauth_type = %s\nauth_user = pgb\nauth_hba_file = %s\n", types[i],
                 i == CFG_AUTH_HBA ? empty : "");
        cfg *c = loads(text);
        cr_assert_eq(c->auth_type, (cfg_auth_type)i);
        cr_assert_str_eq(cfg_auth_type_name(c->auth_type), types[i]);
        cfg_free(c);
    }
    unlink(empty);
    cfg *c = loads("[sluice]\nadmin_users = alice, bob,,alice ,\t carol\nstats_users = s\n"
                   "auth_plain_without_tls = on\nauth_dbname = postgres\n");
    cr_assert_eq(c->admin_users.n, 3, "empty items and repeats are dropped");
    cr_assert_str_eq(c->admin_users.names[0], "alice");
    cr_assert_str_eq(c->admin_users.names[1], "bob");
    cr_assert_str_eq(c->admin_users.names[2], "carol");
    cr_assert(cfg_names_has(&c->admin_users, "carol"));
    cr_assert_not(cfg_names_has(&c->admin_users, "s"));
    cr_assert_eq(c->stats_users.n, 1);
    cr_assert(c->auth_plain_without_tls);
    cr_assert_str_eq(c->auth_dbname, "postgres");
    cfg_free(c);

    static const char *const bools[] = {"0", "off", "no", "false", "1", "on", "yes", "true"};
    for (int i = 0; i < 8; i++) {
        char text[128];
        snprintf(text, sizeof text, "[sluice]\nauth_plain_without_tls = %s\n", bools[i]);
        c = loads(text);
        cr_assert_eq(c->auth_plain_without_tls, i >= 4, "%s", bools[i]);
        cfg_free(c);
    }
    FAILS_WITH("[sluice]\nauth_plain_without_tls = maybe\n",
               "test.ini:2: auth_plain_without_tls: expected 0 or 1");
}

Test(cfg, auth_type_needs_its_files)
{
    FAILS_WITH("[sluice]\n\nauth_type = hba\n", "test.ini:3: auth_type hba needs auth_hba_file");
    FAILS_WITH("[sluice]\nauth_type = md5\n",
               "test.ini:2: auth_type md5 needs auth_file, or auth_user and auth_query to look "
               "users up");
    FAILS_WITH("[sluice]\nauth_type = scram-sha-256\nauth_user = pgb\nauth_query =\n",
               "test.ini:2: auth_type scram-sha-256 needs auth_file");
    FAILS_WITH("[sluice]\nauth_type = plain\n", "test.ini:2: auth_type plain needs auth_file");
    /* A lookup configured on one database line is enough. */
    cfg_free(loads("[sluice]\nauth_type = md5\n[databases]\na = host=x auth_user=pgb\n"));
}

Test(cfg, client_tls_keys)
{
    cfg *c = loads("[sluice]\n");
    cr_assert_eq(c->client_tls_sslmode, CFG_TLS_DISABLE, "TLS is off unless asked for");
    cr_assert_str_eq(c->client_tls_protocols, "secure");
    cfg_free(c);
    c = loads("[sluice]\nclient_tls_sslmode = verify-full\nclient_tls_key_file = k.pem\n"
              "client_tls_cert_file = c.pem\nclient_tls_ca_file = /etc/ca.pem\n");
    cr_assert_eq(c->client_tls_sslmode, CFG_TLS_VERIFY_FULL);
    char *p = cfg_resolve_path(c, c->client_tls_key_file);
    cr_assert_str_eq(p, "k.pem", "relative to the file's directory (test.ini has none)");
    free(p);
    p = cfg_resolve_path(c, c->client_tls_ca_file);
    cr_assert_str_eq(p, "/etc/ca.pem");
    free(p);
    cfg_free(c);
    FAILS_WITH("[sluice]\nclient_tls_sslmode = on\n",
               "test.ini:2: client_tls_sslmode: expected disable, allow, prefer, require, "
               "verify-ca or verify-full, got 'on'");
    FAILS_WITH("[sluice]\nclient_tls_sslmode = require\n",
               "test.ini:2: client_tls_sslmode require needs client_tls_key_file and "
               "client_tls_cert_file");
    FAILS_WITH("[sluice]\nclient_tls_sslmode = verify-ca\nclient_tls_key_file = k\n"
               "client_tls_cert_file = c\n",
               "test.ini:2: client_tls_sslmode verify-ca needs client_tls_ca_file");
}

/* Writes text to a new file in /tmp; returns its path (static buffer per slot). */
static const char *temp_file(int slot, const char *text)
{
    static char paths[3][64];
    snprintf(paths[slot], sizeof paths[slot], "/tmp/sluice-cfg-auth-XXXXXX");
    int fd = mkstemp(paths[slot]);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return paths[slot];
}

Test(cfg, users_and_hba_files_are_loaded_with_the_config)
{
    const char *users = temp_file(0, "\"alice\" \"secret\"\n\"bob\" \"md5"
                                     "0123456789abcdef0123456789abcdef\"\n");
    const char *hba = temp_file(1, "local all all trust\nhost all all 127.0.0.1/32 md5\n");
    char text[512];
    snprintf(text, sizeof text, "[sluice]\nauth_type = hba\nauth_file = %s\nauth_hba_file = %s\n",
             users, hba);
    cfg *c = loads(text);
    cr_assert_not_null(c->users);
    cr_assert_not_null(c->hba);
    cr_assert_eq(auth_userlist_count(c->users), 2);
    const auth_secret *s = auth_userlist_find(c->users, "alice");
    cr_assert_not_null(s);
    cr_assert_eq(s->kind, AUTH_SECRET_PLAIN);
    cr_assert_eq(auth_userlist_find(c->users, "bob")->kind, AUTH_SECRET_MD5);
    cr_assert_null(auth_userlist_find(c->users, "carol"));
    cfg_free(c);

    /* A relative path is read from the config file's directory. */
    const char *cfgpath = temp_file(2, "");
    FILE *f = fopen(cfgpath, "w");
    fprintf(f, "[sluice]\nauth_type = md5\nauth_file = %s\n", strrchr(users, '/') + 1);
    fclose(f);
    c = NULL;
    cr_assert_eq(cfg_load(cfgpath, &c, NULL), 0);
    cr_assert_not_null(auth_userlist_find(c->users, "alice"));
    cfg_free(c);

    /* Errors in either file name it and its line, and fail the load. */
    f = fopen(users, "w");
    fputs("\"alice\" \"x\"\n\"broken\n", f);
    fclose(f);
    char want[256];
    snprintf(want, sizeof want, "%s:2:", users);
    char want2[256];
    snprintf(want2, sizeof want2, "test.ini:3: auth_file: '%s' could not be loaded", users);
    FAILS_WITH(text, want, want2);

    f = fopen(users, "w");
    fputs("\"alice\" \"x\"\n", f);
    fclose(f);
    f = fopen(hba, "w");
    fputs("local all all trust\nhost all all 300.1.1.1/8 md5\n", f);
    fclose(f);
    snprintf(want, sizeof want, "%s:2:", hba);
    FAILS_WITH(text, want, "test.ini:4: auth_hba_file:");

    unlink(hba);
    FAILS_WITH(text, "test.ini:4: auth_hba_file:");
    unlink(users);
    unlink(cfgpath);
}

Test(cfg, mongodb_auth_type)
{
    const char *users = temp_file(0, "\"alice\" \"secret\"\n");
    char text[512];
    snprintf(text, sizeof text,
             "[sluice]\nauth_file = %s\n[mongodb]\nm = listen_port=27018 uri=mongodb://h/ "
             "auth_type=scram-sha-256\nn = listen_port=27019 uri=mongodb://h/\n"
             "o = listen_port=27020 uri=mongodb://h/ auth_type=trust\n",
             users);
    cfg *c = loads(text);
    cr_assert_eq(c->mongo[0].auth_type, CFG_AUTH_SCRAM);
    cr_assert_eq(c->mongo[1].auth_type, CFG_AUTH_TRUST, "trust when not given");
    cr_assert_eq(c->mongo[2].auth_type, CFG_AUTH_TRUST);
    cr_assert_eq(c->auth_type, CFG_AUTH_TRUST, "the PostgreSQL auth_type is another key");
    cr_assert_not_null(auth_userlist_find(c->users, "alice"));
    cfg_free(c);
    unlink(users);

    /* The users come from auth_file only: auth_query looks up PostgreSQL users. */
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x auth_type=scram-sha-256\n",
               "test.ini:2: mongodb entry 'm': auth_type scram-sha-256 needs auth_file in "
               "[sluice]");
    FAILS_WITH("[sluice]\nauth_user = pgbouncer\n[mongodb]\n"
               "m = listen_port=27018 uri=x auth_type=scram-sha-256\n",
               "test.ini:4: mongodb entry 'm': auth_type scram-sha-256 needs auth_file");
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x auth_type=md5\n",
               "test.ini:2: mongodb entry 'm': auth_type: expected trust or scram-sha-256, got "
               "'md5'");
    FAILS_WITH("[mongodb]\nm = listen_port=27018 uri=x auth_typ=trust\n",
               "test.ini:2: unknown key 'auth_typ' in mongodb entry 'm'; did you mean "
               "'auth_type'?");
}

Test(cfg, no_diag_stream_still_fails)
{
    cfg *c = (cfg *)1;
    cr_assert_eq(cfg_load_string("[sluice]\nbad = 1\n", "x", &c, NULL), -1);
    cr_assert_null(c);
}

/* ---- files ---- */

Test(cfg, files_on_disk)
{
    char path[] = "/tmp/sluice-cfg-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("[sluice]\nlisten_port = 6500\n[databases]\n* = host=h\n", f);
    fclose(f);
    cfg *c = NULL;
    cr_assert_eq(cfg_load(path, &c, NULL), 0);
    cr_assert_eq(c->listen_port, 6500);
    cr_assert_str_eq(c->path, path);
    cr_assert_str_eq(cfg_find_database(c, "db")->conn[0].value, "h");
    cfg_free(c);

    f = fopen(path, "w");
    fputs("[sluice]\n\nlisten_prot = 1\n", f);
    fclose(f);
    char *diag;
    size_t len;
    FILE *d = open_memstream(&diag, &len);
    cr_assert_eq(cfg_load(path, &c, d), -1);
    fclose(d);
    char want[128];
    snprintf(want, sizeof want,
             "%s:3: unknown key 'listen_prot' in [sluice]; did you mean "
             "'listen_port'?\n",
             path);
    cr_assert_str_eq(diag, want);
    free(diag);

    unlink(path);
    d = open_memstream(&diag, &len);
    cr_assert_eq(cfg_load(path, &c, d), -1, "a missing file is an error");
    fclose(d);
    cr_assert_null(c);
    cr_assert(strstr(diag, path) && strstr(diag, "cannot open"), "%s", diag);
    free(diag);
}

/* Reads a whole file under the source root into a string the caller frees. */
static char *slurp(const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", source_root(), rel);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char *s = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&s, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, out);
    fclose(out);
    fclose(f);
    return s;
}

Test(cfg, example_config_is_valid_and_shows_every_default)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config/sluice.example.ini", source_root());
    char *diag;
    size_t len;
    FILE *d = open_memstream(&diag, &len);
    cfg *c = NULL;
    int rc = cfg_load(path, &c, d);
    fclose(d);
    cr_assert_eq(rc, 0, "the shipped example is valid:\n%s", diag);
    cr_assert_not_null(cfg_find_database(c, "*"));
    cr_assert_str_eq(cfg_find_database(c, "*")->conn[1].value, "15432");
    cfg_free(c);
    free(diag);

    char *text = slurp("config/sluice.example.ini");
    for (const cfg_key *k = cfg__keys; k->name; k++) {
        char line[128];
        /* An empty default is written "key =", without the trailing blank. */
        snprintf(line, sizeof line, *k->def ? "\n%s = %s\n" : "\n%s =\n", k->name, k->def);
        cr_assert(strstr(text, line), "the example sets %s to its default %s", k->name, k->def);
    }
    free(text);
}

Test(cfg, readme_carries_the_key_table)
{
    char *table;
    size_t len;
    FILE *f = open_memstream(&table, &len);
    cfg_write_reference(f);
    fclose(f);
    char *readme = slurp("config/README.md");
    cr_assert(strstr(readme, table),
              "config/README.md must contain the output of cfg_write_reference:\n%s", table);
    free(readme);
    free(table);
}

/* ---- reload policy ---- */

Test(cfg, restart_keys_are_the_listeners)
{
    cfg *a = loads("[sluice]\n");
    cfg *b = loads("[sluice]\nlisten_port = 7000\nunix_socket_dir =\npool_mode = session\n"
                   "query_timeout = 5\n");
    const char *names[4];
    cr_assert_eq(cfg_restart_keys(a, a, names, 4), 0);
    cr_assert_eq(cfg_restart_keys(a, b, names, 4), 2);
    cr_assert_str_eq(names[0], "listen_port");
    cr_assert_str_eq(names[1], "unix_socket_dir");
    cr_assert_eq(cfg_restart_keys(a, b, names, 1), 2,
                 "the count is complete even when names is short");
    cfg_free(a);
    cfg_free(b);
}

Test(cfg, a_reload_keeps_the_running_listeners)
{
    cfg *old = loads("[sluice]\nlisten_port = 7000\nso_reuseport = 1\n");
    cfg *next = loads("[sluice]\nlisten_port = 7001\nunix_socket_dir = /run/x\n"
                      "query_timeout = 5\n");
    cfg_keep_restart_keys(next, old);
    cr_assert_eq(next->listen_port, 7000);
    cr_assert_str_eq(next->unix_socket_dir, "/tmp");
    cr_assert(next->so_reuseport);
    cr_assert_eq(next->query_timeout_ms, 5000, "reloadable keys keep the new value");
    cr_assert_eq(old->listen_port, 7001, "exchanged: each side frees one string");
    cr_assert_str_eq(old->unix_socket_dir, "/run/x");
    const char *names[4];
    cr_assert_eq(cfg_restart_keys(old, next, names, 4), 3);
    cfg_free(old);
    cfg_free(next);
}

Test(cfg, key_table_is_complete)
{
    for (const cfg_key *k = cfg__keys; k->name; k++) {
        cr_assert(k->doc && *k->doc, "%s has a doc string", k->name);
        cr_assert_not_null(k->def, "%s has a default", k->name);
        cr_assert_eq(cfg__key(k->name), k);
    }
    cr_assert_null(cfg__key("nope"));
}

/* ---- text helpers ---- */

Test(cfg, nearest_and_pairs)
{
    const char *names[] = {"listen_port", "listen_addr", "pool_mode", NULL};
    cr_assert_str_eq(cfg__nearest("listen_prot", names, sizeof(char *)), "listen_port");
    cr_assert_str_eq(cfg__nearest("POOL_MODE", names, sizeof(char *)), "pool_mode");
    cr_assert_null(cfg__nearest("completely_different", names, sizeof(char *)));
    cfg_kv *kv;
    size_t n;
    const char *err;
    cr_assert_eq(cfg__split_pairs("a=1 b = 'x y' c=\\'z d=''", &kv, &n, &err), 0);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(kv[1].key, "b");
    cr_assert_str_eq(kv[1].value, "x y");
    cr_assert_str_eq(kv[2].value, "'z");
    cr_assert_str_eq(kv[3].value, "");
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
    cr_assert_eq(cfg__split_pairs("a='open", &kv, &n, &err), -1);
    cr_assert_str_eq(err, "unterminated quoted value");
    cr_assert_eq(cfg__split_pairs("=x", &kv, &n, &err), -1);
    cr_assert_str_eq(err, "expected keyword=value pairs");
}

/* ---- logging keys and the manual page ---- */

Test(cfg, logging_keys)
{
    cfg *c = loads("[sluice]\n");
    cr_assert_eq(c->log_format, CFG_LOGFMT_TEXT);
    cr_assert_str_eq(c->logfile, "");
    cr_assert_not(c->use_syslog);
    cr_assert_str_eq(c->syslog_ident, "sluice");
    cr_assert_eq(c->syslog_facility, CFG_FAC_DAEMON);
    cr_assert(c->log_connections && c->log_disconnections && c->log_pooler_errors,
              "PgBouncer's defaults: all on");
    cfg_free(c);
    c = loads("[sluice]\nlog_format = json\nlogfile = /var/log/sluice/sluice.log\nsyslog = 1\n"
              "syslog_ident = pool-a\nsyslog_facility = local7\nlog_connections = 0\n"
              "log_disconnections = off\nlog_pooler_errors = no\n");
    cr_assert_eq(c->log_format, CFG_LOGFMT_JSON);
    cr_assert_str_eq(c->logfile, "/var/log/sluice/sluice.log");
    cr_assert(c->use_syslog);
    cr_assert_str_eq(c->syslog_ident, "pool-a");
    cr_assert_eq(c->syslog_facility, CFG_FAC_LOCAL7);
    cr_assert_not(c->log_connections || c->log_disconnections || c->log_pooler_errors);
    cfg_free(c);
}

Test(cfg, logging_keys_refuse_bad_values)
{
    FAILS_WITH(
        "[sluice]\nlog_format = xml\nsyslog_facility = kern\nsyslog = maybe\n",
        "test.ini:2: log_format: expected text or json, got 'xml'",
        "test.ini:3: syslog_facility: expected auth, authpriv, daemon, user, local0, local1, "
        "local2, local3, local4, local5, local6 or local7, got 'kern'",
        "test.ini:4: syslog: expected 0 or 1");
}

Test(cfg, man_page_has_every_key)
{
    char *page;
    size_t len;
    FILE *f = open_memstream(&page, &len);
    cfg_write_man(f);
    fclose(f);
    cr_assert(strncmp(page, ".TH SLUICE.INI 5 ", 17) == 0);
    for (const cfg_key *k = cfg__keys; k->name; k++) {
        char entry[128];
        snprintf(entry, sizeof entry, "\n.TP\n.B %s\n(", k->name);
        cr_assert(strstr(page, entry), "sluice.ini(5) documents %s", k->name);
    }
    /* roff must not see a request where text was meant, nor a raw backslash or non-ASCII. */
    for (const char *line = page; *line; line = strchr(line, '\n') + 1) {
        if (*line == '\'')
            cr_assert_fail("a line starts with a quote: %.60s", line);
        if (!strchr(line, '\n'))
            break;
    }
    for (const unsigned char *p = (const unsigned char *)page; *p; p++)
        cr_assert(*p < 0x80, "non-ASCII byte in the page at %zu",
                  (size_t)(p - (const unsigned char *)page));
    free(page);
}
