/*
 * log_sink: where log lines go. stderr always (the service manager's journal, or the terminal);
 * logfile and syslog when configured.
 *
 * Nothing here waits: each line is one write(2) or send(2) per output, and a line an output
 * cannot take at once is dropped and counted rather than retried. logfile is opened O_APPEND, so
 * a line is one atomic append; a regular file cannot be made non-blocking, so a write can still
 * take as long as the page cache needs to take it (never an fsync). The syslog socket is a
 * non-blocking datagram socket of our own rather than syslog(3), whose socket blocks when the
 * daemon is slow and whose openlog() state is process-global.
 *
 * Log rotation: logfile is reopened when the config generation changes (every reload, so
 * logrotate's usual `kill -HUP`), on gw_log_reopen, and when, checked at most once a second, its
 * path no longer names the open file (renamed or removed), so rotation works without a signal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gateway/log_sink.h"

/* syslog's facility codes for cfg_syslog_facility, in its order (RFC 5424 numbering). */
static const int facility_codes[] = {4, 10, 3, 1, 16, 17, 18, 19, 20, 21, 22, 23};
/* syslog severities for ERROR, WARNING, INFO, DEBUG. */
static const int severities[] = {3, 4, 6, 7};

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* An error about the log itself, straight to stderr (the log may be what failed). */
static void complain(const char *what, const char *path, int err)
{
    char msg[4200];
    int n = snprintf(msg, sizeof msg, "sluice: %s %s: %s\n", what, path, strerror(err));
    if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0) {
        /* nowhere left to report it */
    }
}

static void close_outputs(gw_log_sink *s)
{
    if (s->ready && s->file_fd >= 0)
        close(s->file_fd);
    if (s->ready && s->syslog_fd >= 0)
        close(s->syslog_fd);
    s->file_fd = s->syslog_fd = -1;
    s->ready = false;
}

static void open_file(gw_log_sink *s)
{
    s->file_fd = open(s->file_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (s->file_fd < 0 && errno != s->file_err)
        complain("cannot open logfile", s->file_path, errno);
    s->file_err = s->file_fd < 0 ? errno : 0;
    s->file_checked = monotonic_ms();
}

static void open_syslog(gw_log_sink *s)
{
    const char *path = s->syslog_path ? s->syslog_path : "/dev/log";
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        complain("cannot reach syslog at", path, errno);
        close(fd);
        return;
    }
    s->syslog_fd = fd;
    s->syslog_pid = (unsigned)getpid();
}

/* Opens the outputs ctx's config asks for. */
static void open_outputs(const gw_ctx *ctx, gw_log_sink *s)
{
    close_outputs(s);
    s->ready = true;
    s->gen = ctx->cfg_gen;
    s->file_path[0] = 0;
    const cfg *c = ctx->cfg;
    if (*c->logfile) {
        char *path = cfg_resolve_path(c, c->logfile);
        if (path && strlen(path) < sizeof s->file_path) {
            strcpy(s->file_path, path);
            open_file(s);
        } else if (path) {
            complain("logfile path too long:", path, ENAMETOOLONG);
        }
        free(path);
    }
    if (c->use_syslog)
        open_syslog(s);
}

/* Reopens logfile when its path no longer names the open file (rotated away, or removed). */
static void check_rotation(gw_log_sink *s)
{
    uint64_t now = monotonic_ms();
    if (now - s->file_checked < 1000)
        return;
    s->file_checked = now;
    struct stat by_path, open_file_st;
    if (s->file_fd >= 0 && stat(s->file_path, &by_path) == 0 &&
        fstat(s->file_fd, &open_file_st) == 0 && by_path.st_ino == open_file_st.st_ino &&
        by_path.st_dev == open_file_st.st_dev)
        return;
    if (s->file_fd >= 0)
        close(s->file_fd);
    open_file(s);
}

/* One write; anything short of the whole line counts as a drop (a partial line has been
 * written then, and the next line still starts on its own only if this one ended). */
static void write_once(gw_log_sink *s, int fd, const char *p, size_t n)
{
    ssize_t w;
    do
        w = write(fd, p, n);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)n)
        s->dropped++;
}

static void send_syslog(const gw_ctx *ctx, gw_log_sink *s, cfg_log_level level, const char *body,
                        size_t n)
{
    const cfg *c = ctx->cfg;
    char head[300];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
    int h =
        snprintf(head, sizeof head,
                 "<%d>%s %.64s[%u]: ", facility_codes[c->syslog_facility] * 8 + severities[level],
                 stamp, c->syslog_ident, s->syslog_pid);
    if (h < 0 || (size_t)h >= sizeof head)
        return;
    if (n > 0 && body[n - 1] == '\n')
        n--; /* syslog messages carry no line end */
    struct iovec iov[2] = {{.iov_base = head, .iov_len = (size_t)h},
                           {.iov_base = (void *)body, .iov_len = n}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (sendmsg(s->syslog_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
        return;
    s->dropped++;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
        /* The daemon went away or restarted: connect again at the next line. */
        close(s->syslog_fd);
        s->syslog_fd = -1;
        open_syslog(s);
    }
}

void gw__log_write(const gw_ctx *ctx, cfg_log_level level, const char *line, size_t len,
                   size_t body)
{
    if (!ctx || !ctx->cfg) {
        if (write(STDERR_FILENO, line, len) < 0) {
            /* nowhere to report it */
        }
        return;
    }
    /* The context is never defined const (main and tests own it mutably); logging changes only
     * this member, which is why gw_log can take a const context. */
    gw_log_sink *s = (gw_log_sink *)&ctx->log;
    if (!s->ready || s->gen != ctx->cfg_gen)
        open_outputs(ctx, s);
    write_once(s, STDERR_FILENO, line, len);
    if (*s->file_path) {
        check_rotation(s);
        if (s->file_fd >= 0)
            write_once(s, s->file_fd, line, len);
    }
    if (s->syslog_fd >= 0)
        send_syslog(ctx, s, level, line + body, len - body);
}

void gw_log_reopen(gw_ctx *ctx)
{
    close_outputs(&ctx->log);
}

uint64_t gw_log_dropped(const gw_ctx *ctx)
{
    return ctx->log.dropped;
}
