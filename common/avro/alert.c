/* Alert records (vn.antt.Alert, id 3), written and read directly in Avro binary (zigzag
 * varints, length-prefixed strings, one array block) because the schema is keng's own and
 * fixed per id; it never uses Avro-C or the schema store. The tests decode what it writes with
 * Avro-C and Apache Avro's Python library. */
#include "avro_codec.h"

#include <stdbool.h>
#include <string.h>

#include "internal.h"

const char *const keng_alert_status_names[KENG_ALERT_STATUS_COUNT] = {"FIRING", "RESOLVED"};
const char *const keng_alert_level_names[KENG_ALERT_LEVEL_COUNT] = {"BOARD", "COMMUNE", "DISTRICT",
                                                                    "PROVINCE"};

typedef struct alert_out {
    unsigned char *p, *end;
    bool overflow;
} alert_out_t;

static void out_long(alert_out_t *o, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);

    do {
        unsigned char b = (unsigned char)(z & 0x7f);
        z >>= 7;
        if (z)
            b |= 0x80;
        if (o->p == o->end) {
            o->overflow = true;
            return;
        }
        *o->p++ = b;
    } while (z);
}

static void out_string(alert_out_t *o, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    out_long(o, (int64_t)n);
    if (o->overflow || (size_t)(o->end - o->p) < n) {
        o->overflow = true;
        return;
    }
    if (n)
        memcpy(o->p, s, n);
    o->p += n;
}

/* The registry's id of vn.antt.Alert v1 in Schema Registry mode; 0: the manifest's. */
static int32_t registry_alert_id;

void keng_avro_alert_use_id(int32_t id)
{
    registry_alert_id = id;
}

int keng_avro_encode_alert(const keng_alert_t *a, void *buf, size_t cap, size_t *len, char *errstr,
                           size_t errstr_size)
{
    unsigned char *b = buf;
    alert_out_t o;

    if ((unsigned)a->status >= KENG_ALERT_STATUS_COUNT ||
        (unsigned)a->level >= KENG_ALERT_LEVEL_COUNT || a->nsamples > KENG_ALERT_SAMPLES_MAX) {
        keng_avro__set_err(errstr, errstr_size,
                           "alert %s: status, level or sample count out of range",
                           a->alert_id ? a->alert_id : "");
        return -1;
    }
    if (cap < KENG_FRAME_HEADER_LEN) {
        keng_avro__set_err(errstr, errstr_size, "buffer of %zu bytes too small for an alert", cap);
        return -1;
    }
    int32_t wid = registry_alert_id > 0 ? registry_alert_id : KENG_SCHEMA_ID_ALERT;
    b[0] = KENG_FRAME_MAGIC;
    b[1] = (unsigned char)((uint32_t)wid >> 24);
    b[2] = (unsigned char)((uint32_t)wid >> 16);
    b[3] = (unsigned char)((uint32_t)wid >> 8);
    b[4] = (unsigned char)(uint32_t)wid;
    o.p = b + KENG_FRAME_HEADER_LEN;
    o.end = b + cap;
    o.overflow = false;
    out_string(&o, a->alert_id);
    out_string(&o, a->fingerprint);
    out_string(&o, a->rule);
    out_long(&o, a->status);
    out_long(&o, a->level);
    out_string(&o, a->scope_id);
    out_string(&o, a->window);
    out_long(&o, a->count);
    out_long(&o, a->threshold);
    out_long(&o, a->starts_at);
    out_long(&o, a->has_ends_at ? 1 : 0); /* union branch: ["null", long] */
    if (a->has_ends_at)
        out_long(&o, a->ends_at);
    out_string(&o, a->summary);
    if (a->nsamples) {
        out_long(&o, (int64_t)a->nsamples);
        for (size_t i = 0; i < a->nsamples; i++)
            out_string(&o, a->sample_event_ids[i]);
    }
    out_long(&o, 0); /* end of the array */
    if (o.overflow) {
        keng_avro__set_err(errstr, errstr_size, "buffer of %zu bytes too small for alert %s", cap,
                           a->alert_id ? a->alert_id : "");
        return -1;
    }
    *len = (size_t)(o.p - b);
    return 0;
}

typedef struct alert_in {
    const unsigned char *p, *end;
    char *scratch, *scratch_end;
    int err;
    const char *what;
} alert_in_t;

static int64_t in_long(alert_in_t *in, const char *what)
{
    uint64_t z = 0;

    for (int shift = 0; !in->err; shift += 7) {
        if (in->p == in->end) {
            in->err = KENG_AVRO_ERR_TRUNCATED;
            in->what = what;
            return 0;
        }
        if (shift > 63) {
            in->err = KENG_AVRO_ERR_INVALID;
            in->what = what;
            return 0;
        }
        unsigned char b = *in->p++;
        z |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* Copies the next string into scratch (or skips it when keep is false). */
static const char *in_string(alert_in_t *in, const char *what, bool keep)
{
    int64_t n = in_long(in, what);
    char *s;

    if (in->err)
        return "";
    if (n < 0) {
        in->err = KENG_AVRO_ERR_INVALID;
        in->what = what;
        return "";
    }
    if ((uint64_t)n > (uint64_t)(in->end - in->p)) {
        in->err = KENG_AVRO_ERR_TRUNCATED;
        in->what = what;
        return "";
    }
    if (!keep) {
        in->p += n;
        return "";
    }
    if ((uint64_t)n + 1 > (uint64_t)(in->scratch_end - in->scratch)) {
        in->err = KENG_AVRO_ERR_FIELD;
        in->what = what;
        return "";
    }
    s = in->scratch;
    memcpy(s, in->p, (size_t)n);
    s[n] = '\0';
    in->scratch += n + 1;
    in->p += n;
    return s;
}

int keng_avro_decode_alert(const void *buf, size_t len, keng_alert_t *out, char *scratch,
                           size_t scratch_cap, char *errstr, size_t errstr_size)
{
    const unsigned char *b = buf;
    alert_in_t in = {0};
    int64_t v;

    memset(out, 0, sizeof(*out));
    if (len < KENG_FRAME_HEADER_LEN || b[0] != KENG_FRAME_MAGIC) {
        keng_avro__set_err(errstr, errstr_size, "not a framed Avro message (%zu bytes)", len);
        return KENG_AVRO_ERR_FRAMING;
    }
    int32_t id = (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 |
                           (uint32_t)b[4]);
    if (id != KENG_SCHEMA_ID_ALERT && (registry_alert_id <= 0 || id != registry_alert_id)) {
        keng_avro__set_err(errstr, errstr_size, "schema id %d is not the Alert schema (%d)",
                           (int)id, KENG_SCHEMA_ID_ALERT);
        return KENG_AVRO_ERR_WRONG_RECORD;
    }
    in.p = b + KENG_FRAME_HEADER_LEN;
    in.end = b + len;
    in.scratch = scratch;
    in.scratch_end = scratch + scratch_cap;
    out->alert_id = in_string(&in, "alert_id", true);
    out->fingerprint = in_string(&in, "fingerprint", true);
    out->rule = in_string(&in, "rule", true);
    v = in_long(&in, "status");
    if (!in.err && (v < 0 || v >= KENG_ALERT_STATUS_COUNT)) {
        in.err = KENG_AVRO_ERR_INVALID;
        in.what = "status";
    }
    out->status = (keng_alert_status_t)v;
    v = in_long(&in, "level");
    if (!in.err && (v < 0 || v >= KENG_ALERT_LEVEL_COUNT)) {
        in.err = KENG_AVRO_ERR_INVALID;
        in.what = "level";
    }
    out->level = (keng_alert_level_t)v;
    out->scope_id = in_string(&in, "scope_id", true);
    out->window = in_string(&in, "window", true);
    out->count = in_long(&in, "count");
    out->threshold = in_long(&in, "threshold");
    out->starts_at = in_long(&in, "starts_at");
    v = in_long(&in, "ends_at");
    if (!in.err && v != 0 && v != 1) {
        in.err = KENG_AVRO_ERR_INVALID;
        in.what = "ends_at";
    }
    out->has_ends_at = v == 1;
    if (out->has_ends_at)
        out->ends_at = in_long(&in, "ends_at");
    out->summary = in_string(&in, "summary", true);
    for (int blocks = 0; !in.err; blocks++) {
        int64_t n = in_long(&in, "sample_event_ids");
        if (in.err || n == 0)
            break;
        if (n < 0) { /* a negative count is followed by the block's size in bytes */
            n = -n;
            in_long(&in, "sample_event_ids");
        }
        if (n > (int64_t)(in.end - in.p) || blocks > KENG_AVRO_COUNT_MAX) {
            in.err = KENG_AVRO_ERR_TRUNCATED;
            in.what = "sample_event_ids";
            break;
        }
        for (int64_t i = 0; i < n && !in.err; i++) {
            bool keep = out->nsamples < KENG_ALERT_SAMPLES_MAX;
            const char *s = in_string(&in, "sample_event_ids", keep);
            if (keep && !in.err)
                out->sample_event_ids[out->nsamples++] = s;
        }
    }
    if (!in.err && in.p != in.end) {
        in.err = KENG_AVRO_ERR_INVALID;
        in.what = "the end of the record";
    }
    if (in.err) {
        keng_avro__set_err(errstr, errstr_size, "%s alert record at %s",
                           in.err == KENG_AVRO_ERR_TRUNCATED ? "truncated"
                           : in.err == KENG_AVRO_ERR_FIELD   ? "oversized"
                                                             : "invalid",
                           in.what);
        return in.err;
    }
    return KENG_AVRO_OK;
}
