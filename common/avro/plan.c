/* The decode plan: Avro schema resolution done once per writer id, then one pass over the
 * bytes per message; it never allocates per message and never words an error (on any doubt
 * the datum takes the guard and Avro-C path in decode.c, which does).
 *
 * Each field of the writer's record becomes an op: read it into the raw event (the fields
 * keng's narrowed reader has, with the same shape in the writer) or skip it with the length
 * guard. Every length, count, branch, enum index and int is checked as the guard checks it,
 * so a datum the plan reads is one the guard accepts. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

enum { OP_SKIP = F_COUNT };

typedef struct plan_op {
    uint8_t f;           /* keng field, or OP_SKIP */
    uint8_t null_branch; /* optional fields: the writer's null branch */
    uint32_t node;       /* the writer field's guard node */
    uint32_t geo;        /* SH_OPT_GEO: guard node of the writer's GeoPoint record */
    int lat, lon;        /* SH_OPT_GEO: lat and lon in that record */
} plan_op_t;

/* Compiles s's plan, leaving s->plan NULL when the writer has a shape the plan does not read
 * (a type promotion, say): that writer id then always takes the Avro-C path. */
void keng_avro__plan_build(slot_t *s)
{
    const avro_schema_t ws = s->writer->schema;
    const gnode_t *root = &s->guard.nodes[s->root];
    plan_op_t *ops = calloc(root->n + 1, sizeof(*ops));
    shape_info_t winfo;

    if (ops == NULL)
        return;
    for (uint32_t i = 0; i < root->n; i++) {
        plan_op_t *op = &ops[i];
        op->f = OP_SKIP;
        op->node = s->guard.kids[root->first + i];
        for (int f = 0; f < F_COUNT; f++) {
            if (s->ridx[f] < 0 ||
                avro_schema_record_field_get_index(ws, keng_avro__fields[f].name) != (int)i)
                continue;
            if (keng_avro__check_shape(avro_schema_record_field_get_by_index(ws, (int)i),
                                       &keng_avro__fields[f], &winfo, NULL, 0) < 0)
                goto unsupported;
            op->f = (uint8_t)f;
            op->null_branch = (uint8_t)winfo.null_branch;
            if (keng_avro__fields[f].shape == SH_OPT_GEO) {
                const gnode_t *u = &s->guard.nodes[op->node];
                op->geo = s->guard.kids[u->first + (uint32_t)winfo.value_branch];
                op->lat = winfo.lat;
                op->lon = winfo.lon;
            }
        }
    }
    s->plan = ops;
    return;
unsupported:
    free(ops);
}

static inline bool plan_varint(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *p = *pp;

    if (p < end && *p < 0x80) { /* the common case: small numbers, branches, enums */
        *out = (int64_t)(*p >> 1) ^ -(int64_t)(*p & 1);
        *pp = p + 1;
        return true;
    }
    return keng_avro__read_varint(pp, end, out) == 0;
}

static inline bool plan_int(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *at = *pp;

    return plan_varint(pp, end, out) && *pp - at <= 5 && *out >= INT32_MIN && *out <= INT32_MAX;
}

static inline bool plan_string(const uint8_t **pp, const uint8_t *end, raw_field_t *r)
{
    int64_t n;

    if (!plan_varint(pp, end, &n) || n < 0 || n > end - *pp)
        return false;
    r->s = (const char *)*pp;
    r->len = (size_t)n;
    r->present = true;
    *pp += n;
    return true;
}

static inline bool plan_double(const uint8_t **pp, const uint8_t *end, double *out)
{
    uint64_t w;

    if (end - *pp < 8)
        return false;
    memcpy(&w, *pp, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    memcpy(out, &w, 8);
    *pp += 8;
    return true;
}

static bool plan_skip(const guard_t *g, uint32_t node, const uint8_t **pp, const uint8_t *start,
                      const uint8_t *end, int depth)
{
    walk_fail_t wf = {0, 0, 0, NULL};

    return keng_avro__guard_walk(g, node, pp, start, end, depth, &wf) == 0;
}

/* Reads the datum [*pp, end) with s's plan into raw. False when anything is amiss. */
bool keng_avro__plan_read(const slot_t *s, const uint8_t **pp, const uint8_t *start,
                          const uint8_t *end, raw_event_t *raw)
{
    const gnode_t *root = &s->guard.nodes[s->root];
    const guard_t *g = &s->guard;
    int64_t v;

    for (int f = 0; f < F_COUNT; f++)
        raw->f[f].present = false;
    for (uint32_t i = 0; i < root->n; i++) {
        const plan_op_t *op = &s->plan[i];
        raw_field_t *r = &raw->f[op->f < OP_SKIP ? op->f : 0];

        if (op->f == OP_SKIP) {
            if (!plan_skip(g, op->node, pp, start, end, 1))
                return false;
            continue;
        }
        switch (keng_avro__fields[op->f].shape) {
        case SH_STRING:
            if (!plan_string(pp, end, r))
                return false;
            break;
        case SH_OPT_STRING:
            if (!plan_varint(pp, end, &v) || (v != 0 && v != 1))
                return false;
            if (v != op->null_branch && !plan_string(pp, end, r))
                return false;
            break;
        case SH_LONG:
            if (!plan_varint(pp, end, &r->n))
                return false;
            r->present = true;
            break;
        case SH_INT:
            if (!plan_int(pp, end, &r->n))
                return false;
            r->present = true;
            break;
        case SH_ENUM:
            if (!plan_int(pp, end, &r->n) || r->n < 0 || r->n >= g->nodes[op->node].n)
                return false;
            r->present = true;
            break;
        case SH_OPT_GEO: {
            const gnode_t *rec = &g->nodes[op->geo];
            if (!plan_varint(pp, end, &v) || (v != 0 && v != 1))
                return false;
            if (v == op->null_branch)
                break;
            for (uint32_t j = 0; j < rec->n; j++) {
                bool ok = (int)j == op->lat ? plan_double(pp, end, &raw->lat)
                          : (int)j == op->lon
                              ? plan_double(pp, end, &raw->lon)
                              : plan_skip(g, g->kids[rec->first + j], pp, start, end, 3);
                if (!ok)
                    return false;
            }
            r->present = true;
            break;
        }
        }
    }
    return true;
}
