/*
 * gw_buf: a growable byte buffer, and gw_bufpool: a free list of fixed-size blocks so that the
 * per-message hot path does not call malloc. An idle connection holds no buffer at all.
 */
#ifndef SLUICE_GW_BUF_H
#define SLUICE_GW_BUF_H

#include <stddef.h>
#include <stdint.h>

#define GW_BUF_BLOCK 16384 /* the pooled block size; larger buffers come from malloc */

typedef struct gw_bufpool {
    void **blocks; /* free blocks of GW_BUF_BLOCK bytes */
    size_t count, cap;
} gw_bufpool;

typedef struct gw_buf {
    uint8_t *data; /* NULL when the buffer holds no memory */
    size_t len, cap;
} gw_buf;

void gw_bufpool_init(gw_bufpool *p, size_t max_free);
void gw_bufpool_destroy(gw_bufpool *p);

/* Makes room for at least `need` more bytes. Returns 0 or -ENOMEM. */
int gw_buf_reserve(gw_buf *b, gw_bufpool *p, size_t need);
/* Releases b's memory (to the pool when it is a pooled block). */
void gw_buf_release(gw_buf *b, gw_bufpool *p);
/* Releases a raw block previously owned by a gw_buf of capacity cap. */
void gw_bufpool_put(gw_bufpool *p, uint8_t *data, size_t cap);
/* Drops the first n bytes, keeping the rest at the front. Releases the memory when empty. */
void gw_buf_consume(gw_buf *b, gw_bufpool *p, size_t n);
int gw_buf_append(gw_buf *b, gw_bufpool *p, const void *data, size_t len);

#endif
