/* keng-aggregate's scale-out: the compacted topic antt.board-counts, where every instance
 * publishes the state of each unit it owns (a board's events of one kind from one partition),
 * tagged with the input partition and offset that state includes, plus a per-partition mark once
 * every unit of a checkpoint is in the topic. Every instance also reads the whole topic (never as a
 * group member), so that it knows every unit's latest state and owner: that is what /v1/counts adds
 * to its own live state, and where a new owner of a partition resumes from. docs/SCALE_OUT.md has
 * the design.
 *
 * Thread: loop thread only; the delivery reports and the reader's messages are served on it. */
#ifndef KENG_CLUSTER_H
#define KENG_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "counts.h"
#include "registry.h"

typedef struct keng_cluster keng_cluster_t;

/* How many partitions' shares of one (board, kind) are kept apart, each as a unit of its own
 * (a lane, counts.h): a board's key hashes to another partition each time its topic grows,
 * so this many partition counts over the topic's life keep every board exact. */
#define KENG_UNIT_LANES 4

typedef struct keng_cluster_options {
    const char *topic;          /* antt.board-counts */
    const char *instance_id;    /* this instance's name, hostname-pid by default */
    const char *advertised_url; /* where this instance's HTTP API is reached */
    const char *group_id;       /* the consumer group; records of other groups are ignored */
    int64_t fixed_clock_ms;     /* > 0: the clock stands still there (tests) */
} keng_cluster_options_t;

/* cfg is used during the call only; reg and kopt (may be NULL) must outlive the cluster.
 * Reads the topic's partition count (a short blocking metadata request) and starts reading
 * it from the beginning. Returns NULL with errstr filled. The caller owns the cluster and
 * gives it back with keng_cluster_close, which frees it once the loop closed its handles. */
keng_cluster_t *keng_cluster_new(uv_loop_t *loop, const keng_config_t *cfg,
                                 const keng_cluster_options_t *opt, const keng_registry_t *reg,
                                 const keng_counts_options_t *kopt, char *errstr,
                                 size_t errstr_size);

/* Waits (up to timeout_ms) for the delivery of everything published, marks included. */
void keng_cluster_flush(keng_cluster_t *cl, int timeout_ms);

/* Flushes, stops reading and producing; the memory goes once the loop closed the handles. */
void keng_cluster_close(keng_cluster_t *cl);

/* Publishes the state of one unit (bytes borrowed), the board's share of the kind's topic's
 * partition, as of input offset next_offset of that partition. */
void keng_cluster_publish_unit(keng_cluster_t *cl, uint32_t board_index, keng_kind_t kind,
                               int32_t partition, int64_t next_offset, const unsigned char *state,
                               size_t len);

/* Publishes the mark "every unit of (kind, partition) that changed before next_offset is in
 * the topic", once everything published before for that partition has been delivered. gaps
 * (borrowed, copied; NULL with 0 for none) is what the owner knows the partition's counts lack
 * (the consumer's format, consumer_gone.c): the next owner reads it with the mark. */
void keng_cluster_publish_mark(keng_cluster_t *cl, keng_kind_t kind, int32_t partition,
                               int64_t next_offset, const unsigned char *gaps, size_t gaps_len);

/* True (once) when a publication of (kind, partition) failed: the caller then publishes
 * every unit of that partition again. */
bool keng_cluster_take_resync(keng_cluster_t *cl, keng_kind_t kind, int32_t partition);

/* Reads the topic up to its current end, blocking the loop for at most timeout_ms; what a
 * new owner does before it picks a starting point. Returns 0, or -1 when the end was not
 * reached (then the snapshots may be stale). */
int keng_cluster_catch_up(keng_cluster_t *cl, int timeout_ms);

/* The latest state of one lane of a (board, kind) read from the topic (lane below
 * KENG_UNIT_LANES; the lanes are this reader's, in no order): returns true and sets the
 * borrowed bytes (valid until the next read from the topic), its partition and the offset it
 * includes; false for a lane that holds nothing. */
bool keng_cluster_unit(const keng_cluster_t *cl, uint32_t board_index, keng_kind_t kind,
                       uint32_t lane, const unsigned char **state, size_t *len, int32_t *partition,
                       int64_t *next_offset);

/* The latest mark of (kind, partition): returns true and sets *next_offset. */
bool keng_cluster_mark(const keng_cluster_t *cl, keng_kind_t kind, int32_t partition,
                       int64_t *next_offset);

/* What the latest mark of (kind, partition) said of its gaps: returns true and sets the
 * borrowed bytes (valid until the next read from the topic) when it said something. */
bool keng_cluster_mark_gaps(const keng_cluster_t *cl, keng_kind_t kind, int32_t partition,
                            const unsigned char **gaps, size_t *len);

/* Tells whether this instance owns (kind, partition): the units of partitions it owns are
 * counted live by the consumer, the others come from the topic. */
void keng_cluster_set_owned(keng_cluster_t *cl, keng_kind_t kind, int32_t partition, bool owned);

/* The counts of every unit that this instance does not own, from their latest states. */
const keng_counts_t *keng_cluster_counts(const keng_cluster_t *cl);

/* A registry switch: those counts roll up under reg from now on (keng_counts_set_registry;
 * the same boards at the same indexes). Returns 0, or -1 with nothing changed. */
int keng_cluster_set_registry(keng_cluster_t *cl, const keng_registry_t *reg);

/* Moves the windows of those counts to now_ms. */
void keng_cluster_advance(keng_cluster_t *cl, int64_t now_ms);

/* Who published the unit's latest state, when another instance did: returns true and sets
 * the borrowed instance id and URL. */
bool keng_cluster_owner(const keng_cluster_t *cl, uint32_t board_index, keng_kind_t kind,
                        const char **instance_id, const char **url);

/* This instance's id, borrowed from cl and valid until it is closed. */
const char *keng_cluster_instance_id(const keng_cluster_t *cl);

#endif
