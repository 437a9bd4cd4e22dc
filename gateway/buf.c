#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/buf.h"

void gw_bufpool_init(gw_bufpool *p, size_t max_free)
{
    *p = (gw_bufpool){0};
    p->small.size = GW_BUF_BLOCK;
    p->large.size = GW_BUF_LARGE;
    p->small.keep = max_free;
    p->large.keep = max_free / (GW_BUF_LARGE / GW_BUF_BLOCK);
    p->wreqs.keep = max_free;
}

static void class_destroy(gw_bufclass *c)
{
    while (c->free) {
        void *next = *(void **)c->free;
        free(c->free);
        c->free = next;
    }
    c->n_free = 0;
}

void gw_bufpool_destroy(gw_bufpool *p)
{
    class_destroy(&p->small);
    class_destroy(&p->large);
    class_destroy(&p->wreqs);
}

void *gw_bufclass_get(gw_bufclass *c, size_t size)
{
    void *obj = c->free;
    if (obj) {
        c->free = *(void **)obj;
        c->n_free--;
    } else {
        obj = malloc(size);
        if (!obj)
            return NULL;
        c->allocs++;
        c->size = size;
    }
    c->used++;
    return obj;
}

void gw_bufclass_put(gw_bufclass *c, void *obj)
{
    if (!obj)
        return;
    /* A buffer of a class's size made elsewhere (a message built to its exact length) joins
     * the class here without having been counted out of it. */
    if (c->used)
        c->used--;
    if (c->n_free >= c->keep) {
        free(obj);
        return;
    }
    *(void **)obj = c->free;
    c->free = obj;
    c->n_free++;
}

static gw_bufclass *class_of(gw_bufpool *p, size_t cap)
{
    return cap == GW_BUF_BLOCK ? &p->small : cap == GW_BUF_LARGE ? &p->large : NULL;
}

uint8_t *gw_bufpool_get(gw_bufpool *p, size_t cap)
{
    gw_bufclass *c = class_of(p, cap);
    return c ? gw_bufclass_get(c, cap) : NULL;
}

void gw_bufpool_put(gw_bufpool *p, uint8_t *data, size_t cap)
{
    gw_bufclass *c = class_of(p, cap);
    if (c)
        gw_bufclass_put(c, data);
    else
        free(data);
}

int gw_buf_reserve(gw_buf *b, gw_bufpool *p, size_t need)
{
    if (b->cap - b->len >= need && b->data)
        return 0;
    size_t want = b->len + need;
    size_t cap;
    if (want <= GW_BUF_BLOCK) {
        cap = GW_BUF_BLOCK;
    } else if (want <= GW_BUF_LARGE) {
        cap = GW_BUF_LARGE;
    } else {
        cap = b->cap > GW_BUF_LARGE ? b->cap : GW_BUF_LARGE;
        while (cap < want)
            cap *= 2;
    }
    uint8_t *d;
    if (class_of(p, cap) || !b->data || class_of(p, b->cap)) {
        /* Into or out of a pooled block: copy, so the old block can go back to its class. */
        d = class_of(p, cap) ? gw_bufpool_get(p, cap) : malloc(cap);
        if (!d)
            return -ENOMEM;
        if (b->len)
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
