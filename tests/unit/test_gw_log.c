/* Unit tests for the log: formats, escaping, logfile and its reopening, syslog. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/cfg.h"
#include "gateway/ctx.h"

/* A context whose config is text (plus logfile in a scratch directory); stderr goes to
 * /dev/null while the test runs, so only the logfile is read. */
typedef struct fixture {
    gw_ctx ctx;
    char dir[64];
    char path[128];
    int saved_stderr;
} fixture;

static void setup(fixture *f, const char *settings)
{
    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/sluice-log-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/sluice.log", f->dir);
    char text[1024];
    snprintf(text, sizeof text, "[sluice]\nlogfile = %s\nlog_level = debug\n%s", f->path, settings);
    cr_assert_eq(cfg_load_string(text, "test.ini", &f->ctx.cfg, stderr), 0);
    f->ctx.cfg_gen = 1;
    fflush(stderr);
    f->saved_stderr = dup(STDERR_FILENO);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, STDERR_FILENO);
    close(null);
}

static void teardown(fixture *f)
{
    gw_log_reopen(&f->ctx);
    dup2(f->saved_stderr, STDERR_FILENO);
    close(f->saved_stderr);
    cfg_free(f->ctx.cfg);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    cr_assert_eq(system(cmd), 0);
}

static char *slurp(const char *path)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return strdup("");
    char *s = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&s, &cap, 0, in);
    fclose(in);
    if (n < 0) {
        free(s);
        return strdup("");
    }
    return s;
}

static const gw_log_who conn = {.protocol = "pg",
                                .client_id = 7,
                                .server_id = 3,
                                .database = "app",
                                .user = "alice",
                                .address = "127.0.0.1:5000",
                                .reason = "client_left"};

Test(gw_log, text_lines_carry_the_context)
{
    fixture f;
    setup(&f, "");
    gw_log(&f.ctx, CFG_LOG_INFO, "plain %d", 1);
    gw_log_conn(&f.ctx, CFG_LOG_WARNING, &conn, "closing because %s", "client_left");
    char *log = slurp(f.path);
    cr_assert(strstr(log, " INFO plain 1\n"), "%s", log);
    cr_assert(strstr(log, " WARNING pg client 7 server 3 app/alice@127.0.0.1:5000: closing "
                          "because client_left\n"),
              "%s", log);
    free(log);
    struct stat st;
    cr_assert_eq(stat(f.path, &st), 0);
    cr_assert_eq(st.st_mode & 0007, 0, "a log Sluice creates is not world-readable");
    teardown(&f);
}

Test(gw_log, level_filter)
{
    fixture f;
    setup(&f, "");
    f.ctx.cfg->log_level = CFG_LOG_WARNING;
    gw_log(&f.ctx, CFG_LOG_INFO, "hidden");
    gw_log_conn(&f.ctx, CFG_LOG_DEBUG, &conn, "hidden too");
    gw_log(&f.ctx, CFG_LOG_ERROR, "shown");
    char *log = slurp(f.path);
    cr_assert_null(strstr(log, "hidden"), "%s", log);
    cr_assert(strstr(log, "ERROR shown"), "%s", log);
    free(log);
    teardown(&f);
}

/* A client-chosen name with a line end must not start a line of its own. */
Test(gw_log, text_escapes_control_characters)
{
    fixture f;
    setup(&f, "");
    gw_log_who who = conn;
    who.user = "eve\n2026-01-01 00:00:00.000 ERROR forged";
    gw_log_conn(&f.ctx, CFG_LOG_INFO, &who, "tab\there, bell\a, backslash \\x0a");
    char *log = slurp(f.path);
    cr_assert_eq(strchr(log, '\n'), log + strlen(log) - 1, "one line:\n%s", log);
    cr_assert(strstr(log, "eve\\x0a2026-01-01"), "%s", log);
    cr_assert(strstr(log, "tab\\x09here, bell\\x07, backslash \\\\x0a"), "%s", log);
    free(log);
    teardown(&f);
}

Test(gw_log, json_fields_and_escapes)
{
    fixture f;
    setup(&f, "log_format = json\n");
    gw_log_who who = conn;
    who.user = "q\"uote\\ \x01 caf\xc3\xa9 bad\xff\xfe end";
    gw_log_conn(&f.ctx, CFG_LOG_INFO, &who, "msg \"quoted\"\n");
    gw_log(&f.ctx, CFG_LOG_ERROR, "no context");
    char *log = slurp(f.path);
    char *second = strchr(log, '\n') + 1;
    cr_assert(strncmp(log, "{\"time\":\"", 9) == 0, "%s", log);
    cr_assert(strstr(log,
                     "\"level\":\"info\",\"protocol\":\"pg\",\"client_id\":7,\"server_id\":3,"
                     "\"database\":\"app\",\"user\":\"q\\\"uote\\\\ \\u0001 caf\xc3\xa9 "
                     "bad\\ufffd\\ufffd end\",\"address\":\"127.0.0.1:5000\","
                     "\"reason\":\"client_left\",\"message\":\"msg \\\"quoted\\\"\\u000a\"}\n"),
              "%s", log);
    cr_assert(strstr(second, "\"level\":\"error\",\"message\":\"no context\"}\n"), "%s", second);
    free(log);
    teardown(&f);
}

/* A message longer than a line is cut, escape by escape, and the line still closes. */
Test(gw_log, json_long_message_stays_one_valid_line)
{
    fixture f;
    setup(&f, "log_format = json\n");
    static char big[8000];
    for (size_t i = 0; i < sizeof big - 1; i++)
        big[i] = i % 2 ? '"' : '\x01';
    gw_log_conn(&f.ctx, CFG_LOG_INFO, &conn, "%s", big);
    char *log = slurp(f.path);
    size_t len = strlen(log);
    cr_assert_gt(len, 1000);
    cr_assert_eq(strchr(log, '\n'), log + len - 1);
    cr_assert(strcmp(log + len - 3, "\"}\n") == 0, "ends %s", log + len - 8);
    /* An odd number of backslashes before the closing quote would escape it. */
    size_t backslashes = 0;
    for (const char *p = log + len - 4; p > log && *p == '\\'; p--)
        backslashes++;
    cr_assert_eq(backslashes % 2, 0);
    cr_assert(strstr(log, "\"client_id\":7"), "the context survives a long message");
    free(log);
    teardown(&f);
}

Test(gw_log, logfile_is_reopened_after_rotation)
{
    fixture f;
    setup(&f, "");
    gw_log(&f.ctx, CFG_LOG_INFO, "before");
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", f.path);
    cr_assert_eq(rename(f.path, rotated), 0);

    /* A reload (the config generation changes) reopens it. */
    f.ctx.cfg_gen++;
    gw_log(&f.ctx, CFG_LOG_INFO, "after reload");
    char *old = slurp(rotated), *cur = slurp(f.path);
    cr_assert(strstr(old, "before") && !strstr(old, "after reload"), "%s", old);
    cr_assert(strstr(cur, "after reload"), "%s", cur);
    free(old);
    free(cur);

    /* So does the reopen hook. */
    cr_assert_eq(rename(f.path, rotated), 0);
    gw_log_reopen(&f.ctx);
    gw_log(&f.ctx, CFG_LOG_INFO, "after hook");
    cur = slurp(f.path);
    cr_assert(strstr(cur, "after hook") && !strstr(cur, "after reload"), "%s", cur);
    free(cur);

    /* And, without either, the periodic check that the path still names the open file (made
     * due here instead of waiting a second). */
    cr_assert_eq(unlink(f.path), 0);
    f.ctx.log.file_checked = 0;
    gw_log(&f.ctx, CFG_LOG_INFO, "after removal");
    cur = slurp(f.path);
    cr_assert(strstr(cur, "after removal"), "%s", cur);
    free(cur);
    cr_assert_eq(gw_log_dropped(&f.ctx), 0);
    teardown(&f);
}

Test(gw_log, logfile_is_appended_to)
{
    fixture f;
    setup(&f, "");
    FILE *pre = fopen(f.path, "w");
    fputs("earlier line\n", pre);
    fclose(pre);
    gw_log(&f.ctx, CFG_LOG_INFO, "new line");
    char *log = slurp(f.path);
    cr_assert(strncmp(log, "earlier line\n", 13) == 0 && strstr(log, "new line"), "%s", log);
    free(log);
    teardown(&f);
}

/* A syslog daemon of the test's own: a datagram socket the sink is pointed at. */
static int fake_syslog(const fixture *f, char *path, size_t cap)
{
    snprintf(path, cap, "%s/log", f->dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

Test(gw_log, syslog_gets_priority_ident_and_body)
{
    fixture f;
    setup(&f, "syslog = 1\nsyslog_ident = pool-a\nsyslog_facility = local3\n");
    char path[160];
    int fd = fake_syslog(&f, path, sizeof path);
    f.ctx.log.syslog_path = path;
    gw_log_conn(&f.ctx, CFG_LOG_WARNING, &conn, "hello");
    char got[512];
    ssize_t n = recv(fd, got, sizeof got - 1, MSG_DONTWAIT);
    cr_assert_gt(n, 0);
    got[n] = 0;
    /* local3 is 19; warning is severity 4: 19 * 8 + 4 = 156. */
    cr_assert(strncmp(got, "<156>", 5) == 0, "%s", got);
    char tail[128];
    snprintf(tail, sizeof tail, " pool-a[%d]: pg client 7 server 3 app/alice@127.0.0.1:5000: hello",
             (int)getpid());
    cr_assert(strstr(got, tail) && got[n - 1] != '\n', "%s", got);
    close(fd);
    teardown(&f);
}

/* A syslog daemon that does not read: lines are dropped and counted, never waited for. */
Test(gw_log, syslog_never_blocks)
{
    fixture f;
    setup(&f, "syslog = 1\n");
    char path[160];
    int fd = fake_syslog(&f, path, sizeof path);
    f.ctx.log.syslog_path = path;
    for (int i = 0; i < 5000; i++)
        gw_log(&f.ctx, CFG_LOG_INFO, "line %d", i);
    cr_assert_gt(gw_log_dropped(&f.ctx), 0, "a full queue drops lines");
    char *log = slurp(f.path);
    cr_assert(strstr(log, "line 4999\n"), "the logfile still has every line");
    free(log);
    close(fd);
    teardown(&f);
}

Test(gw_log, no_context_goes_to_stderr_only)
{
    int saved = dup(STDERR_FILENO);
    char path[] = "/tmp/sluice-log-stderr-XXXXXX";
    int tmp = mkstemp(path);
    dup2(tmp, STDERR_FILENO);
    gw_log(NULL, CFG_LOG_INFO, "before any config");
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(tmp);
    char *s = slurp(path);
    unlink(path);
    cr_assert(strstr(s, " INFO before any config\n"), "%s", s);
    free(s);
}

Test(gw_log, sockaddr_text)
{
    struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons(5432)};
    inet_pton(AF_INET, "10.1.2.3", &in4.sin_addr);
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(27017)};
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    char out[64];
    gw_sockaddr_text((struct sockaddr *)&in4, out, sizeof out);
    cr_assert_str_eq(out, "10.1.2.3:5432");
    gw_sockaddr_text((struct sockaddr *)&in6, out, sizeof out);
    cr_assert_str_eq(out, "[::1]:27017");
}
