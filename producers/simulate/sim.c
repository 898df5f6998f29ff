/* Generates the simulator's events from a seeded PRNG, so that a seed, a start time and the
 * registry versions give the same stream on every machine; it never reads the wall clock or
 * sleeps. */
#include "sim.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

#define RING_SIZE      1024   /* earlier events a duplicate may copy */
#define HELD_MAX       64     /* events held back for out-of-order emission */
#define HELD_SPAN_MAX  20     /* a held event comes out 1..20 events later */
#define INCIDENT_SHARE 0.6    /* mediations are 2/3 as frequent as incidents */
#define LATE_MIN_MS    3600e3 /* a late event is reported an hour */
#define LATE_MAX_MS    ((double)KENG_SIM_LATE_MAX_MS) /* to a week after it occurred */

/* Local-hour weights: quiet before dawn, busy from late afternoon, peaking 19:00-22:00. */
static const double hour_raw[24] = {0.35, 0.25, 0.20, 0.20, 0.25, 0.40, 0.60, 0.80,
                                    0.90, 0.90, 0.90, 0.90, 0.85, 0.80, 0.85, 0.90,
                                    1.00, 1.20, 1.50, 1.80, 2.00, 1.90, 1.40, 0.80};

/* Category mix of the provincial report: theft, public disorder, traffic and domestic disputes
 * common, trafficking rare. Weights in KENG_CAT order. */
static const double cat_weight[KENG_CAT_COUNT] = {22, 7, 18, 5, 6, 12, 15, 0.5, 1.5, 5, 6, 2};

/* Share of each category's incidents transferred to commune police (the rest handled
 * locally): serious crime goes to the police; overall about 40%. */
static const double cat_transfer[KENG_CAT_COUNT] = {0.45, 0.60, 0.25, 0.90, 0.60, 0.35,
                                                    0.30, 1.00, 0.80, 0.60, 0.30, 0.20};
#define PENDING_SHARE 0.05

static const double sev_weight_local[KENG_SEV_COUNT] = {55, 35, 9, 1};
static const double sev_weight_police[KENG_SEV_COUNT] = {15, 45, 30, 10};
static const double src_weight[KENG_SRC_COUNT] = {35, 10, 15, 30, 5, 5};
static const double dispute_weight[KENG_DISPUTE_COUNT] = {30, 25, 25, 10, 5, 5};
static const double outcome_weight[KENG_OUTCOME_COUNT] = {80, 12, 8};

static const char *const cat_summary[KENG_CAT_COUNT][2] = {
    {"Mất trộm xe máy trước nhà", "Trộm gà vịt ban đêm"},
    {"Xô xát giữa hai thanh niên", "Đánh nhau sau tiệc cưới"},
    {"Gây mất trật tự, hát karaoke quá giờ", "Tụ tập đua xe gây ồn ào"},
    {"Phát hiện đối tượng nghi sử dụng ma túy", "Nghi vấn mua bán trái phép chất ma túy"},
    {"Tụ tập đánh bạc tại nhà dân", "Đánh bài ăn tiền dịp lễ"},
    {"Chồng đánh vợ sau khi uống rượu", "Mâu thuẫn gia đình, bạo lực với người già"},
    {"Va chạm xe máy trên đường liên xã", "Tai nạn giao thông, có người bị thương nhẹ"},
    {"Nghi vấn dụ dỗ phụ nữ sang biên giới", "Người lạ rủ rê đi làm việc nhẹ lương cao"},
    {"Người lạ tạm trú không khai báo", "Nghi xuất cảnh trái phép qua đường mòn"},
    {"Lừa đảo qua điện thoại giả danh công an", "Lừa đảo bán hàng qua mạng"},
    {"Phá hoại hoa màu của hàng xóm", "Đập phá tài sản sau cãi vã"},
    {"Gia súc thả rông gây mất an toàn", "Sự việc khác được báo cáo"},
};

static const char *const dispute_summary[KENG_DISPUTE_COUNT] = {
    "Tranh chấp ranh giới đất vườn", "Mâu thuẫn vợ chồng",      "Mâu thuẫn hàng xóm về lối đi",
    "Tranh chấp vay mượn tiền",      "Tranh chấp chia thừa kế", "Hòa giải mâu thuẫn khác",
};

/* Nghệ An's extent, for plausible coordinates. */
#define LAT_MIN 18.6
#define LAT_MAX 19.9
#define LON_MIN 104.0
#define LON_MAX 105.7

struct held {
    keng_event_t ev;
    uint64_t release_at; /* emitted count at which it comes out */
};

struct keng_sim {
    keng_sim_version_t *versions; /* oldest first */
    size_t nversions;
    int64_t floor_ms; /* no event occurs before it: the first version's time */
    keng_sim_opts_t opts;
    uint64_t s[4]; /* xoshiro256** state */
    double clock_ms;
    double ceiling_ms;
    double hour_mean;
    keng_event_t *ring;
    size_t ring_len, ring_next;
    struct held held[HELD_MAX];
    size_t held_len;
    char recent_incident[64][KENG_EVENT_ID_MAX + 1];
    size_t recent_len, recent_next;
    keng_sim_stats_t stats;
};

/* splitmix64, to spread a small seed over xoshiro's 256 bits of state. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
static uint64_t rng_u64(keng_sim_t *sim)
{
    uint64_t *s = sim->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double rng_unit(keng_sim_t *sim)
{
    return (double)(rng_u64(sim) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), without modulo bias. */
static uint64_t rng_below(keng_sim_t *sim, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = rng_u64(sim);
    while (x >= limit);
    return x % n;
}

static double rng_exp(keng_sim_t *sim)
{
    return -log(1.0 - rng_unit(sim));
}

static int rng_pick(keng_sim_t *sim, const double *weights, int n)
{
    double total = 0, x;
    for (int i = 0; i < n; i++)
        total += weights[i];
    x = rng_unit(sim) * total;
    for (int i = 0; i < n; i++) {
        if (x < weights[i])
            return i;
        x -= weights[i];
    }
    return n - 1;
}

/* Stable pseudo-random in [0, 1) from an index, for fixed places such as district centres. */
static double hash_unit(uint64_t v)
{
    return (double)(splitmix64(&v) >> 11) * 0x1.0p-53;
}

static void make_uuid(keng_sim_t *sim, char *out)
{
    uint64_t hi = rng_u64(sim), lo = rng_u64(sim);
    unsigned char b[16];
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(hi >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
    }
    b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
    b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

double keng_sim_hour_weight(int local_hour)
{
    double sum = 0;
    for (int h = 0; h < 24; h++)
        sum += hour_raw[h];
    return hour_raw[((local_hour % 24) + 24) % 24] * 24.0 / sum;
}

double keng_sim_category_share(keng_category_t c)
{
    double total = 0;
    for (int i = 0; i < KENG_CAT_COUNT; i++)
        total += cat_weight[i];
    return cat_weight[c] / total;
}

double keng_sim_transfer_share(void)
{
    double t = 0;
    for (int i = 0; i < KENG_CAT_COUNT; i++)
        t += keng_sim_category_share((keng_category_t)i) * cat_transfer[i];
    return (1.0 - PENDING_SHARE) * t;
}

keng_sim_t *keng_sim_new(const keng_registry_t *reg, const keng_sim_opts_t *opts, char *errstr,
                         size_t errstr_size)
{
    keng_sim_version_t one = {reg, INT64_MIN};
    return keng_sim_new_versions(&one, 1, opts, errstr, errstr_size);
}

keng_sim_t *keng_sim_new_versions(const keng_sim_version_t *versions, size_t n,
                                  const keng_sim_opts_t *opts, char *errstr, size_t errstr_size)
{
    keng_sim_t *sim = NULL;
    uint64_t x = opts->seed;

    if (n == 0) {
        snprintf(errstr, errstr_size, "no registry to simulate");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!versions[i].reg || keng_registry_board_count(versions[i].reg) == 0) {
            snprintf(errstr, errstr_size, "the registry has no boards to simulate");
            return NULL;
        }
        if (i > 0 && versions[i].effective_ms <= versions[i - 1].effective_ms) {
            snprintf(errstr, errstr_size,
                     "the registry versions' effective times must increase (version %zu)", i + 1);
            return NULL;
        }
    }
    if (opts->start_ms < versions[0].effective_ms) {
        snprintf(errstr, errstr_size,
                 "the simulation starts before the first registry version is in force");
        return NULL;
    }
    if (!(opts->events_per_s > 0) || !isfinite(opts->events_per_s)) {
        snprintf(errstr, errstr_size, "the event rate must be a positive number");
        return NULL;
    }
    if (!(opts->late_fraction >= 0 && opts->late_fraction <= 1) ||
        !(opts->out_of_order_fraction >= 0 && opts->out_of_order_fraction <= 1) ||
        !(opts->duplicate_fraction >= 0 && opts->duplicate_fraction < 1) ||
        !(opts->crossing_fraction >= 0 && opts->crossing_fraction <= 1)) {
        snprintf(errstr, errstr_size,
                 "late, out-of-order and crossing fractions must be within 0..1, "
                 "the duplicate fraction within 0..1 (excluded)");
        return NULL;
    }
    sim = calloc(1, sizeof(*sim));
    if (!sim || !(sim->ring = calloc(RING_SIZE, sizeof(*sim->ring))) ||
        !(sim->versions = malloc(n * sizeof(*versions)))) {
        keng_sim_destroy(sim);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    memcpy(sim->versions, versions, n * sizeof(*versions));
    sim->nversions = n;
    sim->floor_ms =
        versions[0].effective_ms > KENG_EARLIEST_MS ? versions[0].effective_ms : KENG_EARLIEST_MS;
    sim->opts = *opts;
    for (int i = 0; i < 4; i++)
        sim->s[i] = splitmix64(&x);
    sim->clock_ms = (double)opts->start_ms;
    sim->ceiling_ms = INFINITY;
    return sim;
}

void keng_sim_destroy(keng_sim_t *sim)
{
    if (!sim)
        return;
    free(sim->versions);
    free(sim->ring);
    free(sim);
}

int64_t keng_sim_clock(const keng_sim_t *sim)
{
    return (int64_t)sim->clock_ms;
}

void keng_sim_set_ceiling(keng_sim_t *sim, int64_t limit_ms)
{
    sim->ceiling_ms = (double)limit_ms;
}

void keng_sim_get_stats(const keng_sim_t *sim, keng_sim_stats_t *out)
{
    *out = sim->stats;
}

static void advance_clock(keng_sim_t *sim)
{
    int64_t local = (int64_t)sim->clock_ms + KENG_LOCAL_OFFSET_MS;
    int hour = (int)((local / 3600000) % 24);
    double rate = sim->opts.events_per_s * keng_sim_hour_weight(hour);
    sim->clock_ms += rng_exp(sim) / rate * 1000.0;
    if (sim->clock_ms > sim->ceiling_ms)
        sim->clock_ms = sim->ceiling_ms;
}

static void fill_location(keng_sim_t *sim, uint32_t board_index, const keng_board_t *b,
                          keng_event_t *ev)
{
    /* A fixed centre per district (per commune without districts) and a fixed spot per board, then
     * a few hundred metres of jitter per event, so maps show villages rather than noise. */
    uint32_t area = b->district != KENG_NO_UNIT ? b->district : b->commune;
    double dlat = LAT_MIN + (LAT_MAX - LAT_MIN) * (0.1 + 0.8 * hash_unit(area * 2 + 1));
    double dlon = LON_MIN + (LON_MAX - LON_MIN) * (0.1 + 0.8 * hash_unit(area * 2 + 2));
    double blat = dlat + 0.16 * (hash_unit(((uint64_t)board_index << 20) | 1) - 0.5);
    double blon = dlon + 0.16 * (hash_unit(((uint64_t)board_index << 20) | 2) - 0.5);
    ev->has_location = true;
    ev->lat = round((blat + 0.006 * (rng_unit(sim) - 0.5)) * 1e5) / 1e5;
    ev->lon = round((blon + 0.006 * (rng_unit(sim) - 0.5)) * 1e5) / 1e5;
}

static void new_incident(keng_sim_t *sim, uint32_t bi, const keng_board_t *b, keng_event_t *ev)
{
    ev->kind = KENG_KIND_INCIDENT;
    ev->category = (keng_category_t)rng_pick(sim, cat_weight, KENG_CAT_COUNT);
    if (rng_unit(sim) < PENDING_SHARE)
        ev->resolution = KENG_RES_PENDING;
    else if (rng_unit(sim) < cat_transfer[ev->category])
        ev->resolution = KENG_RES_TRANSFERRED_TO_POLICE;
    else
        ev->resolution = KENG_RES_HANDLED_LOCALLY;
    ev->severity = (keng_severity_t)rng_pick(
        sim,
        ev->resolution == KENG_RES_TRANSFERRED_TO_POLICE ? sev_weight_police : sev_weight_local,
        KENG_SEV_COUNT);
    ev->source = (keng_source_t)rng_pick(sim, src_weight, KENG_SRC_COUNT);
    ev->people_involved = 1 + (int32_t)floor(rng_exp(sim) * 1.2);
    if (ev->people_involved > 30)
        ev->people_involved = 30;
    if (rng_unit(sim) < 0.7)
        fill_location(sim, bi, b, ev);
    if (rng_unit(sim) < 0.6) {
        ev->summary = cat_summary[ev->category][rng_below(sim, 2)];
        ev->summary_len = strlen(ev->summary);
    }
    snprintf(sim->recent_incident[sim->recent_next], KENG_EVENT_ID_MAX + 1, "%s", ev->event_id);
    sim->recent_next = (sim->recent_next + 1) % 64;
    if (sim->recent_len < 64)
        sim->recent_len++;
}

static void new_mediation(keng_sim_t *sim, keng_event_t *ev)
{
    ev->kind = KENG_KIND_MEDIATION;
    ev->dispute_type = (keng_dispute_t)rng_pick(sim, dispute_weight, KENG_DISPUTE_COUNT);
    ev->outcome = (keng_outcome_t)rng_pick(sim, outcome_weight, KENG_OUTCOME_COUNT);
    ev->parties = 2 + (int32_t)floor(rng_exp(sim) * 0.5);
    if (sim->recent_len > 0 && rng_unit(sim) < 0.1) {
        ev->has_related_incident = true;
        snprintf(ev->related_incident_id, sizeof(ev->related_incident_id), "%s",
                 sim->recent_incident[rng_below(sim, sim->recent_len)]);
    }
    if (rng_unit(sim) < 0.6) {
        ev->summary = dispute_summary[ev->dispute_type];
        ev->summary_len = strlen(ev->summary);
    }
}

/* The index of the version in force at t (the first one before its time). */
static size_t version_at(const keng_sim_t *sim, int64_t t)
{
    size_t v = sim->nversions - 1;
    while (v > 0 && sim->versions[v].effective_ms > t)
        v--;
    return v;
}

/* How long before reported a late event occurred: log-uniform between an hour and a week, so
 * most late reports come the next day. Reported within a week after a switch, it occurred
 * before the switch with probability crossing_fraction, else after it (at the switch when
 * reported within the hour after it). */
static double late_delay(keng_sim_t *sim, int64_t reported)
{
    size_t v = version_at(sim, reported);
    double since = v > 0 ? (double)(reported - sim->versions[v].effective_ms) : INFINITY;
    double lo = LATE_MIN_MS, hi = LATE_MAX_MS;

    if (since < LATE_MAX_MS) {
        if (rng_unit(sim) < sim->opts.crossing_fraction) {
            lo = fmax(lo, since + 1);
        } else {
            hi = since;
            lo = fmin(lo, hi);
        }
    }
    if (!(hi > lo))
        return hi;
    return lo * exp(rng_unit(sim) * log(hi / lo));
}

static void new_event(keng_sim_t *sim, keng_event_t *ev)
{
    const keng_registry_t *reg;
    const keng_board_t *b;
    uint32_t bi;
    double delay_ms;
    size_t v;

    memset(ev, 0, sizeof(*ev));
    advance_clock(sim);
    make_uuid(sim, ev->event_id);
    ev->reported_at = (int64_t)sim->clock_ms;
    if (rng_unit(sim) < sim->opts.late_fraction) {
        delay_ms = late_delay(sim, ev->reported_at);
        sim->stats.late++;
    } else {
        delay_ms = fmin(rng_exp(sim) * 10 * 60e3, 50 * 60e3);
    }
    ev->occurred_at = ev->reported_at - (int64_t)delay_ms;
    if (ev->occurred_at < sim->floor_ms)
        ev->occurred_at = sim->floor_ms;

    /* The board comes from the version in force when the event occurred, which is never later
     * than its report: a board no version in force at reported_at has is never sent. */
    v = version_at(sim, ev->occurred_at);
    if (v != version_at(sim, ev->reported_at))
        sim->stats.crossing++;
    reg = sim->versions[v].reg;
    bi = (uint32_t)rng_below(sim, keng_registry_board_count(reg));
    b = keng_registry_board(reg, bi);
    snprintf(ev->board_id, sizeof(ev->board_id), "%s", b->id);
    if (b->groups > 0 && rng_unit(sim) < 0.6 && strlen(b->id) <= 24) {
        ev->has_group = true;
        snprintf(ev->group_id, sizeof(ev->group_id), "%.24s-G%02u", b->id,
                 (unsigned)(1 + rng_below(sim, b->groups)));
    }
    if (rng_unit(sim) < INCIDENT_SHARE)
        new_incident(sim, bi, b, ev);
    else
        new_mediation(sim, ev);
}

static int emit(keng_sim_t *sim, const keng_event_t *src, keng_event_t *ev)
{
    if (ev != src)
        *ev = *src;
    sim->ring[sim->ring_next] = *ev;
    sim->ring_next = (sim->ring_next + 1) % RING_SIZE;
    if (sim->ring_len < RING_SIZE)
        sim->ring_len++;
    sim->stats.emitted++;
    if (ev->kind == KENG_KIND_INCIDENT)
        sim->stats.incidents++;
    else
        sim->stats.mediations++;
    return 1;
}

static int emit_held(keng_sim_t *sim, size_t i, keng_event_t *ev)
{
    keng_event_t out = sim->held[i].ev;
    memmove(&sim->held[i], &sim->held[i + 1], (sim->held_len - i - 1) * sizeof(sim->held[0]));
    sim->held_len--;
    return emit(sim, &out, ev);
}

int keng_sim_next(keng_sim_t *sim, keng_event_t *ev)
{
    uint64_t count = sim->opts.count;

    for (;;) {
        if (count && sim->stats.emitted >= count)
            return 0;
        for (size_t i = 0; i < sim->held_len; i++)
            if (sim->held[i].release_at <= sim->stats.emitted)
                return emit_held(sim, i, ev);
        /* Near the end, what is held comes out so that exactly count events are emitted. */
        if (count && sim->stats.emitted + sim->held_len >= count)
            return emit_held(sim, 0, ev);
        if (sim->ring_len > 0 && rng_unit(sim) < sim->opts.duplicate_fraction) {
            sim->stats.duplicates++;
            return emit(sim, &sim->ring[rng_below(sim, sim->ring_len)], ev);
        }
        new_event(sim, ev);
        if (sim->held_len < HELD_MAX && rng_unit(sim) < sim->opts.out_of_order_fraction) {
            sim->held[sim->held_len].ev = *ev;
            sim->held[sim->held_len].release_at =
                sim->stats.emitted + 1 + rng_below(sim, HELD_SPAN_MAX);
            sim->held_len++;
            sim->stats.out_of_order++;
            continue;
        }
        return emit(sim, ev, ev);
    }
}
