/* The events keng-ingest has handed to Kafka and not yet heard back about, so that a resend
 * during an outage waits for the first copy rather than multiplying copies in the topic; it
 * never produces, and it bounds nothing itself: keng-ingest's ingest.max_in_flight_events
 * bounds the requests whose events are here, and so the table. */
#include "inflight.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS_MIN 1024

struct keng_inflight_entry {
    keng_inflight_entry_t *next; /* in its bucket */
    keng_inflight_t *table;
    uint64_t hash;
    keng_kind_t kind;
    char board_id[KENG_BOARD_ID_MAX + 1];
    char event_id[KENG_EVENT_ID_MAX + 1];
    keng_inflight_waiter_t *first, *last;
};

struct keng_inflight {
    keng_inflight_entry_t **buckets;
    size_t mask; /* buckets - 1, a power of two less one */
    size_t count;
};

/* FNV-1a over the kind, the board and the id: the consumer counts an event once per board
 * and kind, so only a resend equal in all three may share a copy. */
static uint64_t key_hash(const keng_event_t *ev)
{
    uint64_t h = 14695981039346656037ULL ^ (uint64_t)ev->kind;
    const char *parts[2] = {ev->board_id, ev->event_id};

    for (int i = 0; i < 2; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL; /* a separator no id holds */
    }
    return h;
}

static bool same(const keng_inflight_entry_t *e, uint64_t h, const keng_event_t *ev)
{
    return e->hash == h && e->kind == ev->kind && strcmp(e->event_id, ev->event_id) == 0 &&
           strcmp(e->board_id, ev->board_id) == 0;
}

keng_inflight_t *keng_inflight_new(void)
{
    keng_inflight_t *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->buckets = calloc(BUCKETS_MIN, sizeof(*t->buckets));
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    t->mask = BUCKETS_MIN - 1;
    return t;
}

void keng_inflight_destroy(keng_inflight_t *t)
{
    if (!t)
        return;
    for (size_t b = 0; b <= t->mask; b++) {
        keng_inflight_entry_t *e = t->buckets[b];
        while (e) {
            keng_inflight_entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    free(t);
}

keng_inflight_entry_t *keng_inflight_find(const keng_inflight_t *t, const keng_event_t *ev)
{
    uint64_t h = key_hash(ev);

    for (keng_inflight_entry_t *e = t->buckets[h & t->mask]; e; e = e->next)
        if (same(e, h, ev))
            return e;
    return NULL;
}

/* Doubles the buckets once there are more entries than buckets; on failure the chains only
 * grow longer. */
static void grow(keng_inflight_t *t)
{
    size_t n = (t->mask + 1) * 2;
    keng_inflight_entry_t **buckets = calloc(n, sizeof(*buckets));

    if (!buckets)
        return;
    for (size_t b = 0; b <= t->mask; b++) {
        keng_inflight_entry_t *e = t->buckets[b];
        while (e) {
            keng_inflight_entry_t *next = e->next;
            e->next = buckets[e->hash & (n - 1)];
            buckets[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
    t->mask = n - 1;
}

keng_inflight_entry_t *keng_inflight_add(keng_inflight_t *t, const keng_event_t *ev)
{
    keng_inflight_entry_t *e = calloc(1, sizeof(*e));

    if (!e)
        return NULL;
    e->table = t;
    e->hash = key_hash(ev);
    e->kind = ev->kind;
    memcpy(e->board_id, ev->board_id, sizeof(e->board_id));
    memcpy(e->event_id, ev->event_id, sizeof(e->event_id));
    if (t->count >= t->mask + 1)
        grow(t);
    e->next = t->buckets[e->hash & t->mask];
    t->buckets[e->hash & t->mask] = e;
    t->count++;
    return e;
}

void keng_inflight_join(keng_inflight_entry_t *e, keng_inflight_waiter_t *w)
{
    w->next = NULL;
    if (e->last)
        e->last->next = w;
    else
        e->first = w;
    e->last = w;
}

void keng_inflight_complete(keng_inflight_entry_t *e, rd_kafka_resp_err_t err)
{
    keng_inflight_t *t = e->table;
    keng_inflight_entry_t **link = &t->buckets[e->hash & t->mask];
    keng_inflight_waiter_t *w = e->first;

    /* Out of the table first: a waiter's done may start a request that sends the same event
     * again, and that one must make a new copy. */
    while (*link != e)
        link = &(*link)->next;
    *link = e->next;
    t->count--;
    free(e);
    while (w) {
        keng_inflight_waiter_t *next = w->next;
        w->done(w, err);
        w = next;
    }
}

size_t keng_inflight_count(const keng_inflight_t *t)
{
    return t->count;
}
