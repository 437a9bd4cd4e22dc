/*
 * floor_relay: the least a proxy can do, as a reference for what any hop costs on this machine.
 *
 * Each client connection gets its own connection to the upstream server, and bytes go through
 * unread: one read and one write per batch, epoll, no parsing, no pooling, no timers, no
 * allocation after the connect. A pooler cannot forward a round trip with fewer system calls or
 * wake-ups than this, so the time this relay adds to a round trip is the floor under what
 * Sluice and PgBouncer add (bench/run's "round trip, 1 client" rows and
 * bench/mongo_ping_rtt.py --relay).
 *
 * usage: floor_relay LISTEN_PORT UPSTREAM_ADDR UPSTREAM_PORT
 * It listens on 127.0.0.1 (LISTEN_PORT 0 picks a port), reaches the server at the IPv4 address
 * UPSTREAM_ADDR, prints "listening on PORT" once it accepts, and runs until it is killed.
 *
 * It is a measuring tool, not a server: it connects upstream synchronously (a loopback connect
 * does not wait on anything), and a client whose upstream refuses is simply closed.
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUF    (64 * 1024)
#define RELAY_EVENTS 256

/* One direction's source: bytes read from fd that its peer's fd has not taken yet. */
typedef struct relay_side {
    int fd;
    struct relay_side *peer;
    size_t off, len; /* buf[off, len) is unsent; len == 0 while nothing is held */
    char buf[RELAY_BUF];
} relay_side;

/* A client and its upstream. Freed after the epoll batch it died in: a later event of the
 * same batch may still name it. */
typedef struct relay_pair {
    relay_side side[2];
    int dead;
    struct relay_pair *next_dead;
} relay_pair;

static int ep;
static relay_pair *graveyard;

static relay_pair *pair_of(relay_side *s)
{
    relay_side *first = s->peer < s ? s->peer : s;
    return (relay_pair *)((char *)first - offsetof(relay_pair, side));
}

/* A side is read while it holds nothing, and waits for room while its peer holds bytes for it. */
static int arm(relay_side *s)
{
    struct epoll_event ev = {.data.ptr = s};
    ev.events = (s->len == 0 ? EPOLLIN : 0) | (s->peer->len ? EPOLLOUT : 0);
    return epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static void kill_pair(relay_pair *p)
{
    if (p->dead)
        return;
    p->dead = 1;
    for (int i = 0; i < 2; i++)
        close(p->side[i].fd); /* also takes it out of the epoll set */
    p->next_dead = graveyard;
    graveyard = p;
}

/* Writes from's held bytes to its peer. Returns -1 when the pair must go. */
static int push(relay_side *from)
{
    ssize_t w = write(from->peer->fd, from->buf + from->off, from->len - from->off);
    if (w < 0 && errno != EAGAIN)
        return -1;
    if (w > 0)
        from->off += (size_t)w;
    if (from->off == from->len)
        from->off = from->len = 0;
    return 0;
}

static int on_readable(relay_side *s)
{
    if (s->len)
        return 0; /* still holding bytes for the peer: read again once they are gone */
    ssize_t r = read(s->fd, s->buf, RELAY_BUF);
    if (r == 0 || (r < 0 && errno != EAGAIN))
        return -1;
    if (r < 0)
        return 0;
    s->len = (size_t)r;
    if (push(s) != 0)
        return -1;
    if (s->len == 0)
        return 0;
    /* The peer did not take it all: stop reading s, wait for room on the peer. */
    return arm(s) != 0 || arm(s->peer) != 0 ? -1 : 0;
}

static int on_writable(relay_side *s)
{
    relay_side *from = s->peer; /* whose bytes wait for s */
    if (from->len && push(from) != 0)
        return -1;
    return arm(s) != 0 || arm(from) != 0 ? -1 : 0;
}

static struct sockaddr_in upstream;

static int connect_upstream(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    const struct sockaddr_in *a = &upstream;
    int one = 1;
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        close(fd);
        return -1;
    }
    int flags = 1;
    if (ioctl(fd, FIONBIO, &flags) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void accept_all(int l)
{
    int c;
    while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        int one = 1;
        int u = connect_upstream();
        relay_pair *p = u >= 0 ? calloc(1, sizeof *p) : NULL;
        if (!p || setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
            close(c);
            if (u >= 0)
                close(u);
            free(p);
            continue;
        }
        p->side[0].fd = c;
        p->side[1].fd = u;
        p->side[0].peer = &p->side[1];
        p->side[1].peer = &p->side[0];
        for (int i = 0; i < 2; i++) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &p->side[i]};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, p->side[i].fd, &ev) != 0) {
                kill_pair(p);
                break;
            }
        }
    }
}

int main(int argc, char **argv)
{
    upstream.sin_family = AF_INET;
    if (argc != 4 || inet_pton(AF_INET, argv[2], &upstream.sin_addr) != 1) {
        fprintf(stderr, "usage: floor_relay LISTEN_PORT UPSTREAM_ADDR UPSTREAM_PORT\n");
        return 2;
    }
    int listen_port = atoi(argv[1]);
    upstream.sin_port = htons((uint16_t)atoi(argv[3]));
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1024) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0) {
        perror("floor_relay: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &lev) != 0) {
        perror("floor_relay: epoll");
        return 1;
    }
    printf("listening on %d\n", ntohs(a.sin_port));
    fflush(stdout);
    struct epoll_event evs[RELAY_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, RELAY_EVENTS, -1);
        if (n < 0 && errno != EINTR) {
            perror("floor_relay: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            relay_side *s = evs[i].data.ptr;
            if (!s) {
                accept_all(l);
                continue;
            }
            relay_pair *p = pair_of(s);
            if (p->dead)
                continue;
            uint32_t e = evs[i].events;
            int rc = 0;
            if (e & EPOLLERR)
                rc = -1;
            else if ((e & EPOLLHUP) && s->len)
                rc = -1; /* hung up with bytes still held for a slow peer: dropped, a measuring
                          * relay need not drain them */
            else if (e & EPOLLOUT)
                rc = on_writable(s);
            if (rc == 0 && (e & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                rc = on_readable(s);
            if (rc != 0)
                kill_pair(p);
        }
        while (graveyard) {
            relay_pair *p = graveyard;
            graveyard = p->next_dead;
            free(p);
        }
    }
}
