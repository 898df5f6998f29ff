/* The Kafka consumer of keng-aggregate on the libuv loop: decode, count or dead-letter, and
 * the consumer's life cycle; the checkpoint (consumer_checkpoint.c) and the rebalances
 * (consumer_rebalance.c) live in rooms of their own, and nothing here touches LMDB. */
#include "consumer.h"
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_denied.h"
#include "kafka_health.h"
#include "kafka_uv.h"
#include "log.h"
#include "timeutil.h"

typedef struct watermark_query {
    uv_work_t req;
    keng_consumer_t *c;
    int topic;
    int32_t partition;
    int64_t low, high;
    rd_kafka_resp_err_t err;
} watermark_query_t;

static void finish_stop(keng_consumer_t *c);
static int open_handle(keng_consumer_t *c, char *errstr, size_t errstr_size);
static void destroy_handle(keng_consumer_t *c, int flags);

void keng_consumer_options_default(keng_consumer_options_t *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->topic_incidents = "antt.incidents";
    opt->topic_mediations = "antt.mediations";
    opt->group_id = "keng-aggregate";
    opt->checkpoint_interval_ms = 1000;
    opt->checkpoint_events = 1000000;
    opt->checkpoint_stale_ms = 60000;
    opt->batch_max = 1000;
    opt->rule = KENG_EVENT_RULE_DEFAULT;
}

int64_t keng_consumer_now(const keng_consumer_t *c)
{
    return c->opt.fixed_clock_ms > 0 ? c->opt.fixed_clock_ms : keng_now_ms();
}

/* counts.c wants a clock that never goes back; the wall clock may. */
int64_t keng_consumer__now_ms(keng_consumer_t *c)
{
    int64_t now = keng_consumer_now(c);

    if (now < c->last_now)
        now = c->last_now;
    c->last_now = now;
    return now;
}

int keng_consumer__topic_index(const keng_consumer_t *c, const char *name)
{
    for (int t = 0; t < TOPIC_COUNT; t++)
        if (strcmp(c->topics[t], name) == 0)
            return t;
    return -1;
}

part_t *keng_consumer__part_find(keng_consumer_t *c, int topic, int32_t partition, bool create)
{
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].topic == topic && c->parts[i].partition == partition)
            return &c->parts[i];
    if (!create)
        return NULL;
    if (c->nparts == c->parts_cap) {
        size_t cap = c->parts_cap ? c->parts_cap * 2 : 16;
        part_t *p = realloc(c->parts, cap * sizeof(*p));
        if (!p)
            return NULL;
        c->parts = p;
        c->parts_cap = cap;
    }
    part_t *p = &c->parts[c->nparts++];
    memset(p, 0, sizeof(*p));
    p->topic = topic;
    p->partition = partition;
    p->next_offset = -1;
    p->target = -1;
    return p;
}

/* One line for the dead letters of a reason since its last line (the metric keeps the exact
 * count; one registry mistake must not write a line per event). */
static void log_reason(reason_count_t *r, int64_t now_ms)
{
    keng_log_warn("events dead-lettered (one line per reason every 10 s at most)",
                  "reason=%s count=%" PRIu64 " total=%" PRIu64 " %s", r->name, r->unlogged,
                  r->count, r->last);
    r->unlogged = 0;
    r->logged_ms = now_ms;
}

/* The summaries due: reasons with dead letters not logged yet, their 10 s over (or every
 * one of them, at the stop). */
static void log_reasons_due(keng_consumer_t *c, int64_t now_ms, bool stopping)
{
    for (size_t i = 0; i < c->nreasons; i++) {
        reason_count_t *r = &c->reasons[i];
        if (r->unlogged > 0 && (stopping || now_ms - r->logged_ms >= DEADLETTER_LOG_MS))
            log_reason(r, now_ms);
    }
}

static reason_count_t *count_reason(keng_consumer_t *c, const char *reason)
{
    size_t i;

    for (i = 0; i < c->nreasons; i++)
        if (strcmp(c->reasons[i].name, reason) == 0)
            break;
    if (i == c->nreasons) {
        if (c->nreasons == REASON_MAX)
            i = REASON_MAX - 1; /* reasons are a fixed small set; this only guards */
        else
            snprintf(c->reasons[c->nreasons++].name, sizeof(c->reasons[0].name), "%s", reason);
    }
    c->reasons[i].count++;
    return &c->reasons[i];
}

/* ---- readiness ---- */

static bool part_reached(const part_t *p)
{
    if (p->target < 0)
        return false;
    if (p->target <= p->low)
        return true; /* empty partition */
    return p->next_offset >= p->target;
}

static void update_ready(keng_consumer_t *c)
{
    size_t assigned = 0;

    if (c->ready || !c->got_assignment)
        return;
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (!p->assigned)
            continue;
        assigned++;
        if (!p->reached && !(p->reached = part_reached(p)))
            return;
    }
    if (assigned == 0)
        return;
    c->ready = true;
    /* Alerts wait for this: before it the counts lack events still to be read again, and
     * would resolve alerts that are firing. Every board of this instance's partitions now
     * has its unit: the alerts of boards that were held only because theirs was not known
     * yet, and still is not, are another instance's (keng_consumer__holds_scope). */
    if (c->alerts) {
        size_t released = keng_alerts_release_unheld(c->alerts);
        if (released > 0)
            keng_log_info("alerts of boards this instance does not count let go", "released=%zu",
                          released);
        keng_alerts_evaluate_every_scope(c->alerts, c->last_now);
    }
    keng_log_info("caught up with the topics", "partitions=%zu counted=%" PRIu64, assigned,
                  c->stats.counted);
}

bool keng_consumer_checkpoint_ok(const keng_consumer_t *c, char *reason, size_t reason_size)
{
    int64_t since = keng_monotonic_ms() - c->checkpoint_ok_mono;

    if (!c->checkpoint_failed || since <= c->opt.checkpoint_stale_ms)
        return true;
    snprintf(reason, reason_size,
             "no checkpoint written for %" PRId64 " s (checkpoint.stale.ms is %" PRId64
             "), %d failed in a row: %s",
             since / 1000, c->opt.checkpoint_stale_ms, c->checkpoint_failed, c->checkpoint_error);
    return false;
}

int keng_consumer_fatal(const keng_consumer_t *c, char *reason, size_t reason_size)
{
    if (!c->fatal_err)
        return 0;
    if (c->fatal_err == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID && c->rejoin_pending)
        snprintf(reason, reason_size,
                 "fenced by the group coordinator; rejoining under the same group.instance.id "
                 "(%" PRIu64 " times fenced since the start): %s",
                 c->stats.fenced, c->fatal_reason);
    else if (c->fatal_err == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID)
        snprintf(reason, reason_size,
                 "fenced: another consumer joined the group with this instance's "
                 "group.instance.id (a second process, or a copy of its state dir): fenced "
                 "%d times in ten minutes, this one counts nothing more: stop the other or "
                 "give it its own id, then restart this one (%s)",
                 REJOIN_MAX + 1, c->fatal_reason);
    else
        snprintf(reason, reason_size, "the Kafka consumer failed for good; restart: %s",
                 c->fatal_reason);
    return (int)c->fatal_err;
}

bool keng_consumer_ready(const keng_consumer_t *c, char *reason, size_t reason_size)
{
    size_t behind = 0, unknown = 0, assigned = 0;

    if (keng_consumer_fatal(c, reason, reason_size) != 0)
        return false;
    if (!keng_consumer_checkpoint_ok(c, reason, reason_size))
        return false;
    if (c->ready)
        return true;
    if (!c->got_assignment) {
        snprintf(reason, reason_size,
                 "waiting for partitions from the consumer group: is the broker reachable?");
        return false;
    }
    for (size_t i = 0; i < c->nparts; i++) {
        const part_t *p = &c->parts[i];
        if (!p->assigned)
            continue;
        assigned++;
        if (p->target < 0)
            unknown++;
        else if (!p->reached)
            behind++;
    }
    size_t waiting = keng_consumer__schema_waiting(c);
    if (assigned == 0)
        snprintf(reason, reason_size, "no partition is assigned to this instance");
    else if (waiting)
        snprintf(reason, reason_size,
                 "%zu of %zu partitions wait for the schema registry to resolve a schema id",
                 waiting, assigned);
    else if (unknown)
        snprintf(reason, reason_size, "%zu of %zu partitions have no known high watermark yet",
                 unknown, assigned);
    else
        snprintf(reason, reason_size, "%zu of %zu partitions are still catching up", behind,
                 assigned);
    return false;
}

static void watermark_work(uv_work_t *req)
{
    watermark_query_t *q = req->data;

    /* Thread pool: only librdkafka's thread-safe call, on a handle that outlives the query. */
    q->err = rd_kafka_query_watermark_offsets(q->c->rk, q->c->topics[q->topic], q->partition,
                                              &q->low, &q->high, WATERMARK_TIMEOUT_MS);
}

static void watermark_done(uv_work_t *req, int status)
{
    watermark_query_t *q = req->data;
    keng_consumer_t *c = q->c;
    part_t *p = keng_consumer__part_find(c, q->topic, q->partition, false);

    c->watermark_queries--;
    if (p) {
        p->query_in_flight = false;
        if (status == 0 && !q->err && p->assigned && p->target < 0) {
            p->low = q->low;
            p->target = q->high;
            keng_consumer__gone_note_low(c, p);
            keng_log_debug("partition watermarks",
                           "topic=%s partition=%" PRId32 " low=%" PRId64 " high=%" PRId64,
                           c->topics[q->topic], q->partition, q->low, q->high);
        } else if (q->err) {
            keng_log_debug("watermark query failed, will retry",
                           "topic=%s partition=%" PRId32 " error=\"%s\"", c->topics[q->topic],
                           q->partition, rd_kafka_err2str(q->err));
        }
    }
    free(q);
    update_ready(c);
    if (c->stopping && c->watermark_queries == 0)
        finish_stop(c);
}

void keng_consumer__query_watermarks(keng_consumer_t *c)
{
    /* Not while the handle the queries use is to be replaced (on_rejoin_timer). */
    if (c->stopping || c->ready || !c->rk || c->rejoin_pending)
        return;
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (!p->assigned || p->target >= 0 || p->query_in_flight)
            continue;
        watermark_query_t *q = calloc(1, sizeof(*q));
        if (!q)
            return;
        q->c = c;
        q->topic = p->topic;
        q->partition = p->partition;
        q->req.data = q;
        if (uv_queue_work(c->loop, &q->req, watermark_work, watermark_done) != 0) {
            free(q);
            return;
        }
        p->query_in_flight = true;
        c->watermark_queries++;
    }
}

/* Whether a fenced instance may rejoin now: fewer than REJOIN_MAX rejoins in the last
 * REJOIN_WINDOW_MS. Notes this one when it may. */
static bool may_rejoin(keng_consumer_t *c, int64_t now)
{
    if (!c->group_instance_id || c->stopping)
        return false;
    if (c->fenced_mono[0] != 0 && now - c->fenced_mono[0] <= REJOIN_WINDOW_MS)
        return false;
    memmove(c->fenced_mono, c->fenced_mono + 1, (REJOIN_MAX - 1) * sizeof(c->fenced_mono[0]));
    c->fenced_mono[REJOIN_MAX - 1] = now;
    return true;
}

static void on_rejoin_timer(uv_timer_t *timer);

/* A fatal error stops the consumer handle for good; it is kept for /readyz, which says so
 * while it lasts. librdkafka 2.0.2 raises one for a static member the coordinator fenced, and
 * a coordinator fences members that have no twin too: after a failover that lost track of
 * the member, its rejoin gets a new member id while a commit still carries the old one (seen
 * with two of three brokers killed, kafka-faults.test_broker_loss). So a fenced instance
 * joins again under its id with a new handle, which fences a twin in turn if there is one;
 * two twins would fence each other back and forth, so after REJOIN_MAX rejoins in
 * REJOIN_WINDOW_MS the next fence is final. */
void keng_consumer__note_fatal(keng_consumer_t *c)
{
    if (c->fatal_err)
        return;
    c->fatal_err = rd_kafka_fatal_error(c->rk, c->fatal_reason, sizeof(c->fatal_reason));
    if (!c->fatal_err)
        c->fatal_err = RD_KAFKA_RESP_ERR__FATAL;
    if (c->fatal_err != RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID) {
        keng_log_error("fatal Kafka error: this instance counts nothing more until restarted",
                       "code=%s error=\"%s\"", rd_kafka_err2name(c->fatal_err), c->fatal_reason);
        return;
    }
    c->stats.fenced++;
    if (!may_rejoin(c, keng_monotonic_ms())) {
        keng_log_error("fenced again: another process uses this instance's group.instance.id; "
                       "this one counts nothing more until restarted",
                       "code=%s fenced=%" PRIu64 " error=\"%s\"", rd_kafka_err2name(c->fatal_err),
                       c->stats.fenced, c->fatal_reason);
        return;
    }
    keng_log_warn("fenced by the group coordinator; rejoining under the same group.instance.id "
                  "with a new Kafka handle (from the checkpoint: nothing is lost or counted twice)",
                  "code=%s fenced=%" PRIu64 " delay_ms=%d error=\"%s\"",
                  rd_kafka_err2name(c->fatal_err), c->stats.fenced, REJOIN_DELAY_MS,
                  c->fatal_reason);
    c->rejoin_pending = true;
    uv_timer_start(&c->rejoin_timer, on_rejoin_timer, REJOIN_DELAY_MS, 0);
}

/* Serves what the fenced handle still has queued before it goes: a revoke or an assignment
 * the fence interrupted, which librdkafka waits for before a destroy can end (an assignment
 * marks the handle stuck: keng_consumer__rebalance_cb). Its consumer close serves nothing
 * once fenced, so its queue is served here until quiet, for SETTLE_MS at most, and what it
 * still has assigned is given back. Messages it still holds are dropped: they are read again
 * from the checkpoint. */
static void settle_fenced_handle(keng_consumer_t *c)
{
    int64_t start = keng_monotonic_ms();
    int quiet = 0;

    while (quiet < 2 && keng_monotonic_ms() - start < SETTLE_MS) {
        rd_kafka_topic_partition_list_t *held = NULL;
        rd_kafka_message_t *m;
        int served = 0;

        if (!rd_kafka_assignment(c->rk, &held) && held->cnt > 0) {
            rd_kafka_error_t *error = rd_kafka_incremental_unassign(c->rk, held);
            if (error)
                rd_kafka_error_destroy(error);
            served++;
        }
        if (held)
            rd_kafka_topic_partition_list_destroy(held);
        while ((m = rd_kafka_consumer_poll(c->rk, 50)) != NULL) {
            rd_kafka_message_destroy(m);
            served++;
        }
        quiet = served ? 0 : quiet + 1;
    }
    keng_log_info("fenced Kafka handle settled", "ms=%" PRId64, keng_monotonic_ms() - start);
}

/* The fenced handle's partitions go as a lost assignment (checkpointed, nothing published),
 * and a new handle joins the group; it counts from the checkpoint like a restart would. */
static void on_rejoin_timer(uv_timer_t *timer)
{
    keng_consumer_t *c = timer->data;
    char errstr[512];

    if (c->stopping)
        return;
    if (c->watermark_queries > 0) {
        /* They use the handle on the thread pool: wait for them. */
        uv_timer_start(timer, on_rejoin_timer, 100, 0);
        return;
    }
    uv_idle_stop(&c->idle);
    if (c->watch) {
        keng_kafka_uv_close(c->watch);
        c->watch = NULL;
    }
    keng_consumer__drop_assignment(c);
    settle_fenced_handle(c);
    /* The coordinator no longer knows this member: there is no group to leave. */
    destroy_handle(c, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    c->got_assignment = false;
    c->assignor_has_state = false;
    c->ready = false;
    c->rejoin_pending = false;
    if (open_handle(c, errstr, sizeof(errstr)) != 0) {
        keng_log_error("cannot rejoin the consumer group after the fence; this instance counts "
                       "nothing more until restarted",
                       "error=\"%s\"", errstr);
        return; /* fatal_err stays, and /readyz says so */
    }
    c->fatal_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    c->fatal_reason[0] = '\0';
    c->stats.rejoins++;
    keng_log_info("rejoined the consumer group under the same group.instance.id",
                  "group=%s rejoins=%" PRIu64, c->group_id, c->stats.rejoins);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    keng_kafka_health_note(KENG_KAFKA_CONSUMER, err);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        keng_consumer__note_fatal(opaque);
        return;
    }
    if (keng_kafka_denied(KENG_KAFKA_CONSUMER, err, NULL, reason))
        return;
    keng_log_warn("Kafka error", "code=%s error=\"%s\"",
                  rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ---- messages ---- */

static void dead_letter(keng_consumer_t *c, const rd_kafka_message_t *m, const char *reason,
                        const char *error)
{
    reason_count_t *r = count_reason(c, reason);
    char e[200];
    int64_t now_ms = keng_monotonic_ms();

    keng_log_value(e, sizeof(e), error);
    snprintf(r->last, sizeof(r->last), "topic=%s partition=%" PRId32 " offset=%" PRId64 " error=%s",
             rd_kafka_topic_name(m->rkt), m->partition, m->offset, e);
    r->unlogged++;
    if (r->logged_ms == 0 || now_ms - r->logged_ms >= DEADLETTER_LOG_MS)
        log_reason(r, now_ms);
    keng_deadletter_send(c->dl, m, reason, error);
    c->stats.deadlettered++;
}

/* ---- a partition held at one message (internal.h) ---- */

static rd_kafka_topic_partition_list_t *partition_at(keng_consumer_t *c, const part_t *p,
                                                     int64_t offset)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);

    rd_kafka_topic_partition_list_add(list, c->topics[p->topic], p->partition)->offset = offset;
    return list;
}

void keng_consumer__hold(keng_consumer_t *c, part_t *p, int64_t offset, hold_for_t why)
{
    rd_kafka_topic_partition_list_t *list = partition_at(c, p, offset);

    rd_kafka_pause_partitions(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    p->hold = HOLD_PAUSED;
    p->hold_for = why;
    p->hold_offset = offset;
}

bool keng_consumer__held_for(const part_t *p, hold_for_t why)
{
    return p->assigned && p->hold == HOLD_PAUSED && p->hold_for == why;
}

void keng_consumer__release(keng_consumer_t *c, part_t *p, const char *what)
{
    rd_kafka_topic_partition_list_t *list = partition_at(c, p, p->hold_offset);
    rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, list, 0);

    if (error) {
        keng_log_error(
            "cannot seek back to the message a partition was held at",
            "message=\"%s\" topic=%s partition=%" PRId32 " offset=%" PRId64 " error=\"%s\"", what,
            c->topics[p->topic], p->partition, p->hold_offset, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    rd_kafka_resume_partitions(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    p->hold = HOLD_RELEASED;
    /* The messages are fetched again: drain when they come (the watcher wakes us). */
}

bool keng_consumer__hold_skip(part_t *p, const rd_kafka_message_t *m)
{
    if (p->hold == HOLD_NONE)
        return false;
    if (p->hold == HOLD_PAUSED || m->offset != p->hold_offset)
        return true; /* fetched before the pause, or before the seek took effect */
    p->hold = HOLD_NONE;
    return false;
}

void keng_consumer__hold_reset(part_t *p)
{
    p->hold = HOLD_NONE;
}

static void handle_message(keng_consumer_t *c, const rd_kafka_message_t *m)
{
    char err[256];
    keng_event_t ev;
    keng_field_error_t ferr;
    keng_times_verdict_t times;
    int32_t schema_id = 0;
    int t, rc;
    part_t *p;

    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__FATAL)
            keng_consumer__note_fatal(c);
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                 !keng_kafka_denied(KENG_KAFKA_CONSUMER, m->err,
                                    m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED
                                        ? c->group_id
                                    : m->rkt ? rd_kafka_topic_name(m->rkt)
                                             : NULL,
                                    rd_kafka_message_errstr(m)))
            keng_log_warn("consumer error", "error=\"%s\"", rd_kafka_message_errstr(m));
        return;
    }
    t = keng_consumer__topic_index(c, rd_kafka_topic_name(m->rkt));
    p = t < 0 ? NULL : keng_consumer__part_find(c, t, m->partition, false);
    if (!p || !p->assigned || (p->next_offset >= 0 && m->offset < p->next_offset))
        return; /* from before a revoke, or already counted */
    if (keng_consumer__hold_skip(p, m))
        return; /* the partition waits for a schema id or a registry version */
    if (p->from_start && p->first_ts_ms == 0)
        keng_consumer__gone_note_message(c, p, rd_kafka_message_timestamp(m, NULL));

    int64_t now = keng_consumer__now_ms(c);
    /* Below replay_until, only some units' events are read again: the rest was handled. */
    bool replay = m->offset < p->replay_until;
    rc = keng_avro_decode(c->dec, m->payload, m->len, &ev, &schema_id, err, sizeof(err));
    if (rc == KENG_AVRO_ERR_UNKNOWN_ID && c->sr_client &&
        keng_consumer__schema_unknown(c, p, m, schema_id, err, sizeof(err)))
        return; /* counted once the registry has answered; the offset stays */
    if (rc != KENG_AVRO_OK) {
        if (!replay)
            dead_letter(c, m, keng_avro_err_reason(rc), err);
    } else if ((int)ev.kind != t) {
        /* A unit's events must all come from one partition of its kind's topic. */
        snprintf(err, sizeof(err), "a %s event on the %s topic", keng_kind_name(ev.kind),
                 c->topics[t]);
        if (!replay)
            dead_letter(c, m, "wrong-record", err);
    } else {
        int32_t idx = keng_registry_find_board(c->reg, ev.board_id, strlen(ev.board_id));
        uint32_t u =
            idx < 0 ? UINT32_MAX : keng_consumer__lane_for(c, (uint32_t)idx, t, m->partition);
        if (u == UINT32_MAX && idx >= 0) /* every lane taken: the first one counts it */
            u = (uint32_t)idx * KENG_KIND_COUNT + (uint32_t)t;
        if (idx < 0 && !replay && keng_consumer__board_wait(c, p, m, ev.board_id)) {
            return; /* counted once the version is in use; the offset stays */
        } else if (idx < 0) {
            snprintf(err, sizeof(err), "board %s is not in the registry", ev.board_id);
            if (!replay)
                dead_letter(c, m, "unknown-board", err);
        } else if (m->partition == c->unit_from_part[u] && m->offset < c->unit_from[u]) {
            /* Already in the unit's state as loaded at assignment. */
        } else if ((times = keng_event_check_times(&c->opt.rule, &ev, now, &ferr)) !=
                   KENG_TIMES_OK) {
            char clock[32];
            snprintf(err, sizeof(err), "%s (the aggregator's clock: %s)", ferr.message,
                     keng_time_format_utc(now, clock, sizeof(clock)));
            if (!replay)
                dead_letter(c, m, keng_times_reason(times), err);
        } else {
            int added = keng_counts_add(c->counts, u / KENG_KIND_COUNT, &ev, now);
            if (added == KENG_COUNTS_DUPLICATE) {
                c->stats.duplicates++;
            } else {
                c->stats.counted++;
                if (c->alerts && added == KENG_COUNTS_ADDED)
                    keng_alerts_note(c->alerts, (uint32_t)idx, &ev);
            }
            if (c->unit_part[u] == PARTITION_NONE)
                c->unit_part[u] = m->partition;
        }
    }
    p->next_offset = m->offset + 1;
    p->offset_dirty = true;
    if (!p->reached && p->target >= 0)
        p->reached = part_reached(p);
    if (++c->events_since_checkpoint >= c->opt.checkpoint_events)
        keng_consumer__checkpoint(c, false);
}

static void on_idle(uv_idle_t *idle);

static void drain(keng_consumer_t *c)
{
    int n = 0;

    while (!c->stopping && n < c->opt.batch_max) {
        /* In batches: one queue lock per batch instead of one per message. */
        rd_kafka_message_t *batch[256];
        size_t want = (size_t)(c->opt.batch_max - n) < 256 ? (size_t)(c->opt.batch_max - n) : 256;
        ssize_t got = rd_kafka_consume_batch_queue(c->queue, 0, batch, want);
        for (ssize_t i = 0; i < got; i++) {
            /* A rebalance handled inside an earlier message's work may stop us mid-batch;
             * the rest is destroyed unread and fetched again from the checkpoint. */
            if (!c->stopping)
                handle_message(c, batch[i]);
            rd_kafka_message_destroy(batch[i]);
        }
        if (got <= 0) {
            uv_idle_stop(&c->idle);
            if (c->alerts && c->ready && n > 0)
                keng_alerts_evaluate_touched(c->alerts, c->last_now);
            update_ready(c);
            return;
        }
        n += (int)got;
    }
    if (c->alerts && c->ready)
        keng_alerts_evaluate_touched(c->alerts, c->last_now);
    /* The queue may still hold messages and librdkafka will not wake us for them: come back
     * on the next loop turn, after HTTP had its share. */
    if (!c->stopping)
        uv_idle_start(&c->idle, on_idle);
    update_ready(c);
}

static void on_idle(uv_idle_t *idle)
{
    drain(idle->data);
}

static void on_ready(void *arg)
{
    drain(arg);
}

static void on_advance(uv_timer_t *timer)
{
    keng_consumer_t *c = timer->data;

    int64_t now = keng_consumer__now_ms(c);

    keng_counts_advance(c->counts, now);
    log_reasons_due(c, keng_monotonic_ms(), false);
    if (c->cluster)
        keng_cluster_advance(c->cluster, now);
    if (c->alerts && c->ready)
        keng_alerts_evaluate_all(c->alerts, now);
    keng_consumer__query_watermarks(c);
    keng_consumer__schema_tick(c);
    keng_consumer__board_tick(c);
}

static void on_checkpoint_timer(uv_timer_t *timer)
{
    keng_consumer_t *c = timer->data;

    keng_consumer__checkpoint(c, false);
}

/* ---- life cycle ---- */

static void free_consumer(keng_consumer_t *c)
{
    if (!c)
        return;
    keng_consumer__schema_close(c);
    if (c->dec)
        keng_avro_decoder_destroy(c->dec);
    for (int t = 0; t < TOPIC_COUNT; t++)
        free(c->topics[t]);
    free(c->unit_part);
    free(c->unit_from);
    free(c->unit_from_part);
    free(c->unit_rebuild);
    free(c->unit_rebuilt);
    free(c->gone_units);
    free(c->dirty_list);
    free(c->parts);
    free(c->group_id);
    free(c->group_instance_id);
    free(c);
}

/* The consumer's own copies of its options and its per-unit arrays (every unit without a
 * partition). Returns 0, or -1 with errstr filled. */
static int init_units(keng_consumer_t *c, const keng_consumer_options_t *opt, char *errstr,
                      size_t errstr_size)
{
    c->opt = *opt;
    if (c->opt.batch_max <= 0)
        c->opt.batch_max = 1000;
    if (c->opt.checkpoint_events <= 0)
        c->opt.checkpoint_events = 1000000;
    if (c->opt.checkpoint_interval_ms <= 0)
        c->opt.checkpoint_interval_ms = 1000;
    if (c->opt.checkpoint_stale_ms <= 0)
        c->opt.checkpoint_stale_ms = 60000;
    /* From the start, so that an instance that never writes one is seen to be stale. */
    c->stats.last_checkpoint_ms = keng_consumer_now(c);
    c->checkpoint_ok_mono = keng_monotonic_ms();
    c->nboards = keng_registry_board_count(c->reg);
    c->topics[0] = strdup(opt->topic_incidents);
    c->topics[1] = strdup(opt->topic_mediations);
    c->group_id = strdup(opt->group_id);
    /* As many lanes as the counts keep apart (keng-aggregate makes them KENG_UNIT_LANES). */
    c->lanes = c->nboards ? keng_counts_slots(c->counts) / c->nboards : 1;
    if (c->lanes < 1)
        c->lanes = 1;
    if (c->lanes > KENG_UNIT_LANES)
        c->lanes = KENG_UNIT_LANES;
    c->nunits = c->nboards * c->lanes * KENG_KIND_COUNT;
    c->unit_part = malloc((c->nunits + 1) * sizeof(int32_t));
    c->unit_from = malloc((c->nunits + 1) * sizeof(int64_t));
    c->unit_from_part = malloc((c->nunits + 1) * sizeof(int32_t));
    c->unit_rebuild = malloc((c->nunits + 1) * sizeof(int32_t));
    c->unit_rebuilt = malloc((c->nunits + 1) * sizeof(int32_t));
    c->dirty_list = malloc((c->nunits + 1) * sizeof(uint32_t));
    if (!c->topics[0] || !c->topics[1] || !c->group_id || !c->unit_part || !c->unit_from ||
        !c->unit_from_part || !c->unit_rebuild || !c->unit_rebuilt || !c->dirty_list) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    c->opt.topic_incidents = c->topics[0];
    c->opt.topic_mediations = c->topics[1];
    c->opt.group_id = c->group_id;
    c->opt.group_instance_id = NULL; /* borrowed: used in this call only; kept below */
    if (opt->group_instance_id && *opt->group_instance_id &&
        !(c->group_instance_id = strdup(opt->group_instance_id))) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t u = 0; u < c->nunits; u++) {
        c->unit_part[u] = PARTITION_NONE;
        c->unit_from[u] = -1;
        c->unit_from_part[u] = PARTITION_NONE;
        c->unit_rebuild[u] = PARTITION_NONE;
        c->unit_rebuilt[u] = PARTITION_NONE;
    }
    return 0;
}

/* librdkafka's settings for the group consumer: keng commits nothing itself but the
 * checkpoint, and takes rebalances cooperatively. Returns the conf (the caller owns it until
 * rd_kafka_new takes it), or NULL with errstr filled. */
static rd_kafka_conf_t *consumer_conf(keng_consumer_t *c, const keng_config_t *cfg,
                                      const char *group_instance_id, char *errstr,
                                      size_t errstr_size)
{
    rd_kafka_conf_t *conf = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (keng_kafka_conf_set(conf, "group.id", c->group_id, errstr, errstr_size) ||
        keng_kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", errstr,
                            errstr_size) ||
        keng_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
        keng_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
        keng_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, errstr_size))
        goto fail;
    /* With a stable id, a restarted instance takes its partitions back from the group
     * coordinator at once instead of waiting for its old session to expire (KIP-345). */
    if (group_instance_id && *group_instance_id &&
        keng_kafka_conf_set(conf, "group.instance.id", group_instance_id, errstr, errstr_size))
        goto fail;
    /* librdkafka 2.0.2 compares queued.min.messages with the whole consumer queue, not one
     * partition's, and once it is reached stops fetching every partition for a full second:
     * at its default of 100,000 that caps catching up near 120,000 events/s. A million
     * keeps the fetcher ahead of the loop; queued.max.messages.kbytes (64 MiB) still bounds
     * the memory the prefetch takes. */
    if (!keng_config_get(cfg, "kafka.queued.min.messages", NULL) &&
        keng_kafka_conf_set(conf, "queued.min.messages", "1000000", errstr, errstr_size))
        goto fail;
    /* Partitions added to an input topic are assigned only once librdkafka refreshes the
     * topic's metadata, every 5 minutes by default: their events would wait that long,
     * unseen by the lag. A few seconds costs one small metadata request each time. */
    if (!keng_config_get(cfg, "kafka.topic.metadata.refresh.interval.ms", NULL) &&
        keng_kafka_conf_set(conf, "topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS, errstr,
                            errstr_size))
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, keng_consumer__rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, c);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Subscribes to both input topics. Returns 0, or -1 with errstr filled. */
static int subscribe(keng_consumer_t *c, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(TOPIC_COUNT);
    for (int t = 0; t < TOPIC_COUNT; t++)
        rd_kafka_topic_partition_list_add(topics, c->topics[t], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, errstr_size, "cannot subscribe to %s and %s: %s", c->topics[0],
                 c->topics[1], rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* A new Kafka handle in the group, subscribed, its queue watched on the loop. Returns 0, or -1
 * with errstr filled and no handle left. */
static int open_handle(keng_consumer_t *c, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = consumer_conf(c, c->cfg, c->group_instance_id, errstr, errstr_size);

    if (!conf)
        return -1;
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    /* Everything, rebalances and errors included, arrives on the one consumer queue. */
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    if (subscribe(c, errstr, errstr_size) == 0 &&
        (c->watch = keng_kafka_uv_new(c->loop, c->queue, on_ready, c, errstr, errstr_size)))
        return 0;
    destroy_handle(c, 0);
    return -1;
}

/* The idle handle and the timers, closed by finish_stop. */
static void start_handles(keng_consumer_t *c)
{
    uv_idle_init(c->loop, &c->idle);
    uv_timer_init(c->loop, &c->advance_timer);
    uv_timer_init(c->loop, &c->checkpoint_timer);
    uv_timer_init(c->loop, &c->rejoin_timer);
    c->idle.data = c->advance_timer.data = c->checkpoint_timer.data = c->rejoin_timer.data = c;
    c->handles_open = 4;
    uv_timer_start(&c->advance_timer, on_advance, ADVANCE_INTERVAL_MS, ADVANCE_INTERVAL_MS);
    uv_timer_start(&c->checkpoint_timer, on_checkpoint_timer,
                   (uint64_t)c->opt.checkpoint_interval_ms,
                   (uint64_t)c->opt.checkpoint_interval_ms);
}

keng_consumer_t *keng_consumer_new(uv_loop_t *loop, const keng_config_t *cfg,
                                   const keng_consumer_options_t *opt, keng_schema_store_t *store,
                                   const keng_registry_t *reg, keng_counts_t *counts,
                                   keng_checkpoint_t *cp, keng_deadletter_t *dl, char *errstr,
                                   size_t errstr_size)
{
    keng_consumer_t *c = calloc(1, sizeof(*c));

    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    c->loop = loop;
    c->cfg = cfg;
    c->reg = reg;
    c->counts = counts;
    c->cp = cp;
    c->dl = dl;
    if (init_units(c, opt, errstr, errstr_size) != 0)
        goto fail;
    c->dec = keng_avro_decoder_new(store, errstr, errstr_size);
    if (!c->dec)
        goto fail;

    /* The checkpoint is where counting resumes; but only for the partitions the group gives
     * this instance, so each partition's units are loaded when it is assigned. */
    keng_counts_advance(counts, keng_consumer__now_ms(c));

    if (open_handle(c, errstr, errstr_size) != 0)
        goto fail;
    /* Before the loop runs again, which is when the watcher first calls on_ready. */
    start_handles(c);
    keng_log_info("consumer started", "group=%s topics=%s,%s", c->group_id, c->topics[0],
                  c->topics[1]);
    return c;

fail:
    free_consumer(c);
    return NULL;
}

static void on_handle_closed(uv_handle_t *handle)
{
    keng_consumer_t *c = handle->data;

    if (--c->handles_open > 0)
        return;
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    free_consumer(c);
    if (done)
        done(arg);
}

/* Destroys the Kafka handle (with librdkafka's destroy flags) and its queue. */
static void destroy_handle(keng_consumer_t *c, int flags)
{
    if (c->queue) {
        rd_kafka_queue_destroy(c->queue);
        c->queue = NULL;
    }
    if (c->rk && c->handle_stuck) {
        /* See keng_consumer__rebalance_cb: destroying it would hang this thread. */
        keng_log_warn("a fenced Kafka handle stuck in a rebalance is left to the process exit "
                      "(librdkafka 2.0.2 cannot destroy it): its threads and memory stay",
                      NULL);
        c->stats.handles_abandoned++;
        c->rk = NULL;
        c->handle_stuck = false;
    }
    if (c->rk && !c->assignor_has_state) {
        /* librdkafka 2.0.2 aborts in rd_kafka_destroy (assertion 'assignor_state' in
         * rd_kafka_sticky_assignor_state_destroy, upstream issue 4312, fixed in 2.3) when
         * the group was joined but no assignment ever arrived: JoinGroup picked the
         * cooperative-sticky assignor, whose state only the first SyncGroup creates. That is
         * the case of an instance stopped while the group waits out dead members (or fenced
         * before its first assignment). The consumer is closed (it left the group) or fenced,
         * and nothing of it is checkpointed yet, so the handle is left to the process's exit
         * instead: its threads and memory end with the process. Waiting for an
         * assignment instead could make a stop take a whole session timeout or more. */
        keng_log_info("no assignment was ever received; leaving the Kafka handle to the "
                      "process exit (librdkafka 2.0.2 cannot destroy it in this state)",
                      NULL);
        c->rk = NULL;
    }
    if (c->rk) {
        rd_kafka_destroy_flags(c->rk, flags);
        c->rk = NULL;
    }
}

/* The last step of stopping: runs once no watermark query still uses the handle. */
static void finish_stop(keng_consumer_t *c)
{
    if (c->watermark_queries > 0)
        return;
    destroy_handle(c, 0);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
    uv_close((uv_handle_t *)&c->advance_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->checkpoint_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->rejoin_timer, on_handle_closed);
}

void keng_consumer_stop(keng_consumer_t *c, void (*done)(void *arg), void *arg)
{
    rd_kafka_resp_err_t err;

    if (c->stopping)
        return;
    c->done = done;
    c->done_arg = arg;
    uv_idle_stop(&c->idle);
    uv_timer_stop(&c->advance_timer);
    uv_timer_stop(&c->checkpoint_timer);
    uv_timer_stop(&c->rejoin_timer);
    if (c->watch) {
        keng_kafka_uv_close(c->watch);
        c->watch = NULL;
    }
    /* Flush the dead letters first: the checkpoint must not pass one that was lost. */
    keng_deadletter_flush(c->dl, SHUTDOWN_FLUSH_MS);
    log_reasons_due(c, keng_monotonic_ms(), true);
    if (keng_consumer__checkpoint(c, true) != 0)
        keng_log_error("the last checkpoint failed; events since the previous one will be "
                       "read again at the next start",
                       NULL);
    /* The instance that takes the partitions over starts from what is in the topic. */
    if (c->cluster)
        keng_cluster_flush(c->cluster, SHUTDOWN_FLUSH_MS);
    c->stopping = true;
    /* Leaves the group; the revoke it triggers runs keng_consumer__rebalance_cb from here. */
    /* Without a handle (a rejoin that failed) there is no group to leave. */
    err = c->rk ? rd_kafka_consumer_close(c->rk) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err)
        keng_log_warn("consumer close", "error=\"%s\"", rd_kafka_err2str(err));
    keng_log_info(
        "consumer stopped",
        "counted=%" PRIu64 " duplicates=%" PRIu64 " deadlettered=%" PRIu64 " checkpoints=%" PRIu64,
        c->stats.counted, c->stats.duplicates, c->stats.deadlettered, c->stats.checkpoints);
    finish_stop(c);
}

void keng_consumer_stats(const keng_consumer_t *c, keng_consumer_stats_t *out)
{
    *out = c->stats;
}

void keng_consumer_each_deadletter(const keng_consumer_t *c,
                                   void (*fn)(const char *reason, uint64_t count, void *arg),
                                   void *arg)
{
    for (size_t i = 0; i < c->nreasons; i++)
        fn(c->reasons[i].name, c->reasons[i].count, arg);
}

void keng_consumer_each_partition(const keng_consumer_t *c,
                                  void (*fn)(const char *topic, int32_t partition, int64_t lag,
                                             void *arg),
                                  void *arg)
{
    for (size_t i = 0; i < c->nparts; i++) {
        const part_t *p = &c->parts[i];
        int64_t low = 0, high = 0, lag;

        if (!p->assigned || !c->rk)
            continue;
        if (rd_kafka_get_watermark_offsets(c->rk, c->topics[p->topic], p->partition, &low, &high) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            high < 0) {
            low = p->low;
            high = p->target;
        }
        if (high < 0)
            continue;
        lag = high - (p->next_offset >= 0 ? p->next_offset : low);
        fn(c->topics[p->topic], p->partition, lag > 0 ? lag : 0, arg);
    }
}

void keng_consumer_set_alerts(keng_consumer_t *c, keng_alerts_t *alerts, keng_alertlog_t *log,
                              int read_timeout_ms)
{
    c->alerts = alerts;
    c->alertlog = log;
    c->alerts_read_timeout_ms = read_timeout_ms;
    if (alerts) {
        keng_alerts_set_holder(alerts, keng_consumer__holds_scope, c);
        keng_alerts_set_shared_counts(alerts, c->cluster ? keng_cluster_counts(c->cluster) : NULL);
    }
}

void keng_consumer_set_cluster(keng_consumer_t *c, keng_cluster_t *cluster)
{
    c->cluster = cluster;
    if (c->alerts)
        keng_alerts_set_shared_counts(c->alerts, cluster ? keng_cluster_counts(cluster) : NULL);
}
