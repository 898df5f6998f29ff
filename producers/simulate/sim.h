/* The field simulator's generator: a reproducible stream of incidents and mediations over the
 * board registry, with the province's day/night rhythm in Asia/Ho_Chi_Minh time, plausible
 * mixes of categories, resolutions and outcomes, and optional late, out-of-order and duplicated
 * events. Pure computation on a simulated clock, which never sleeps: the program paces it.
 *
 * Model. Simulated time S starts at start_ms and advances by exponential gaps whose mean is
 * 1 / (events_per_s * w(h) / mean(w)), where w(h) is the weight of the local hour h (busiest
 * in the evening). Each new event is reported at S and occurred minutes before it (hours to
 * days when late). A board is picked uniformly among those of the registry version in force at
 * the event's occurred_at, so a district gets events in proportion to its boards, and a board
 * that a version adds or removes appears only on its side of the switch. 3 in 5 events are
 * incidents, 2 in 5 mediations. */
#ifndef KENG_SIM_H
#define KENG_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "registry.h"

/* The longest a late event waits to be reported: a week. */
#define KENG_SIM_LATE_MAX_MS (7 * 24 * 3600 * 1000LL)

typedef struct keng_sim_opts {
    uint64_t seed;
    int64_t start_ms;             /* simulated time of the first event */
    double events_per_s;          /* average intensity on the simulated clock, > 0 */
    uint64_t count;               /* events to emit, duplicates included; 0 for no end */
    double late_fraction;         /* of new events: occurred 1 h to 7 days before reported */
    double out_of_order_fraction; /* of new events: held back and emitted 1-20 events later */
    double duplicate_fraction;    /* of emitted events: an exact resend of an earlier one */
    double crossing_fraction;     /* of late events reported within a week after a switch: the
                                     share that occurred before it (the rest after it) */
} keng_sim_opts_t;

typedef struct keng_sim_stats {
    uint64_t emitted;
    uint64_t incidents; /* emitted, duplicates included */
    uint64_t mediations;
    uint64_t late;
    uint64_t out_of_order;
    uint64_t duplicates;
    uint64_t crossing; /* new events that occurred before a switch and were reported after */
} keng_sim_stats_t;

/* A registry version: its boards are in force from effective_ms until the next version's. */
typedef struct keng_sim_version {
    const keng_registry_t *reg; /* borrowed */
    int64_t effective_ms;
} keng_sim_version_t;

typedef struct keng_sim keng_sim_t;

/* reg is borrowed and must outlive the simulator: the one registry of every event. Returns NULL
 * with errstr filled when the options are out of range or the registry is empty. */
keng_sim_t *keng_sim_new(const keng_registry_t *reg, const keng_sim_opts_t *opts, char *errstr,
                         size_t errstr_size);

/* The same over n registry versions (the array is copied, the registries borrowed and must
 * outlive the simulator), oldest first with effective times strictly increasing: each event's
 * board comes from the version in force at its occurred_at, which is never before the first
 * version's time, and so no board is reported before its version's time. Returns NULL with
 * errstr filled when the options are out of range, the times are not in order, a registry is
 * empty, or start_ms is before the first version's time. */
keng_sim_t *keng_sim_new_versions(const keng_sim_version_t *versions, size_t n,
                                  const keng_sim_opts_t *opts, char *errstr, size_t errstr_size);
void keng_sim_destroy(keng_sim_t *sim);

/* The next event in stream order. Returns 1 with ev filled (its summary is a static string),
 * or 0 once count events were emitted. */
int keng_sim_next(keng_sim_t *sim, keng_event_t *ev);

/* The simulated clock, ms since the epoch: the reported_at of the newest event generated. */
int64_t keng_sim_clock(const keng_sim_t *sim);

/* A ceiling for the simulated clock: events generated from now on are reported no later
 * than limit_ms (a stream that must not claim the future). Raising it later is allowed. */
void keng_sim_set_ceiling(keng_sim_t *sim, int64_t limit_ms);

void keng_sim_get_stats(const keng_sim_t *sim, keng_sim_stats_t *out);

/* The relative intensity of local hour 0-23 (mean over the day 1.0). */
double keng_sim_hour_weight(int local_hour);

/* Probability that a new incident is of category c, that one is transferred to police. */
double keng_sim_category_share(keng_category_t c);
double keng_sim_transfer_share(void);

#endif
