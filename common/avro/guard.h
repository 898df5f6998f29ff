/* The length guard's compiled form of a writer schema and its walk over a datum, shared by
 * the decoder and the plan; the guard only checks bytes, it never builds a value. */
#ifndef KENG_AVRO_GUARD_H
#define KENG_AVRO_GUARD_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

#include "avro_codec.h"

enum gtype {
    G_NULL,
    G_BOOL,
    G_INT,
    G_LONG,
    G_FLOAT,
    G_DOUBLE,
    G_BYTES,
    G_FIXED,
    G_ENUM,
    G_RECORD,
    G_UNION,
    G_ARRAY,
    G_MAP
};

typedef struct gnode {
    uint8_t type;
    uint32_t n;     /* fixed size, enum symbols, record fields, union branches */
    uint32_t first; /* first child in guard.kids (records, unions), or the item node */
} gnode_t;

typedef struct guard {
    gnode_t *nodes;
    uint32_t *kids;
    avro_schema_t *memo; /* schema of each node, to compile shared and recursive types once */
    size_t nnodes, nkids;
} guard_t;

/* Why a walk failed, kept out of the hot path until a message is wanted. */
typedef struct walk_fail {
    size_t offset;   /* where the bad value starts, from the start of the datum */
    int64_t claimed; /* the length or count it claims */
    size_t remain;   /* the bytes that remained for it */
    const char *what;
} walk_fail_t;

/* Frees what g holds and zeroes it; g itself is the caller's. */
void keng_avro__guard_free(guard_t *g);

/* Compiles schema s into g's node table (shared and recursive types once). Returns the index
 * of s's node, or -1 when out of memory or s has a type the guard does not know. */
long keng_avro__guard_compile(guard_t *g, avro_schema_t s);

/* Zigzag varint of at most 10 bytes whose value fits in 64 bits. */
static inline int keng_avro__read_varint(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;

    for (int shift = 0;; shift += 7) {
        if (p >= end)
            return KENG_AVRO_ERR_TRUNCATED;
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            return KENG_AVRO_ERR_INVALID;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
        if (shift == 63)
            return KENG_AVRO_ERR_INVALID;
    }
    *pp = p;
    *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
    return 0;
}

/* Checks that [*pp, end) starts with a datum of node idx, every length and count within the
 * bytes that remain, and moves *pp past it. start is where the datum begins (for offsets in
 * wf). Returns 0 or KENG_AVRO_ERR_TRUNCATED/INVALID with wf filled. */
int keng_avro__guard_walk(const guard_t *g, uint32_t idx, const uint8_t **pp, const uint8_t *start,
                          const uint8_t *end, int depth, walk_fail_t *wf);

#endif
