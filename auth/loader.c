/*
 * loader: what the users file and hba file loaders share: reading a whole file and the
 * "name:line: message" diagnostics.
 */
#include "auth/auth_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>

#define FILE_MAX (64 << 20) /* a users or hba file larger than this is a mistake */

void auth__diag(FILE *diag, const char *name, int line, const char *fmt, ...)
{
    if (!diag)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(diag, "%s:%d: ", name, line);
    vfprintf(diag, fmt, ap);
    fputc('\n', diag);
    va_end(ap);
}

int auth__read_file(const char *path, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    /* A FIFO or a device (an @/dev/stdin include) would block the loader or never end. */
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        errno = EINVAL;
        return -EINVAL;
    }
    size_t cap = 0, n = 0;
    char *buf = NULL;
    int rc = 0;
    for (;;) {
        if (n == cap) {
            char *grown = cap >= FILE_MAX ? NULL : realloc(buf, cap = cap ? 2 * cap : 4096);
            if (!grown) {
                rc = cap >= FILE_MAX ? -EFBIG : -ENOMEM;
                break;
            }
            buf = grown;
        }
        const size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            rc = ferror(f) ? -EIO : 0;
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        free(buf);
        errno = -rc;
        return rc;
    }
    *text = buf;
    *len = n;
    return 0;
}
