/* listen: TCP listeners with SO_REUSEPORT on request. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>
#include <sys/socket.h>

#include "gateway/listen.h"

int gw_tcp_init(uv_loop_t *loop, uv_tcp_t *h, const struct sockaddr *sa)
{
    return uv_tcp_init_ex(loop, h, sa->sa_family);
}

int gw_tcp_bind(uv_tcp_t *h, const struct sockaddr *sa, bool reuseport)
{
    if (reuseport) {
        uv_os_fd_t fd;
        int rc = uv_fileno((uv_handle_t *)h, &fd);
        if (rc != 0)
            return rc;
        int on = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
            return uv_translate_sys_error(errno);
    }
    return uv_tcp_bind(h, sa, 0);
}

bool gw_listener_quiet(const uv_stream_t *h)
{
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)h, &fd) != 0)
        return true;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) <= 0;
}

int gw_pipe_bind(uv_pipe_t *h, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof sa.sun_path)
        return UV_ENAMETOOLONG;
    memcpy(sa.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int rc = uv_translate_sys_error(errno);
        close(fd);
        return rc;
    }
    int rc = uv_pipe_open(h, fd);
    if (rc != 0)
        close(fd);
    return rc;
}
