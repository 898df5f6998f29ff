/* What the consumer's rooms share (consumer.c, consumer_checkpoint.c, consumer_rebalance.c):
 * its state and the helpers each room calls in another; never included outside them. All of
 * it runs on the loop thread. */
#ifndef KENG_CONSUMER_INTERNAL_H
#define KENG_CONSUMER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "consumer.h"
#include "kafka_uv.h"

#define TOPIC_COUNT            2
#define ADVANCE_INTERVAL_MS    1000
#define WATERMARK_TIMEOUT_MS   3000
#define DEADLETTER_WAIT_MAX_MS 10000
#define SHUTDOWN_FLUSH_MS      5000
#define REASON_MAX             16

/* A checkpointed unit, one kind of a board, is its counts.c state behind this header, which
 * names the partition its events come from, so that a partition's units can be found.
 * Version 2 adds a CRC-32 of the header's first 7 bytes and the state, at bytes 7 to 10;
 * version 1 (7 bytes, no check) is still read. */
#define UNIT_MAGIC0     'K'
#define UNIT_MAGIC1     'U'
#define UNIT_VERSION    2
#define UNIT_HEADER     11
#define UNIT_HEADER_V1  7
#define PARTITION_NONE  (-1)
#define PARTITION_ANY   (-2)  /* unit_rebuild: a damaged unit whose partition is unknown */
#define CATCH_UP_MS     10000 /* what a new owner waits for the counts topic */
#define REVOKE_FLUSH_MS 5000
#define METADATA_MS     5000
/* librdkafka sees new partitions only when it refreshes its metadata: 5 min by default. */
#define METADATA_REFRESH_MS "5000"
#define RETRY_MAX_MS        30000 /* the longest back-off of a failed checkpoint's retry */
/* A fenced static member rejoins under its id after REJOIN_DELAY_MS, unless it rejoined
 * REJOIN_MAX times within REJOIN_WINDOW_MS: then a live twin holds the id (consumer.c). */
#define REJOIN_DELAY_MS  1000
#define REJOIN_MAX       3
#define REJOIN_WINDOW_MS 600000
#define SETTLE_MS        3000 /* the longest a fenced handle is served before it goes */

/* What a held partition waits for ("A partition held at one message" below). */
typedef enum {
    HOLD_FOR_SCHEMA, /* a schema id the Schema Registry has not resolved (consumer_schemas.c) */
    HOLD_FOR_BOARD   /* a board a registry version about to take effect adds (consumer_boards.c) */
} hold_for_t;

typedef struct part {
    int topic; /* index into c->topics */
    int32_t partition;
    bool assigned;
    bool offset_dirty;    /* next_offset changed since the last checkpoint */
    bool query_in_flight; /* a watermark query runs on the thread pool */
    bool reached;         /* read up to target */
    int64_t next_offset;  /* next offset to count; -1 before the first */
    int64_t low, target;  /* watermarks at assignment; target -1 until known */
    int64_t write_from;   /* nothing of it is checkpointed before next_offset gets here */
    int64_t replay_until; /* offsets below were handled by a previous owner */
    bool publish;         /* scratch of a checkpoint: its units or offset were written */
    /* Read from its first retained event (consumer_gone.c): for every unit (whole) or for
     * damaged ones; events reported before gone_before_ms were deleted first (0: none, -1:
     * its first message will say when). */
    bool from_start, rebuild_whole;
    int64_t gone_before_ms;
    int64_t first_ts_ms; /* read from its start: its first message's time, 0 before */
    /* Held at hold_offset for hold_for, then released: skipping until that message comes
     * again. What it waits for: schema_wait_id, or board_wait_board. */
    enum { HOLD_NONE, HOLD_PAUSED, HOLD_RELEASED } hold;
    hold_for_t hold_for;
    int64_t hold_offset;
    int32_t schema_wait_id;
    char board_wait_board[KENG_BOARD_ID_MAX + 1];
} part_t;

typedef struct schema_lookup schema_lookup_t;

/* A rebuilt unit lacks the events of its partition reported before before_ms (retention had
 * deleted them). Kept by partition rather than lane, since a lane is this instance's own
 * numbering; PARTITION_ANY, from checkpoints of releases before lanes: the board's kind in
 * whichever partition. */
typedef struct gone_unit {
    uint32_t board;
    int topic;
    int32_t partition;
    int64_t before_ms;
} gone_unit_t;

/* A schema id the registry answered 404 for, or whose schema cannot be used. */
typedef struct dead_id {
    int32_t id;
    char why[320];
} dead_id_t;
#define DEAD_IDS_MAX 64

typedef struct reason_count {
    char name[32];
    uint64_t count;
    /* The log says each reason at most once every DEADLETTER_LOG_MS: the dead letters since
     * its last line, and where the last of them came from and why. */
    uint64_t unlogged;
    int64_t logged_ms; /* monotonic; 0: never */
    char last[320];    /* "topic=... partition=... offset=... error=..." of the last one */
} reason_count_t;

#define DEADLETTER_LOG_MS 10000

struct keng_consumer {
    uv_loop_t *loop;
    keng_consumer_options_t opt;
    char *topics[TOPIC_COUNT];
    char *group_id;

    keng_avro_decoder_t *dec;
    const keng_registry_t *reg;
    keng_counts_t *counts;
    keng_checkpoint_t *cp;
    keng_deadletter_t *dl;
    keng_alerts_t *alerts;                  /* NULL without alert rules */
    keng_alertlog_t *alertlog;              /* set with alerts */
    keng_consumer_board_wait_fn board_wait; /* NULL: an unknown board is dead-lettered */
    void *board_wait_arg;
    const keng_config_t *cfg; /* borrowed: how the alert topic is read at an assignment */
    int alerts_read_timeout_ms;
    int topic_partitions[TOPIC_COUNT]; /* as of the last assignment; 0 unknown */
    bool decides_above[TOPIC_COUNT];   /* alerts above a board of the topic are decided here */

    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    keng_kafka_uv_t *watch;

    uv_idle_t idle;           /* keeps draining while a batch left messages behind */
    uv_timer_t advance_timer; /* moves the windows, retries watermark queries */
    uv_timer_t checkpoint_timer;
    uv_timer_t rejoin_timer; /* a fenced static member's new handle, REJOIN_DELAY_MS later */
    int handles_open;

    part_t *parts;
    size_t nparts, parts_cap;

    /* A unit is one lane of a (board, kind), kind == topic index: the board's events of one
     * partition (counts.h, "Lanes"). Unit u is slot u / 2, kind u % 2; slot s is lane
     * s / nboards of board s % nboards. A board whose key never changed partition has one. */
    size_t nboards, lanes, nunits;
    int32_t *unit_part; /* partition each unit's events come from; PARTITION_NONE: a free lane */
    int64_t *unit_from; /* count a unit's events from this offset on (its state has the rest) */
    int32_t *unit_from_part; /* the partition unit_from is an offset of */
    int32_t *unit_rebuild;   /* at an assignment: the partition a damaged unit is rebuilt from */
    int32_t *unit_rebuilt;   /* the same, kept after it: whose gap marks the unit */
    gone_unit_t *gone_units; /* rebuilt units that lack events (consumer_gone.c) */
    size_t ngone_units, gone_units_cap;
    bool gone_dirty;         /* a gap to checkpoint (KENG_CHECKPOINT_GONE) */
    bool gone_loaded;        /* the checkpointed gaps were read */
    uint32_t *dirty_list;    /* scratch for a checkpoint */
    keng_cluster_t *cluster; /* NULL: a single instance */
    bool assignment_lost;    /* publish nothing: another instance may own the partitions */

    int64_t last_now;
    int64_t events_since_checkpoint;
    int64_t deadletter_wait_since; /* monotonic ms a checkpoint has waited for dead letters */
    int checkpoint_failed;         /* checkpoints failed in a row */
    int64_t checkpoint_retry_at;   /* monotonic ms: no retry before, unless forced */
    int64_t checkpoint_ok_mono;    /* monotonic ms of the last success, or of the start */
    char checkpoint_error[512];    /* the last failure, for /readyz */
    rd_kafka_resp_err_t fatal_err; /* librdkafka's fatal error (fenced), 0 before */
    char fatal_reason[256];
    char *group_instance_id;         /* static membership's id, NULL: a dynamic member */
    int64_t fenced_mono[REJOIN_MAX]; /* monotonic ms of the last fences, oldest first */
    bool rejoin_pending;             /* rejoin_timer runs */
    bool handle_stuck;               /* rk cannot be destroyed (consumer_rebalance.c) */
    bool got_assignment;
    bool assignor_has_state; /* a rebalance has assigned (maybe nothing): see finish_stop */
    bool ready;
    bool stopping;
    int watermark_queries;
    void (*done)(void *arg);
    void *done_arg;

    /* Schema Registry mode (consumer_schemas.c); sr_client NULL: the manifest's ids */
    keng_http_client_t *sr_client;
    keng_schemareg_conf_t *sr_conf;
    schema_lookup_t *lookups;
    dead_id_t dead[DEAD_IDS_MAX];
    size_t ndead, dead_next;

    keng_consumer_stats_t stats;
    reason_count_t reasons[REASON_MAX];
    size_t nreasons;
};

/* ---- A partition held at one message (consumer.c) ----
 *
 * A message that cannot be counted yet but will be (its schema id not resolved; its board in a
 * registry version about to take effect) holds its partition: paused at it, the messages
 * already fetched behind it skipped, and once released sought back to it, so that nothing is
 * counted out of order and nothing is dead-lettered for a wait. The caller leaves the message
 * uncounted and the partition's offset where it is. */

/* Pauses p at offset, for why. */
void keng_consumer__hold(keng_consumer_t *c, part_t *p, int64_t offset, hold_for_t why);
/* Whether p is assigned and paused for why. */
bool keng_consumer__held_for(const part_t *p, hold_for_t why);
/* Lets p go on from the message it was held at; what names that message in the line logged
 * when the seek back fails ("the message that waited for its schema"). */
void keng_consumer__release(keng_consumer_t *c, part_t *p, const char *what);
/* Whether m of p is to be skipped because p is held, or was released and m is not yet the
 * message it was held at. */
bool keng_consumer__hold_skip(part_t *p, const rd_kafka_message_t *m);
/* At an assignment or a revoke: p waits for nothing. */
void keng_consumer__hold_reset(part_t *p);

/* ---- Schema Registry mode (consumer_schemas.c) ---- */

/* m (of p) has schema id id, which the decoder does not know. Returns 1 when p now waits for
 * the registry (paused at m; the caller leaves m uncounted and p's offset where it is), or 0
 * with err filled when the id is known to be dead (the caller dead-letters m). */
int keng_consumer__schema_unknown(keng_consumer_t *c, part_t *p, const rd_kafka_message_t *m,
                                  int32_t id, char *err, size_t err_size);

/* Every second: lookups due again. */
void keng_consumer__schema_tick(keng_consumer_t *c);

/* Assigned partitions paused for the registry. */
size_t keng_consumer__schema_waiting(const keng_consumer_t *c);

/* Gives back the lookups (those in flight are freed by their answer). */
void keng_consumer__schema_close(keng_consumer_t *c);

/* ---- boards of a registry version about to take effect (consumer_boards.c) ---- */

/* m (of p) names board_id, which the registry in use lacks. Returns true when p now waits for
 * a version that has it to take effect (paused at m; the caller leaves m uncounted and p's
 * offset where it is), false when m is to be dead-lettered as unknown-board. */
bool keng_consumer__board_wait(keng_consumer_t *c, part_t *p, const rd_kafka_message_t *m,
                               const char *board_id);
/* Every second: a partition whose board no version about to take effect has any more (the
 * version was deleted or refused) goes on, and its message is dead-lettered then. */
void keng_consumer__board_tick(keng_consumer_t *c);

/* counts.c wants a clock that never goes back; the wall clock may. */
int64_t keng_consumer__now_ms(keng_consumer_t *c);

/* The index of a topic name in c->topics, or -1. */
int keng_consumer__topic_index(const keng_consumer_t *c, const char *name);

/* A partition's state, created (zeroed, offsets unknown) when create; NULL when absent or
 * out of memory. Owned by c, valid until the next call that creates one. */
part_t *keng_consumer__part_find(keng_consumer_t *c, int topic, int32_t partition, bool create);

/* Asks the watermarks of the assigned partitions whose target is unknown (thread pool). */
void keng_consumer__query_watermarks(keng_consumer_t *c);

/* CRC-32 (IEEE) of n bytes, continuing crc (0 to start): a unit record's check. */
uint32_t keng_consumer__crc32(uint32_t crc, const unsigned char *p, size_t n);
/* Writes every dirty unit and moved offset in one transaction (consumer_checkpoint.c).
 * Returns 0, 1 while waiting for dead letters (unless force), or -1 (logged). */
int keng_consumer__checkpoint(keng_consumer_t *c, bool force);

/* Makes the next checkpoint write every unit of p that has state. */
void keng_consumer__mark_partition_dirty(keng_consumer_t *c, part_t *p);

/* Whether this instance decides a scope's alerts (keng_alerts_set_holder's callback; arg is
 * the consumer). */
bool keng_consumer__holds_scope(keng_level_t level, uint32_t scope, keng_kind_t kind, void *arg);

/* Checkpoints every assigned partition as a lost assignment (nothing published), then lets
 * them all go without telling librdkafka: the handle they came from is about to be replaced
 * (a fenced static member rejoining, consumer.c). */
void keng_consumer__drop_assignment(keng_consumer_t *c);

/* Notes librdkafka's fatal error, once: a fenced static member rejoins (consumer.c). */
void keng_consumer__note_fatal(keng_consumer_t *c);

/* The board of unit u, and the unit of board's lane of kind for partition: the lane that
 * holds it, else with create a free one (taken for it), else UINT32_MAX (consumer_lanes.c). */
static inline uint32_t keng_consumer__unit_board(const keng_consumer_t *c, uint32_t u)
{
    return (uint32_t)((u / KENG_KIND_COUNT) % c->nboards);
}
uint32_t keng_consumer__unit_of(keng_consumer_t *c, uint32_t board, int kind, int32_t partition,
                                bool create);
/* The unit an event of board's kind t from partition counts in: its lane, opened at the
 * partition's first event of the board (logged and counted when the board has another), or
 * UINT32_MAX when every lane holds another partition (logged). */
uint32_t keng_consumer__lane_for(keng_consumer_t *c, uint32_t board, int t, int32_t partition);

/* Gaps left by retention (consumer_gone.c): at an assignment, a partition read from its
 * start (whole: for every unit); its low watermark; its first message's time. */
void keng_consumer__gone_note_start(keng_consumer_t *c, part_t *p, bool whole);
void keng_consumer__gone_note_low(keng_consumer_t *c, part_t *p);
void keng_consumer__gone_note_message(keng_consumer_t *c, part_t *p, int64_t timestamp_ms);
/* The checkpointed gaps, read once (at the first assignment). */
void keng_consumer__gone_load(keng_consumer_t *c);
/* The gaps as the KENG_CHECKPOINT_GONE blob (the caller frees it), or NULL. */
char *keng_consumer__gone_encode(const keng_consumer_t *c, size_t *len);
/* The gaps of one partition, for its mark in the counts topic: the caller frees the bytes;
 * NULL with *len 0 when there is none (or no memory, said in the log). */
char *keng_consumer__gone_encode_partition(const keng_consumer_t *c, const part_t *p, size_t *len);
/* At an assignment: takes over the gaps that the partition's previous owner published with
 * its mark, so that they are still said after a handover. */
void keng_consumer__gone_adopt(keng_consumer_t *c, part_t *p);

/* The rebalance callback (consumer_rebalance.c), served from the consumer queue on the loop
 * thread. */
void keng_consumer__rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t *parts, void *opaque);

#endif
