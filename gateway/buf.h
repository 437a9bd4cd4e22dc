/*
 * gw_buf: a growable byte buffer, and gw_bufpool: free lists of fixed-size blocks so that the
 * per-message hot path does not call malloc. An idle connection holds no buffer at all.
 *
 * One pool per loop (gw_ctx.bufs) serves both drivers, in two size classes: 16 kB blocks
 * (PostgreSQL's buffers, TLS records) and 64 kB blocks (a MongoDB message being read, and any
 * gw_buf that outgrows 16 kB). A buffer whose capacity is exactly a class's size is that class's
 * block wherever it came from; larger buffers come from malloc and go back to free. The pool
 * also keeps the transports' write requests (gateway/transport.c), which are of one size.
 */
#ifndef SLUICE_GW_BUF_H
#define SLUICE_GW_BUF_H

#include <stddef.h>
#include <stdint.h>

#define GW_BUF_BLOCK 16384 /* the small pooled block */
#define GW_BUF_LARGE 65536 /* the large pooled block; larger buffers come from malloc */

/* One class of equal-size objects. Free objects are linked through their first bytes, so a
 * zeroed class is valid (it keeps nothing until gw_bufpool_init sets keep). */
typedef struct gw_bufclass {
    size_t size;     /* the objects' size (0 until known: set at init or at the first get) */
    void *free;      /* the first free object, NULL when none */
    size_t n_free;   /* objects on the free list */
    size_t keep;     /* most kept on it: beyond that an object goes back to free() */
    size_t used;     /* handed out and not yet back */
    uint64_t allocs; /* taken from malloc, ever: flat once the loop's working set is pooled */
} gw_bufclass;

typedef struct gw_bufpool {
    gw_bufclass small; /* GW_BUF_BLOCK bytes */
    gw_bufclass large; /* GW_BUF_LARGE bytes */
    gw_bufclass wreqs; /* the transports' write requests */
} gw_bufpool;

typedef struct gw_buf {
    uint8_t *data; /* NULL when the buffer holds no memory */
    size_t len, cap;
} gw_buf;

/* Keeps at most max_free × 16 kB of free blocks per block class (max_free small blocks,
 * max_free / 4 large ones) and max_free write requests. Cannot fail. */
void gw_bufpool_init(gw_bufpool *p, size_t max_free);
/* Frees the free lists (every object must be back). */
void gw_bufpool_destroy(gw_bufpool *p);

/* An object of size bytes from class c (its free list, else malloc), or NULL. Every object of a
 * class must have the same size, at least a pointer's. */
void *gw_bufclass_get(gw_bufclass *c, size_t size);
/* Takes back an object of c (kept, or freed when the list is full); NULL is ignored. */
void gw_bufclass_put(gw_bufclass *c, void *obj);

/* A block of GW_BUF_BLOCK or GW_BUF_LARGE bytes (cap says which), or NULL. */
uint8_t *gw_bufpool_get(gw_bufpool *p, size_t cap);
/* Releases a raw block previously owned by a gw_buf of capacity cap (pooled when cap is a
 * class's size, else freed). */
void gw_bufpool_put(gw_bufpool *p, uint8_t *data, size_t cap);

/* Makes room for at least `need` more bytes. Returns 0 or -ENOMEM. */
int gw_buf_reserve(gw_buf *b, gw_bufpool *p, size_t need);
/* Releases b's memory (to the pool when it is a pooled block). */
void gw_buf_release(gw_buf *b, gw_bufpool *p);
/* Drops the first n bytes, keeping the rest at the front. Releases the memory when empty. */
void gw_buf_consume(gw_buf *b, gw_bufpool *p, size_t n);
int gw_buf_append(gw_buf *b, gw_bufpool *p, const void *data, size_t len);

#endif
