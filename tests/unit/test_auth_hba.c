/*
 * Unit tests of auth/hba.c: the pg_hba.conf subset PgBouncer accepts.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/auth.h"

static auth_hba *parse(const char *text)
{
    auth_hba *h;
    cr_assert_eq(auth_hba_parse(text, strlen(text), "hba.conf", &h, stderr), 0, "%s", text);
    return h;
}

/* Parsing text fails; the diagnostics contain want. */
static void refused(const char *text, const char *want)
{
    char *d;
    size_t dlen;
    FILE *diag = open_memstream(&d, &dlen);
    auth_hba *h = (auth_hba *)1;
    cr_assert_eq(auth_hba_parse(text, strlen(text), "hba.conf", &h, diag), -1, "%s", text);
    fclose(diag);
    cr_assert_null(h);
    cr_assert_not_null(strstr(d, want), "want \"%s\" in \"%s\"", want, d);
    free(d);
}

/* The line matching a client (addr NULL: Unix socket), or 0 for none; *m its method. */
static int match(const auth_hba *h, const char *addr, bool tls, const char *db, const char *user,
                 auth_method *m)
{
    struct sockaddr_storage ss = {0};
    if (addr) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, addr, &in->sin_addr) == 1)
            in->sin_family = AF_INET;
        else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1)
            in6->sin6_family = AF_INET6;
        else
            cr_assert_fail("bad test address %s", addr);
    }
    const auth_hba_client c = {
        .addr = addr ? (struct sockaddr *)&ss : NULL, .tls = tls, .database = db, .user = user};
    int line = -1;
    auth_method dummy;
    const int rc = auth_hba_match(h, &c, m ? m : &dummy, &line);
    if (rc == AUTH_FAIL)
        return 0;
    cr_assert_eq(rc, 0);
    return line;
}

Test(auth_hba, first_match_wins_and_no_match_fails)
{
    auth_hba *h = parse("# comment\n"
                        "\n"
                        "local   all   postgres            trust\n"
                        "local   all   all                 md5   # trailing comment\n"
                        "host    all   all   10.0.0.0/8    reject\n"
                        "host    all   all   10.1.0.0/16   scram-sha-256\n"
                        "host    app   alice 0.0.0.0/0     password\n");
    auth_method m;
    cr_assert_eq(match(h, NULL, false, "db", "postgres", &m), 3);
    cr_assert_eq(m, AUTH_M_TRUST);
    cr_assert_eq(match(h, NULL, false, "db", "bob", &m), 4);
    cr_assert_eq(m, AUTH_M_MD5);
    cr_assert_eq(match(h, "10.1.2.3", false, "db", "bob", &m), 5, "first match wins");
    cr_assert_eq(m, AUTH_M_REJECT);
    cr_assert_eq(match(h, "192.168.1.1", false, "app", "alice", &m), 7);
    cr_assert_eq(m, AUTH_M_PASSWORD);
    cr_assert_eq(match(h, "192.168.1.1", false, "app", "bob", &m), 0);
    cr_assert_eq(match(h, "192.168.1.1", false, "other", "alice", &m), 0);
    cr_assert_eq(match(h, "::1", false, "app", "alice", &m), 0, "IPv4 rules only");
    auth_hba_free(h);

    h = parse("");
    cr_assert_eq(match(h, NULL, false, "db", "u", NULL), 0);
    auth_hba_free(h);
}

Test(auth_hba, cidr_and_netmask_v4_v6)
{
    auth_hba *h = parse("host all all 192.168.1.0/24 md5\n"
                        "host all all 172.16.0.0 255.240.0.0 trust\n"
                        "host all all 2001:db8::/32 scram-sha-256\n"
                        "host all all fe80:: ffff:ffff:ffff:ffff:: reject\n"
                        "host all all 127.0.0.1/32 cert\n"
                        "host all all ::1/128 password\n"
                        "host all all 0.0.0.0/0 reject\n");
    cr_assert_eq(match(h, "192.168.1.200", false, "d", "u", NULL), 1);
    cr_assert_eq(match(h, "192.168.2.1", false, "d", "u", NULL), 7);
    cr_assert_eq(match(h, "172.31.255.255", false, "d", "u", NULL), 2);
    cr_assert_eq(match(h, "172.32.0.0", false, "d", "u", NULL), 7);
    cr_assert_eq(match(h, "2001:db8:ffff::1", false, "d", "u", NULL), 3);
    cr_assert_eq(match(h, "2001:db9::1", false, "d", "u", NULL), 0);
    cr_assert_eq(match(h, "fe80::1234", false, "d", "u", NULL), 4);
    cr_assert_eq(match(h, "127.0.0.1", false, "d", "u", NULL), 5);
    cr_assert_eq(match(h, "::1", false, "d", "u", NULL), 6);
    cr_assert_eq(match(h, "::ffff:192.168.1.7", false, "d", "u", NULL), 1, "v4-mapped is IPv4");
    cr_assert_eq(match(h, NULL, false, "d", "u", NULL), 0, "no local line");
    auth_hba_free(h);

    /* /0 on IPv6, and address bits outside the mask (ignored, with a warning) */
    h = parse("host all all 10.1.2.3/8 md5\nhost all all ::/0 trust\n");
    cr_assert_eq(match(h, "10.200.0.1", false, "d", "u", NULL), 1);
    cr_assert_eq(match(h, "2001:db8::1", false, "d", "u", NULL), 2);
    auth_hba_free(h);
}

Test(auth_hba, local_ssl_nossl_and_all)
{
    auth_hba *h = parse("hostssl   all all all cert\n"
                        "hostnossl all all all md5\n"
                        "local     all all     reject\n");
    auth_method m;
    cr_assert_eq(match(h, "10.0.0.1", true, "d", "u", &m), 1);
    cr_assert_eq(m, AUTH_M_CERT);
    cr_assert_eq(match(h, "10.0.0.1", false, "d", "u", &m), 2);
    cr_assert_eq(m, AUTH_M_MD5);
    cr_assert_eq(match(h, "::1", true, "d", "u", NULL), 1);
    cr_assert_eq(match(h, NULL, false, "d", "u", &m), 3);
    cr_assert_eq(m, AUTH_M_REJECT);
    cr_assert_eq(match(h, NULL, true, "d", "u", NULL), 3, "local lines ignore tls");
    auth_hba_free(h);

    h = parse("host all all all trust\n");
    cr_assert_eq(match(h, NULL, false, "d", "u", NULL), 0, "host never matches a socket");
    auth_hba_free(h);
}

Test(auth_hba, lists_keywords_and_quotes)
{
    auth_hba *h = parse("host db1,db2 , db3 alice,bob 10.0.0.0/8 md5\n"
                        "host sameuser all 10.0.0.0/8 trust\n"
                        "host \"all\" carol 10.0.0.0/8 password\n"
                        "host \"we\"\"ird db\",replication \"sameuser\" 10.0.0.0/8 cert\n"
                        "host replication all 10.0.0.0/8 reject\n");
    auth_method m;
    cr_assert_eq(match(h, "10.0.0.1", false, "db2", "bob", &m), 1);
    cr_assert_eq(match(h, "10.0.0.1", false, "db3", "alice", &m), 1);
    cr_assert_eq(match(h, "10.0.0.1", false, "db4", "alice", &m), 0);
    cr_assert_eq(match(h, "10.0.0.1", false, "dave", "dave", &m), 2);
    cr_assert_eq(match(h, "10.0.0.1", false, "all", "carol", &m), 3, "quoted all is a name");
    cr_assert_eq(match(h, "10.0.0.1", false, "other", "carol", &m), 0);
    cr_assert_eq(match(h, "10.0.0.1", false, "we\"ird db", "sameuser", &m), 4);
    cr_assert_eq(match(h, "10.0.0.1", false, "replication", "x", &m), 0,
                 "replication matches no client");
    auth_hba_free(h);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(auth_hba, at_file_includes)
{
    char dir[] = "/tmp/sluice-test-hba-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128], users[128], dbs[128], nested[128];
    snprintf(path, sizeof path, "%s/hba.conf", dir);
    snprintf(users, sizeof users, "%s/users.txt", dir);
    snprintf(dbs, sizeof dbs, "%s/dbs.txt", dir);
    snprintf(nested, sizeof nested, "%s/more.txt", dir);
    write_file(users, "# admins\nalice, bob\ncarol \"d,ave\"\n@more.txt\n");
    write_file(nested, "erin\n");
    write_file(dbs, "app1 app2\n");
    write_file(path, "host @dbs.txt @users.txt 0.0.0.0/0 scram-sha-256\n");

    auth_hba *h;
    cr_assert_eq(auth_hba_load(path, &h, stderr), 0);
    auth_method m;
    for (const char *const *u = (const char *const[]){"alice", "bob", "carol", "d,ave", "erin", 0};
         *u; u++)
        cr_assert_eq(match(h, "1.2.3.4", false, "app2", *u, &m), 1, "%s", *u);
    cr_assert_eq(m, AUTH_M_SCRAM);
    cr_assert_eq(match(h, "1.2.3.4", false, "app3", "alice", &m), 0);
    cr_assert_eq(match(h, "1.2.3.4", false, "app1", "dave", &m), 0);
    auth_hba_free(h);

    /* a missing @file and a bad name inside one are errors naming the file and line */
    write_file(path, "host all @nope.txt all md5\n");
    char *d;
    size_t dlen;
    FILE *diag = open_memstream(&d, &dlen);
    cr_assert_eq(auth_hba_load(path, &h, diag), -1);
    write_file(nested, "erin\n+admins\n");
    write_file(path, "host all @users.txt all md5\n");
    cr_assert_eq(auth_hba_load(path, &h, diag), -1);
    /* an include loop ends */
    write_file(nested, "@users.txt\n");
    cr_assert_eq(auth_hba_load(path, &h, diag), -1);
    fclose(diag);
    char want[256];
    snprintf(want, sizeof want, "%s:1: cannot read @nope.txt", path);
    cr_assert_not_null(strstr(d, want), "%s", d);
    snprintf(want, sizeof want, "%s:2: +group", nested);
    cr_assert_not_null(strstr(d, want), "%s", d);
    cr_assert_not_null(strstr(d, "nested too deep"), "%s", d);
    free(d);
    unlink(users), unlink(nested), unlink(dbs), unlink(path), rmdir(dir);
}

Test(auth_hba, refused_lines_name_file_and_line)
{
    refused("local all all trust\nhost all +admins all md5\n", "hba.conf:2: +group");
    refused("host samerole all all md5\n", "hba.conf:1: samerole");
    refused("host all sameuser all md5\n", "hba.conf:1: sameuser belongs in the database");
    refused("local all all peer\n", "hba.conf:1: authentication method \"peer\"");
    refused("host all all all ident\n", "authentication method \"ident\"");
    refused("host all all all ldap ldapserver=x\n", "authentication method \"ldap\"");
    refused("host all all all pam\n", "authentication method \"pam\"");
    refused("host all all all gss\n", "authentication method \"gss\"");
    refused("host all all all cert map=x\n", "hba.conf:1: options after the method");
    refused("local all all cert\n", "cert needs TLS");
    refused("hostgssenc all all all md5\n", "GSSAPI encryption");
    refused("hosts all all all md5\n", "hba.conf:1: the record type");
    refused("host all all samehost md5\n", "samehost");
    refused("host all all db.example.com md5\n", "host names are not supported");
    refused("host all all 10.0.0.0/33 md5\n", "prefix length");
    refused("host all all ::/129 md5\n", "prefix length");
    refused("host all all 10.0.0.0/ md5\n", "prefix length");
    refused("host all all 10.0.0.0/8x md5\n", "prefix length");
    refused("host all all 10.0.0.0 md5\n", "netmask is not an IPv4");
    refused("host all all 10.0.0.0 ffff:: md5\n", "netmask is not an IPv4");
    refused("host all all 10.0.0.0 255.0.0.0\n", "method is missing");
    refused("host all all 10.0.0.0/8\n", "method is missing");
    refused("host all all\n", "address is missing");
    refused("local all\n", "database and a user column");
    refused("local all all\n", "method is missing");
    refused("host all, all all md5\n", "hba.conf:1: ");
    refused("host all all all md5,trust\n", "a list or a quoted word");
    refused("host all all all \"md5\"\n", "a list or a quoted word");
    refused("host \"unterminated all all md5\n", "unterminated quoted name");
    refused("host a\"b\" all all md5\n", "a quote inside a name");
    refused("host all all,\n", "a list ends with a comma");
    /* every bad line is reported */
    refused("bad\nlocal all all trust\nworse\n", "hba.conf:3: the record type");
}

Test(auth_hba, hostile_bytes)
{
    const char text[] = "local all all trust\nhost a\0b all all md5\n";
    auth_hba *h = (auth_hba *)1;
    cr_assert_eq(auth_hba_parse(text, sizeof text - 1, "hba.conf", &h, NULL), -1);
    cr_assert_null(h);
    /* a huge list */
    size_t n = 200000;
    char *big = malloc(n * 2 + 64);
    strcpy(big, "host ");
    size_t o = 5;
    for (size_t i = 0; i < n; i++)
        big[o++] = 'a' + (char)(i % 26), big[o++] = ',';
    strcpy(big + o, "z all all trust\n");
    h = parse(big);
    cr_assert_eq(match(h, "1.1.1.1", false, "z", "u", NULL), 1);
    auth_hba_free(h);
    free(big);
}

Test(auth_hba, includes_only_regular_files)
{
    const char *text = "host all @/dev/null all md5\n";
    auth_hba *h = (auth_hba *)1;
    cr_assert_eq(auth_hba_parse(text, strlen(text), "hba.conf", &h, NULL), -1);
    cr_assert_null(h);
    cr_assert_eq(auth_hba_load("/dev/stdin", &h, NULL), -1);
}
