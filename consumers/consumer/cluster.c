/* The shared state of a group of keng-aggregate instances: a producer that publishes unit
 * states and partition marks to antt.board-counts, and a reader (assign() of every
 * partition, never a group member) that materialises the topic. docs/SCALE_OUT.md explains
 * why a unit state with its own offset plus a mark per partition is enough to resume. */
#include "cluster.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failpoint.h"
#include "kafka_denied.h"
#include "kafka_uv.h"
#include "log.h"
#include "timeutil.h"

#define POLL_INTERVAL_MS 50
#define METADATA_TIMEOUT 5000
#define CLOSE_FLUSH_MS   5000
#define VALUE_MAGIC      "KSN"
#define VALUE_VERSION    1
#define TYPE_UNIT        1
#define TYPE_MARK        2
#define KEY_MAX          300
#define OWNERS_MAX       256
#define ID_MAX           255
#define URL_MAX          1024

/* The latest state of a unit read from the topic: one lane of a (board, kind), the share of
 * its events that one partition holds. */
typedef struct snap {
    unsigned char *state;
    size_t len;
    int32_t partition;
    int64_t offset;
    int owner;   /* index into owners, -1 before the first state */
    bool legacy; /* read under the key of releases before lanes, "u/<group>/<board>/<kind>" */
} snap_t;

typedef struct owner {
    char *id;
    char *url;
} owner_t;

/* Everything known of one input partition (kind, partition). */
typedef struct track {
    int kind;
    int32_t partition;
    bool owned;                  /* this instance consumes it */
    int inflight;                /* unit states published and not yet acknowledged */
    bool failed;                 /* one was lost: no mark until the partition is published again */
    bool resync;                 /* tell the consumer so */
    int64_t mark_pending;        /* mark to publish once inflight is 0; -1 for none */
    unsigned char *pending_gaps; /* what that mark says of the partition's gaps (owned) */
    size_t pending_gaps_len;
    bool have_mark; /* the latest mark read from the topic */
    int64_t mark;
    unsigned char *gaps; /* and what it said of the gaps (owned; NULL: nothing) */
    size_t gaps_len;
} track_t;

struct keng_cluster {
    uv_loop_t *loop;
    uv_timer_t timer; /* serves delivery reports */
    char *topic, *instance_id, *url;
    /* Keys carry the group, so that two groups sharing one topic (production and a trial,
     * say) never take each other's states: "u/<group>/<board>/<kind>", "p/<group>/<kind>/<p>". */
    char *group;
    const keng_registry_t *reg;
    int64_t fixed_clock_ms;
    uint32_t nboards, nunits; /* nunits: KENG_UNIT_LANES * nboards * KENG_KIND_COUNT */
    int32_t nparts;

    rd_kafka_t *producer;
    int inflight_total;
    rd_kafka_t *reader;
    rd_kafka_queue_t *queue;
    keng_kafka_uv_t *watch;
    int64_t *read_next; /* per partition of the topic: the next offset to read */

    snap_t *snaps; /* per unit, (lane * nboards + board) * KENG_KIND_COUNT + kind */
    bool lanes_full_said;
    owner_t owners[OWNERS_MAX];
    int nowners;
    track_t *tracks;
    size_t ntracks, tracks_cap;
    keng_counts_t *remote;
};

static int64_t cluster_now(const keng_cluster_t *cl)
{
    return cl->fixed_clock_ms > 0 ? cl->fixed_clock_ms : keng_now_ms();
}

static track_t *track_find(keng_cluster_t *cl, int kind, int32_t partition, bool create)
{
    for (size_t i = 0; i < cl->ntracks; i++)
        if (cl->tracks[i].kind == kind && cl->tracks[i].partition == partition)
            return &cl->tracks[i];
    if (!create)
        return NULL;
    if (cl->ntracks == cl->tracks_cap) {
        size_t cap = cl->tracks_cap ? cl->tracks_cap * 2 : 32;
        track_t *t = realloc(cl->tracks, cap * sizeof(*t));
        if (!t)
            return NULL;
        cl->tracks = t;
        cl->tracks_cap = cap;
    }
    track_t *t = &cl->tracks[cl->ntracks++];
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->partition = partition;
    t->mark_pending = -1;
    return t;
}

static const track_t *track_get(const keng_cluster_t *cl, int kind, int32_t partition)
{
    for (size_t i = 0; i < cl->ntracks; i++)
        if (cl->tracks[i].kind == kind && cl->tracks[i].partition == partition)
            return &cl->tracks[i];
    return NULL;
}

/* ---- the value format ----
 * "KSN", u8 version (1), u8 type (1 unit, 2 mark), u8 kind, i32 input partition,
 * i64 next input offset the state includes (or the mark's), i64 publish time (ms),
 * u8 instance id length, the id, u16 URL length, the URL, then for a unit its counts state
 * (counts.c's format) and for a mark what its owner says of the partition's gaps (the
 * consumer's format; empty when it knows of none). Little-endian. Releases that wrote marks
 * with nothing after the URL read the gaps as none, and ignore them. */

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static unsigned char *encode_value(const keng_cluster_t *cl, int type, int kind, int32_t partition,
                                   int64_t offset, const unsigned char *state, size_t len,
                                   size_t *out_len)
{
    size_t id_len = strlen(cl->instance_id), url_len = strlen(cl->url);
    size_t head = 3 + 1 + 1 + 1 + 4 + 8 + 8 + 1 + id_len + 2 + url_len;
    unsigned char *v = malloc(head + len), *p = v;

    if (!v)
        return NULL;
    memcpy(p, VALUE_MAGIC, 3);
    p[3] = VALUE_VERSION;
    p[4] = (unsigned char)type;
    p[5] = (unsigned char)kind;
    put_le(p + 6, (uint32_t)partition, 4);
    put_le(p + 10, (uint64_t)offset, 8);
    put_le(p + 18, (uint64_t)cluster_now(cl), 8);
    p[26] = (unsigned char)id_len;
    memcpy(p + 27, cl->instance_id, id_len);
    p += 27 + id_len;
    put_le(p, url_len, 2);
    memcpy(p + 2, cl->url, url_len);
    if (len)
        memcpy(v + head, state, len);
    *out_len = head + len;
    return v;
}

/* ---- publishing ---- */

static void *dr_opaque(size_t track_index, bool mark)
{
    return (void *)(uintptr_t)(track_index << 1 | (mark ? 1u : 0u));
}

static void produce_mark(keng_cluster_t *cl, track_t *t)
{
    char key[KEY_MAX];
    size_t len;
    unsigned char *v = encode_value(cl, TYPE_MARK, t->kind, t->partition, t->mark_pending,
                                    t->pending_gaps, t->pending_gaps_len, &len);
    rd_kafka_resp_err_t err;

    snprintf(key, sizeof(key), "p/%s/%s/%" PRId32, cl->group, keng_kind_name((keng_kind_t)t->kind),
             t->partition);
    t->mark_pending = -1;
    free(t->pending_gaps);
    t->pending_gaps = NULL;
    t->pending_gaps_len = 0;
    if (!v)
        return;
    err = rd_kafka_producev(
        cl->producer, RD_KAFKA_V_TOPIC(cl->topic), RD_KAFKA_V_PARTITION(t->partition % cl->nparts),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(v, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(dr_opaque((size_t)(t - cl->tracks), true)), RD_KAFKA_V_END);
    free(v);
    if (err) {
        t->resync = true;
        keng_log_warn("cannot publish a partition mark; the partition is published again",
                      "topic=%s error=\"%s\"", cl->topic, rd_kafka_err2str(err));
        return;
    }
    cl->inflight_total++;
}

/* From rd_kafka_poll/rd_kafka_flush, on the loop thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    keng_cluster_t *cl = opaque;
    uintptr_t o = (uintptr_t)msg->_private;
    track_t *t = &cl->tracks[o >> 1];

    (void)rk;
    cl->inflight_total--;
    if (!(o & 1u))
        t->inflight--;
    if (msg->err) {
        keng_kafka_denied(KENG_KAFKA_PRODUCER, msg->err, cl->topic, rd_kafka_err2str(msg->err));
        /* A gap: the units before the next mark must all be published again. */
        t->failed = t->resync = true;
        t->mark_pending = -1;
        keng_log_warn("a counts snapshot was not delivered; its partition is published again",
                      "topic=%s error=\"%s\"", cl->topic, rd_kafka_err2str(msg->err));
        return;
    }
    KENG_FAILPOINT((o & 1u) ? "board-counts.mark" : "board-counts.unit");
    if (t->inflight == 0 && t->mark_pending >= 0 && !t->failed)
        produce_mark(cl, t);
}

void keng_cluster_publish_unit(keng_cluster_t *cl, uint32_t board_index, keng_kind_t kind,
                               int32_t partition, int64_t next_offset, const unsigned char *state,
                               size_t len)
{
    char key[KEY_MAX];
    size_t vlen;
    track_t *t = track_find(cl, kind, partition, true);
    unsigned char *v;
    rd_kafka_resp_err_t err;

    if (!t)
        return;
    v = encode_value(cl, TYPE_UNIT, kind, partition, next_offset, state, len, &vlen);
    if (!v) {
        t->failed = t->resync = true;
        return;
    }
    snprintf(key, sizeof(key), "u/%s/%s/%s/%" PRId32, cl->group,
             keng_registry_board(cl->reg, board_index)->id, keng_kind_name(kind), partition);
    err = rd_kafka_producev(
        cl->producer, RD_KAFKA_V_TOPIC(cl->topic), RD_KAFKA_V_PARTITION(partition % cl->nparts),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(v, vlen),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(dr_opaque((size_t)(t - cl->tracks), false)), RD_KAFKA_V_END);
    free(v);
    if (err) {
        t->failed = t->resync = true;
        t->mark_pending = -1;
        keng_log_warn("cannot publish a counts snapshot; its partition is published again",
                      "topic=%s error=\"%s\"", cl->topic, rd_kafka_err2str(err));
        return;
    }
    t->inflight++;
    cl->inflight_total++;
}

void keng_cluster_publish_mark(keng_cluster_t *cl, keng_kind_t kind, int32_t partition,
                               int64_t next_offset, const unsigned char *gaps, size_t gaps_len)
{
    track_t *t = track_find(cl, kind, partition, true);
    unsigned char *copy = NULL;

    if (!t || t->failed)
        return;
    if (gaps_len && !(copy = malloc(gaps_len))) {
        /* A mark without its gaps would tell the next owner there are none. */
        t->failed = t->resync = true;
        return;
    }
    if (gaps_len)
        memcpy(copy, gaps, gaps_len);
    free(t->pending_gaps);
    t->pending_gaps = copy;
    t->pending_gaps_len = gaps_len;
    t->mark_pending = next_offset;
    if (t->inflight == 0)
        produce_mark(cl, t);
}

bool keng_cluster_take_resync(keng_cluster_t *cl, keng_kind_t kind, int32_t partition)
{
    track_t *t = track_find(cl, kind, partition, false);

    if (!t || !t->resync)
        return false;
    t->resync = t->failed = false;
    return true;
}

static void on_timer(uv_timer_t *timer)
{
    keng_cluster_t *cl = timer->data;

    rd_kafka_poll(cl->producer, 0);
}

void keng_cluster_flush(keng_cluster_t *cl, int timeout_ms)
{
    int64_t deadline = keng_monotonic_ms() + timeout_ms;

    /* A delivery may queue a mark, which must be delivered too: flush until quiet. */
    while (cl->inflight_total > 0 && keng_monotonic_ms() < deadline)
        rd_kafka_flush(cl->producer, (int)(deadline - keng_monotonic_ms()));
    rd_kafka_poll(cl->producer, 0);
    if (cl->inflight_total > 0)
        keng_log_warn("counts snapshots still unacknowledged", "in_flight=%d", cl->inflight_total);
}

/* ---- reading ---- */

static int owner_index(keng_cluster_t *cl, const char *id, size_t id_len, const char *url,
                       size_t url_len)
{
    int i;

    for (i = 0; i < cl->nowners; i++)
        if (strlen(cl->owners[i].id) == id_len && memcmp(cl->owners[i].id, id, id_len) == 0)
            break;
    if (i == OWNERS_MAX)
        return -1;
    if (i == cl->nowners) {
        char *nid = strndup(id, id_len), *nurl = strndup(url, url_len);
        if (!nid || !nurl) {
            free(nid);
            free(nurl);
            return -1;
        }
        cl->owners[i].id = nid;
        cl->owners[i].url = nurl;
        cl->nowners++;
    } else if (strlen(cl->owners[i].url) != url_len ||
               memcmp(cl->owners[i].url, url, url_len) != 0) {
        char *nurl = strndup(url, url_len); /* restarted with another address */
        if (nurl) {
            free(cl->owners[i].url);
            cl->owners[i].url = nurl;
        }
    }
    return i;
}

/* Puts a unit's latest state into the counts of what this instance does not own, in the
 * slot of its lane. */
static void load_remote(keng_cluster_t *cl, uint32_t u)
{
    char err[256];
    snap_t *s = &cl->snaps[u];

    if (!s->state)
        return;
    if (keng_counts_unit_load(cl->remote, u / KENG_KIND_COUNT, (keng_kind_t)(u % KENG_KIND_COUNT),
                              s->state, s->len, cluster_now(cl), err, sizeof(err)) != 0)
        keng_log_warn("a counts snapshot could not be loaded", "board=%s error=\"%s\"",
                      keng_registry_board(cl->reg, u / KENG_KIND_COUNT % cl->nboards)->id, err);
}

/* The unit of (board, kind)'s lane for partition: the one that holds it, else a free one
 * (UINT32_MAX when every lane holds another partition). */
static uint32_t lane_of(const keng_cluster_t *cl, uint32_t board, int kind, int32_t partition)
{
    uint32_t free_u = UINT32_MAX;

    for (uint32_t lane = 0; lane < KENG_UNIT_LANES; lane++) {
        uint32_t u = (lane * cl->nboards + board) * KENG_KIND_COUNT + (uint32_t)kind;
        if (cl->snaps[u].state && cl->snaps[u].partition == partition)
            return u;
        if (!cl->snaps[u].state && free_u == UINT32_MAX)
            free_u = u;
    }
    return free_u;
}

/* A unit state read from the topic under key (which names the board, then the kind, and
 * since lanes the partition); the value's header was read up to head. */
static void take_unit(keng_cluster_t *cl, const rd_kafka_message_t *m, size_t key_start, int kind,
                      int32_t partition, int64_t offset, size_t head, size_t id_len, size_t url_len)
{
    const char *key = m->key, *end = key + m->key_len;
    const char *slash = memchr(key + key_start, '/', m->key_len - key_start);
    const unsigned char *v = m->payload;
    /* Board ids have no '/': "<board>/<kind>" is a key of releases before lanes. */
    bool legacy = slash && !memchr(slash + 1, '/', (size_t)(end - slash - 1));
    int32_t bi = slash ? keng_registry_find_board(cl->reg, key + key_start,
                                                  (size_t)(slash - key - key_start))
                       : -1;
    uint32_t u;

    if (bi < 0) {
        keng_log_warn("a counts snapshot names a board the registry does not know", "key=%.*s",
                      (int)m->key_len, key);
        return;
    }
    u = lane_of(cl, (uint32_t)bi, kind, partition);
    if (u == UINT32_MAX) {
        if (!cl->lanes_full_said)
            keng_log_error("a board's events come from more partitions than keng keeps apart; "
                           "its counts are not exact",
                           "board=%s partition=%" PRId32 " lanes=%d",
                           keng_registry_board(cl->reg, (uint32_t)bi)->id, partition,
                           KENG_UNIT_LANES);
        cl->lanes_full_said = true;
        return;
    }
    snap_t *s = &cl->snaps[u];
    /* A state under the old key is older than one under the lane's own key. */
    if (legacy && s->state && !s->legacy && s->offset >= offset)
        return;
    unsigned char *copy = malloc(m->len - head ? m->len - head : 1);
    if (!copy)
        return;
    memcpy(copy, v + head, m->len - head);
    free(s->state);
    s->state = copy;
    s->len = m->len - head;
    s->partition = partition;
    s->offset = offset;
    s->legacy = legacy;
    s->owner =
        owner_index(cl, (const char *)v + 27, id_len, (const char *)v + 27 + id_len + 2, url_len);
    const track_t *t = track_get(cl, kind, partition);
    if (!t || !t->owned)
        load_remote(cl, u);
}

static void handle_message(keng_cluster_t *cl, const rd_kafka_message_t *m)
{
    const unsigned char *v = m->payload;
    size_t len = m->len, id_len, url_len, head;
    int type, kind;
    int32_t partition;
    int64_t offset;

    if (m->err) {
        /* The reader assigns and commits nothing: the coordinator librdkafka looks up for
         * its group is of no use, and its user needs no ACL on that group. */
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
            m->err != RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED &&
            !keng_kafka_denied(KENG_KAFKA_CONSUMER, m->err, cl->topic, rd_kafka_message_errstr(m)))
            keng_log_warn("counts topic reader", "error=\"%s\"", rd_kafka_message_errstr(m));
        return;
    }
    if (m->partition >= 0 && m->partition < cl->nparts)
        cl->read_next[m->partition] = m->offset + 1;
    if (!v || len < 29 || memcmp(v, VALUE_MAGIC, 3) != 0 || v[3] != VALUE_VERSION)
        goto bad;
    type = v[4];
    kind = v[5];
    partition = (int32_t)get_le(v + 6, 4);
    offset = (int64_t)get_le(v + 10, 8);
    id_len = v[26];
    if (len < 27 + id_len + 2)
        goto bad;
    url_len = get_le(v + 27 + id_len, 2);
    head = 27 + id_len + 2 + url_len;
    if (len < head || kind >= KENG_KIND_COUNT || partition < 0)
        goto bad;
    /* Another group's record: its states are not this group's to take. */
    size_t group_len = strlen(cl->group);
    if (!m->key || m->key_len < 2 + group_len + 1 ||
        memcmp((const char *)m->key + 2, cl->group, group_len) != 0 ||
        ((const char *)m->key)[2 + group_len] != '/')
        return;
    if (type == TYPE_MARK) {
        track_t *t = track_find(cl, kind, partition, true);
        unsigned char *gaps = len > head ? malloc(len - head) : NULL;
        if (!t || (len > head && !gaps)) {
            free(gaps);
            return;
        }
        if (gaps)
            memcpy(gaps, v + head, len - head);
        t->have_mark = true;
        t->mark = offset;
        free(t->gaps);
        t->gaps = gaps;
        t->gaps_len = gaps ? len - head : 0;
        return;
    }
    if (type != TYPE_UNIT || !m->key || m->key_len < 2)
        goto bad;
    /* The key is "u/<group>/<board id>/<kind>/<partition>" ("u/<group>/<board id>/<kind>"
     * before lanes); the value names the partition either way. */
    take_unit(cl, m, 2 + group_len + 1, kind, partition, offset, head, id_len, url_len);
    return;
bad:
    keng_log_warn("a message of the counts topic is not a keng snapshot; ignored",
                  "partition=%" PRId32 " offset=%" PRId64, m->partition, m->offset);
}

static void drain(keng_cluster_t *cl)
{
    rd_kafka_message_t *m;

    while (cl->queue && (m = rd_kafka_consume_queue(cl->queue, 0))) {
        handle_message(cl, m);
        rd_kafka_message_destroy(m);
    }
}

static void on_ready(void *arg)
{
    drain(arg);
}

int keng_cluster_catch_up(keng_cluster_t *cl, int timeout_ms)
{
    int64_t deadline = keng_monotonic_ms() + timeout_ms;
    int64_t *high = calloc((size_t)cl->nparts, sizeof(int64_t));
    int ret = -1;

    if (!high)
        return -1;
    for (int32_t p = 0; p < cl->nparts; p++) {
        int64_t low = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            cl->reader, cl->topic, p, &low, &high[p], (int)(deadline - keng_monotonic_ms()));
        if (err) {
            keng_log_warn("cannot read the end of the counts topic",
                          "partition=%" PRId32 " error=\"%s\"", p, rd_kafka_err2str(err));
            goto out;
        }
        if (high[p] <= low)
            high[p] = 0; /* empty: nothing to wait for */
    }
    for (;;) {
        bool behind = false;
        for (int32_t p = 0; p < cl->nparts && !behind; p++)
            behind = cl->read_next[p] < high[p];
        if (!behind)
            break;
        int64_t left = deadline - keng_monotonic_ms();
        if (left <= 0) {
            keng_log_warn("the counts topic was not read to its end in time", NULL);
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consume_queue(cl->queue, (int)(left < 100 ? left : 100));
        if (m) {
            handle_message(cl, m);
            rd_kafka_message_destroy(m);
        }
    }
    ret = 0;
out:
    free(high);
    return ret;
}

bool keng_cluster_unit(const keng_cluster_t *cl, uint32_t board_index, keng_kind_t kind,
                       uint32_t lane, const unsigned char **state, size_t *len, int32_t *partition,
                       int64_t *next_offset)
{
    const snap_t *s;

    if (board_index >= cl->nboards || (unsigned)kind >= KENG_KIND_COUNT || lane >= KENG_UNIT_LANES)
        return false;
    s = &cl->snaps[(lane * cl->nboards + board_index) * KENG_KIND_COUNT + (uint32_t)kind];
    if (!s->state)
        return false;
    *state = s->state;
    *len = s->len;
    *partition = s->partition;
    *next_offset = s->offset;
    return true;
}

bool keng_cluster_mark(const keng_cluster_t *cl, keng_kind_t kind, int32_t partition,
                       int64_t *next_offset)
{
    const track_t *t = track_get(cl, kind, partition);

    if (!t || !t->have_mark)
        return false;
    *next_offset = t->mark;
    return true;
}

bool keng_cluster_mark_gaps(const keng_cluster_t *cl, keng_kind_t kind, int32_t partition,
                            const unsigned char **gaps, size_t *len)
{
    const track_t *t = track_get(cl, kind, partition);

    if (!t || !t->have_mark || !t->gaps)
        return false;
    *gaps = t->gaps;
    *len = t->gaps_len;
    return true;
}

void keng_cluster_set_owned(keng_cluster_t *cl, keng_kind_t kind, int32_t partition, bool owned)
{
    track_t *t = track_find(cl, kind, partition, true);

    if (!t || t->owned == owned)
        return;
    t->owned = owned;
    for (uint32_t u = (uint32_t)kind; u < cl->nunits; u += KENG_KIND_COUNT) {
        if (!cl->snaps[u].state || cl->snaps[u].partition != partition)
            continue;
        if (owned)
            keng_counts_unit_clear(cl->remote, u / KENG_KIND_COUNT, kind);
        else
            load_remote(cl, u);
    }
}

int keng_cluster_set_registry(keng_cluster_t *cl, const keng_registry_t *reg)
{
    return cl ? keng_counts_set_registry(cl->remote, reg) : 0;
}

const keng_counts_t *keng_cluster_counts(const keng_cluster_t *cl)
{
    return cl->remote;
}

void keng_cluster_advance(keng_cluster_t *cl, int64_t now_ms)
{
    keng_counts_advance(cl->remote, now_ms);
}

bool keng_cluster_owner(const keng_cluster_t *cl, uint32_t board_index, keng_kind_t kind,
                        const char **instance_id, const char **url)
{
    if (board_index >= cl->nboards || (unsigned)kind >= KENG_KIND_COUNT)
        return false;
    /* Of a board that moved, the lane another instance published last names the owner. */
    const snap_t *best = NULL;
    for (uint32_t lane = 0; lane < KENG_UNIT_LANES; lane++) {
        const snap_t *s =
            &cl->snaps[(lane * cl->nboards + board_index) * KENG_KIND_COUNT + (uint32_t)kind];
        const track_t *t = s->state && s->owner >= 0 ? track_get(cl, kind, s->partition) : NULL;
        if (!s->state || s->owner < 0 || (t && t->owned) ||
            strcmp(cl->owners[s->owner].id, cl->instance_id) == 0)
            continue;
        if (!best || s->partition > best->partition)
            best = s;
    }
    if (!best)
        return false;
    *instance_id = cl->owners[best->owner].id;
    *url = cl->owners[best->owner].url;
    return true;
}

const char *keng_cluster_instance_id(const keng_cluster_t *cl)
{
    return cl->instance_id;
}

/* ---- life cycle ---- */

static void free_cluster(keng_cluster_t *cl)
{
    if (!cl)
        return;
    for (uint32_t u = 0; cl->snaps && u < cl->nunits; u++)
        free(cl->snaps[u].state);
    for (int i = 0; i < cl->nowners; i++) {
        free(cl->owners[i].id);
        free(cl->owners[i].url);
    }
    keng_counts_destroy(cl->remote);
    free(cl->snaps);
    for (size_t i = 0; cl->tracks && i < cl->ntracks; i++) {
        free(cl->tracks[i].pending_gaps);
        free(cl->tracks[i].gaps);
    }
    free(cl->tracks);
    free(cl->read_next);
    free(cl->topic);
    free(cl->instance_id);
    free(cl->group);
    free(cl->url);
    free(cl);
}

/* The reader: assigned every partition from the beginning, in no group's name. */
static int start_reader(keng_cluster_t *cl, const keng_config_t *cfg, char *errstr,
                        size_t errstr_size)
{
    char group[ID_MAX + 64];
    rd_kafka_conf_t *conf = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, errstr_size);
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err;
    int ret = -1;

    if (!conf)
        return -1;
    /* assign() never joins the group; librdkafka still wants a name for it. */
    snprintf(group, sizeof(group), "keng-aggregate-reader-%s", cl->instance_id);
    if (keng_kafka_conf_set(conf, "group.id", group, errstr, errstr_size) ||
        keng_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
        keng_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    cl->reader = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!cl->reader) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_poll_set_consumer(cl->reader);
    cl->queue = rd_kafka_queue_get_consumer(cl->reader);
    rkt = rd_kafka_topic_new(cl->reader, cl->topic, NULL);
    err = rkt ? rd_kafka_metadata(cl->reader, 0, rkt, &md, METADATA_TIMEOUT)
              : RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (!err && (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1))
        err = md->topic_cnt == 1 && md->topics[0].err ? md->topics[0].err
                                                      : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    if (err) {
        keng_kafka_denied(KENG_KAFKA_CONSUMER, err, cl->topic, rd_kafka_err2str(err));
        snprintf(errstr, errstr_size,
                 "the counts topic %s is not usable (%s): create it (keng-broker does, "
                 "deploy/create-topics.sh in production) or set topic.board_counts",
                 cl->topic, rd_kafka_err2str(err));
        goto out;
    }
    cl->nparts = md->topics[0].partition_cnt;
    cl->read_next = calloc((size_t)cl->nparts, sizeof(int64_t));
    if (!cl->read_next) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(cl->nparts);
    for (int32_t p = 0; p < cl->nparts; p++)
        rd_kafka_topic_partition_list_add(parts, cl->topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    err = rd_kafka_assign(cl->reader, parts);
    if (err) {
        snprintf(errstr, errstr_size, "cannot read the counts topic %s: %s", cl->topic,
                 rd_kafka_err2str(err));
        goto out;
    }
    ret = 0;
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return ret;
}

keng_cluster_t *keng_cluster_new(uv_loop_t *loop, const keng_config_t *cfg,
                                 const keng_cluster_options_t *opt, const keng_registry_t *reg,
                                 const keng_counts_options_t *kopt, char *errstr,
                                 size_t errstr_size)
{
    keng_cluster_t *cl = calloc(1, sizeof(*cl));
    keng_counts_options_t ropt;
    rd_kafka_conf_t *conf = NULL;

    if (!cl) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (strlen(opt->instance_id) == 0 || strlen(opt->instance_id) > ID_MAX ||
        strlen(opt->advertised_url) > URL_MAX) {
        snprintf(errstr, errstr_size,
                 "instance.id must be 1 to %d bytes and advertised.url at most %d", ID_MAX,
                 URL_MAX);
        goto fail;
    }
    cl->loop = loop;
    cl->reg = reg;
    cl->fixed_clock_ms = opt->fixed_clock_ms;
    cl->nboards = (uint32_t)keng_registry_board_count(reg);
    cl->nunits = KENG_UNIT_LANES * cl->nboards * KENG_KIND_COUNT;
    cl->topic = strdup(opt->topic);
    cl->instance_id = strdup(opt->instance_id);
    cl->url = strdup(opt->advertised_url);
    cl->group = strdup(opt->group_id ? opt->group_id : "");
    cl->snaps = calloc((size_t)cl->nunits + 1, sizeof(snap_t));
    /* Others' states only count; their ids deduplicate nothing here, so none are kept. */
    if (kopt)
        ropt = *kopt;
    else
        keng_counts_options_default(&ropt);
    ropt.dedup_max_entries = 0;
    ropt.lanes = KENG_UNIT_LANES;
    cl->remote = keng_counts_new(reg, &ropt);
    if (!cl->topic || !cl->instance_id || !cl->url || !cl->group || !cl->snaps || !cl->remote) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    for (uint32_t u = 0; u < cl->nunits; u++)
        cl->snaps[u].owner = -1;
    if (start_reader(cl, cfg, errstr, errstr_size) != 0)
        goto fail;

    conf = keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, errstr_size);
    if (!conf)
        goto fail;
    /* Idempotence keeps each partition's states in order: a mark follows its units. */
    if (keng_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) ||
        keng_kafka_conf_set(conf, "linger.ms", "5", errstr, errstr_size))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, cl);
    cl->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!cl->producer)
        goto fail;
    conf = NULL;

    cl->watch = keng_kafka_uv_new(loop, cl->queue, on_ready, cl, errstr, errstr_size);
    if (!cl->watch)
        goto fail;
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    uv_timer_start(&cl->timer, on_timer, POLL_INTERVAL_MS, POLL_INTERVAL_MS);
    keng_log_info("sharing counts", "topic=%s partitions=%" PRId32 " instance=%s url=%s", cl->topic,
                  cl->nparts, cl->instance_id, cl->url);
    return cl;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (cl && cl->producer)
        rd_kafka_destroy(cl->producer);
    if (cl && cl->queue)
        rd_kafka_queue_destroy(cl->queue);
    if (cl && cl->reader) {
        rd_kafka_consumer_close(cl->reader);
        rd_kafka_destroy(cl->reader);
    }
    free_cluster(cl);
    return NULL;
}

static void on_timer_closed(uv_handle_t *handle)
{
    free_cluster(handle->data);
}

void keng_cluster_close(keng_cluster_t *cl)
{
    if (!cl)
        return;
    uv_timer_stop(&cl->timer);
    keng_cluster_flush(cl, CLOSE_FLUSH_MS);
    keng_kafka_uv_close(cl->watch);
    cl->watch = NULL;
    rd_kafka_queue_destroy(cl->queue);
    cl->queue = NULL;
    rd_kafka_consumer_close(cl->reader);
    rd_kafka_destroy(cl->reader);
    rd_kafka_destroy(cl->producer);
    uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
}
