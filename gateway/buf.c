#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/buf.h"

void gw_bufpool_init(gw_bufpool *p, size_t max_free)
{
    p->blocks = calloc(max_free, sizeof(void *));
    p->count = 0;
    p->cap = p->blocks ? max_free : 0;
}

void gw_bufpool_destroy(gw_bufpool *p)
{
    for (size_t i = 0; i < p->count; i++)
        free(p->blocks[i]);
    free(p->blocks);
    p->blocks = NULL;
    p->count = p->cap = 0;
}

void gw_bufpool_put(gw_bufpool *p, uint8_t *data, size_t cap)
{
    if (!data)
        return;
    if (cap == GW_BUF_BLOCK && p->count < p->cap)
        p->blocks[p->count++] = data;
    else
        free(data);
}

int gw_buf_reserve(gw_buf *b, gw_bufpool *p, size_t need)
{
    if (b->cap - b->len >= need && b->data)
        return 0;
    size_t want = b->len + need;
    if (!b->data && want <= GW_BUF_BLOCK) {
        b->data = p->count ? p->blocks[--p->count] : malloc(GW_BUF_BLOCK);
        if (!b->data)
            return -ENOMEM;
        b->cap = GW_BUF_BLOCK;
        return 0;
    }
    size_t cap = b->cap ? b->cap : GW_BUF_BLOCK;
    while (cap < want)
        cap *= 2;
    uint8_t *d;
    if (b->cap == GW_BUF_BLOCK) {
        /* Leaving the pooled size: copy out so the block can go back to the pool. */
        d = malloc(cap);
        if (!d)
            return -ENOMEM;
        memcpy(d, b->data, b->len);
        gw_bufpool_put(p, b->data, b->cap);
    } else {
        d = realloc(b->data, cap);
        if (!d)
            return -ENOMEM;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void gw_buf_release(gw_buf *b, gw_bufpool *p)
{
    gw_bufpool_put(p, b->data, b->cap);
    b->data = NULL;
    b->len = b->cap = 0;
}

void gw_buf_consume(gw_buf *b, gw_bufpool *p, size_t n)
{
    if (n >= b->len) {
        gw_buf_release(b, p);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int gw_buf_append(gw_buf *b, gw_bufpool *p, const void *data, size_t len)
{
    int rc = gw_buf_reserve(b, p, len);
    if (rc != 0)
        return rc;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}
