/* The length guard: compiles a writer schema into a flat node table and walks a datum over
 * it, checking every length, count, branch and index against the bytes that remain before
 * Avro-C sees them; it never allocates per datum and never decodes a value. */
#include "guard.h"

#include <stdlib.h>
#include <string.h>

#include "fields.h"

#define GUARD_DEPTH_MAX 32

void keng_avro__guard_free(guard_t *g)
{
    free(g->nodes);
    free(g->kids);
    free(g->memo);
    memset(g, 0, sizeof(*g));
}

/* Compiles the nchildren fields or branches of record or union s and appends the indexes of
 * their nodes to g->kids, from *first on. Returns 0, or -1 when out of memory. */
static int compile_children(guard_t *g, avro_schema_t s, size_t nchildren, uint32_t *first)
{
    uint32_t *tmp = calloc(nchildren + 1, sizeof(*tmp)), *nk;
    int rc = -1;

    if (tmp == NULL)
        return -1;
    for (size_t i = 0; i < nchildren; i++) {
        avro_schema_t c = is_avro_record(s) ? avro_schema_record_field_get_by_index(s, (int)i)
                                            : avro_schema_union_branch(s, (int)i);
        long k = keng_avro__guard_compile(g, c);
        if (k < 0)
            goto out;
        tmp[i] = (uint32_t)k;
    }
    nk = realloc(g->kids, (g->nkids + nchildren + 1) * sizeof(*nk));
    if (nk == NULL)
        goto out;
    g->kids = nk;
    *first = (uint32_t)g->nkids;
    memcpy(g->kids + g->nkids, tmp, nchildren * sizeof(*tmp));
    g->nkids += nchildren;
    rc = 0;
out:
    free(tmp);
    return rc;
}

long keng_avro__guard_compile(guard_t *g, avro_schema_t s)
{
    s = keng_avro__resolve_link(s);
    for (size_t i = 0; i < g->nnodes; i++)
        if (g->memo[i] == s)
            return (long)i;

    gnode_t *nn = realloc(g->nodes, (g->nnodes + 1) * sizeof(*nn));
    if (nn == NULL)
        return -1;
    g->nodes = nn;
    avro_schema_t *nm = realloc(g->memo, (g->nnodes + 1) * sizeof(*nm));
    if (nm == NULL)
        return -1;
    g->memo = nm;
    size_t idx = g->nnodes++;
    g->memo[idx] = s;
    gnode_t node = {0};
    size_t nchildren = 0;

    switch (avro_typeof(s)) {
    case AVRO_NULL:
        node.type = G_NULL;
        break;
    case AVRO_BOOLEAN:
        node.type = G_BOOL;
        break;
    case AVRO_INT32:
        node.type = G_INT;
        break;
    case AVRO_INT64:
        node.type = G_LONG;
        break;
    case AVRO_FLOAT:
        node.type = G_FLOAT;
        break;
    case AVRO_DOUBLE:
        node.type = G_DOUBLE;
        break;
    case AVRO_STRING:
    case AVRO_BYTES:
        node.type = G_BYTES;
        break;
    case AVRO_FIXED:
        node.type = G_FIXED;
        node.n = (uint32_t)avro_schema_fixed_size(s);
        break;
    case AVRO_ENUM:
        node.type = G_ENUM;
        node.n = (uint32_t)avro_schema_enum_number_of_symbols(s);
        break;
    case AVRO_RECORD:
    case AVRO_UNION:
        node.type = is_avro_record(s) ? G_RECORD : G_UNION;
        nchildren = is_avro_record(s) ? avro_schema_record_size(s) : avro_schema_union_size(s);
        node.n = (uint32_t)nchildren;
        if (compile_children(g, s, nchildren, &node.first) < 0)
            return -1;
        break;
    case AVRO_ARRAY:
    case AVRO_MAP: {
        node.type = is_avro_array(s) ? G_ARRAY : G_MAP;
        long k = keng_avro__guard_compile(g, is_avro_array(s) ? avro_schema_array_items(s)
                                                              : avro_schema_map_values(s));
        if (k < 0)
            return -1;
        node.first = (uint32_t)k;
        break;
    }
    default:
        return -1;
    }
    g->nodes[idx] = node;
    return (long)idx;
}

static int walk_string(const uint8_t **pp, const uint8_t *start, const uint8_t *end,
                       walk_fail_t *wf)
{
    const uint8_t *at = *pp;
    int64_t v;
    int rc = keng_avro__read_varint(pp, end, &v);

    wf->offset = (size_t)(at - start);
    if (rc != 0) {
        wf->what = "string length";
        return rc;
    }
    if (v < 0) {
        wf->what = "string with a negative length";
        wf->claimed = v;
        return KENG_AVRO_ERR_INVALID;
    }
    if (v > end - *pp) {
        wf->what = "string";
        wf->claimed = v;
        wf->remain = (size_t)(end - *pp);
        return KENG_AVRO_ERR_TRUNCATED;
    }
    *pp += v;
    return 0;
}

/* Reads what opens an array or map block: the item count and, after a negative count, the
 * block's size in bytes, which must fit in what remains. Sets *count to the number of items
 * (0 ends the array or map). Returns 0 or KENG_AVRO_ERR_TRUNCATED/INVALID with wf filled. */
static int walk_block_header(const uint8_t **pp, const uint8_t *start, const uint8_t *end,
                             int64_t *count, walk_fail_t *wf)
{
    const uint8_t *at = *pp;
    int64_t size;
    int rc;

    if ((rc = keng_avro__read_varint(pp, end, count)) != 0) {
        wf->what = "block count";
        goto out;
    }
    if (*count >= 0)
        return 0;
    if (*count == INT64_MIN) {
        wf->what = "block count out of range";
        rc = KENG_AVRO_ERR_INVALID;
        goto out;
    }
    *count = -*count;
    if ((rc = keng_avro__read_varint(pp, end, &size)) != 0) {
        wf->what = "block size";
        goto out;
    }
    wf->claimed = size;
    wf->remain = (size_t)(end - *pp);
    wf->what = "block size";
    if (size < 0)
        rc = KENG_AVRO_ERR_INVALID;
    else if (size > end - *pp)
        rc = KENG_AVRO_ERR_TRUNCATED;
    else
        wf->what = NULL;
out:
    if (rc != 0)
        wf->offset = (size_t)(at - start);
    return rc;
}

/* Walks the blocks of an array or map of node n, item by item, up to the block of count 0. */
static int walk_blocks(const guard_t *g, const gnode_t *n, const uint8_t **pp, const uint8_t *start,
                       const uint8_t *end, int depth, walk_fail_t *wf)
{
    int64_t count;
    int rc;

    for (;;) {
        const uint8_t *at = *pp;

        if ((rc = walk_block_header(pp, start, end, &count, wf)) != 0 || count == 0)
            return rc;
        /* Every item takes at least one byte, except items of zero-size types, which no keng
         * schema has: so a count beyond the remaining bytes is a lie. */
        if (count > end - *pp) {
            wf->what = n->type == G_ARRAY ? "array block count" : "map block count";
            wf->claimed = count;
            wf->remain = (size_t)(end - *pp);
            wf->offset = (size_t)(at - start);
            return KENG_AVRO_ERR_TRUNCATED;
        }
        for (int64_t i = 0; i < count; i++) {
            if (n->type == G_MAP && (rc = walk_string(pp, start, end, wf)) != 0)
                return rc;
            if ((rc = keng_avro__guard_walk(g, n->first, pp, start, end, depth + 1, wf)) != 0)
                return rc;
        }
    }
}

/* Checks that [*pp, end) starts with a datum of node idx, every length and count within the
 * bytes that remain. Returns 0 or KENG_AVRO_ERR_TRUNCATED/INVALID with wf filled. */
int keng_avro__guard_walk(const guard_t *g, uint32_t idx, const uint8_t **pp, const uint8_t *start,
                          const uint8_t *end, int depth, walk_fail_t *wf)
{
    const gnode_t *n = &g->nodes[idx];
    const uint8_t *at = *pp;
    int64_t v, size;
    int rc;

    if (depth > GUARD_DEPTH_MAX) {
        wf->what = "nesting deeper than keng allows";
        goto invalid;
    }
    switch (n->type) {
    case G_NULL:
        return 0;
    case G_BOOL:
        if (at >= end) {
            wf->what = "boolean";
            goto truncated;
        }
        if (*at > 1) {
            wf->what = "boolean byte other than 0 or 1";
            goto invalid;
        }
        (*pp)++;
        return 0;
    case G_INT:
    case G_LONG:
    case G_ENUM:
        if ((rc = keng_avro__read_varint(pp, end, &v)) != 0) {
            wf->what = n->type == G_ENUM ? "enum index" : "number";
            goto fail;
        }
        if (n->type != G_LONG && (*pp - at > 5 || v < INT32_MIN || v > INT32_MAX)) {
            wf->what = "int out of range";
            goto invalid;
        }
        if (n->type == G_ENUM && (v < 0 || v >= n->n)) {
            wf->what = "enum index out of range";
            wf->claimed = v;
            goto invalid;
        }
        return 0;
    case G_FLOAT:
    case G_DOUBLE:
    case G_FIXED:
        size = n->type == G_FLOAT ? 4 : n->type == G_DOUBLE ? 8 : n->n;
        if (end - at < size) {
            wf->what = n->type == G_FIXED ? "fixed" : "floating-point number";
            wf->claimed = size;
            wf->remain = (size_t)(end - at);
            goto truncated;
        }
        *pp += size;
        return 0;
    case G_BYTES:
        return walk_string(pp, start, end, wf);
    case G_RECORD:
        for (uint32_t i = 0; i < n->n; i++)
            if ((rc = keng_avro__guard_walk(g, g->kids[n->first + i], pp, start, end, depth + 1,
                                            wf)) != 0)
                return rc;
        return 0;
    case G_UNION:
        if ((rc = keng_avro__read_varint(pp, end, &v)) != 0) {
            wf->what = "union branch";
            goto fail;
        }
        if (v < 0 || v >= n->n) {
            wf->what = "union branch out of range";
            wf->claimed = v;
            goto invalid;
        }
        return keng_avro__guard_walk(g, g->kids[n->first + (uint32_t)v], pp, start, end, depth + 1,
                                     wf);
    case G_ARRAY:
    case G_MAP:
        return walk_blocks(g, n, pp, start, end, depth, wf);
    }
    wf->what = "unknown schema node";
    goto invalid;
fail:
    wf->offset = (size_t)(at - start);
    return rc;
truncated:
    wf->offset = (size_t)(at - start);
    return KENG_AVRO_ERR_TRUNCATED;
invalid:
    wf->offset = (size_t)(at - start);
    return KENG_AVRO_ERR_INVALID;
}
