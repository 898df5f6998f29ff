/* Schema Registry mode of the consumer: a writer id not seen before is resolved from the
 * registry once, off the hot path. Its partition is held at that message while the lookup
 * runs (consumer.c's hold: messages already fetched behind it are skipped, and fetched again
 * after a seek), so nothing is counted out of order and nothing is dead-lettered because the
 * registry is away:
 * an unreachable registry keeps the partition paused and the lookup is retried with a
 * growing pause. An id the registry answers 404 for, or whose schema cannot be used, is
 * remembered and its messages are dead-lettered with the reason. Known ids never wait. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "timeutil.h"

#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS   30000

/* One id being resolved; freed when its answer comes, or orphaned (c NULL) when the
 * consumer goes first and freed by the answer that the closing HTTP client gives. */
struct schema_lookup {
    keng_consumer_t *c;
    int32_t id;
    bool in_flight;
    int64_t retry_at; /* monotonic ms */
    long backoff_ms;
    schema_lookup_t *next;
};

int keng_consumer_use_schema_registry(keng_consumer_t *c, keng_http_client_t *client,
                                      keng_schemareg_conf_t *conf)
{
    c->sr_client = client;
    c->sr_conf = conf;
    keng_avro_decoder_use_registry(c->dec);
    return 0;
}

static const char *dead_reason(const keng_consumer_t *c, int32_t id)
{
    for (size_t i = 0; i < c->ndead; i++)
        if (c->dead[i].id == id)
            return c->dead[i].why;
    return NULL;
}

static void mark_dead(keng_consumer_t *c, int32_t id, const char *why)
{
    dead_id_t *d = &c->dead[c->ndead < DEAD_IDS_MAX ? c->ndead++ : c->dead_next++ % DEAD_IDS_MAX];

    d->id = id;
    snprintf(d->why, sizeof(d->why), "%s", why);
}

/* Lets every partition waiting for id go on: back to the message it stopped at. */
static void release(keng_consumer_t *c, int32_t id)
{
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];

        if (!keng_consumer__held_for(p, HOLD_FOR_SCHEMA) || p->schema_wait_id != id)
            continue;
        keng_consumer__release(c, p, "the message that waited for its schema");
        keng_log_info("partition resumed: the schema registry answered for its schema id",
                      "topic=%s partition=%" PRId32 " offset=%" PRId64 " schema_id=%d",
                      c->topics[p->topic], p->partition, p->hold_offset, (int)id);
    }
}

static void lookup_remove(keng_consumer_t *c, schema_lookup_t *l)
{
    for (schema_lookup_t **pp = &c->lookups; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            return;
        }
    }
}

static void lookup_send(keng_consumer_t *c, schema_lookup_t *l);

static void on_lookup(int rc, int32_t id, const char *json, const char *error, void *arg)
{
    schema_lookup_t *l = arg;
    keng_consumer_t *c = l->c;
    char why[300];

    l->in_flight = false;
    if (!c || rc == KENG_SCHEMAREG_CLOSED) {
        if (c)
            lookup_remove(c, l);
        free(l);
        return;
    }
    if (rc == KENG_SCHEMAREG_OK) {
        if (keng_avro_decoder_add_writer(c->dec, l->id, json, why, sizeof(why)) != 0)
            mark_dead(c, l->id, why);
        else
            keng_log_info("schema id resolved from the schema registry", "schema_id=%d",
                          (int)l->id);
        c->stats.schema_lookups++;
    } else if (rc == KENG_SCHEMAREG_NOT_FOUND) {
        snprintf(why, sizeof(why), "the schema registry has no schema id %d (%s)", (int)l->id,
                 error ? error : "404");
        mark_dead(c, l->id, why);
        c->stats.schema_lookups++;
        keng_log_warn("the schema registry does not know a schema id; its messages are "
                      "dead-lettered",
                      "schema_id=%d", (int)l->id);
    } else {
        /* Unreachable (or an answer that is no answer): wait, never dead-letter. */
        c->stats.schema_lookup_failures++;
        keng_log_warn("the schema registry does not answer; the partitions that need this "
                      "schema id wait (nothing is dead-lettered)",
                      "schema_id=%d retry_ms=%ld error=\"%s\"", (int)l->id, l->backoff_ms,
                      error ? error : "");
        l->retry_at = keng_monotonic_ms() + l->backoff_ms;
        l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
        return;
    }
    id = l->id;
    lookup_remove(c, l);
    free(l);
    release(c, id);
}

static void lookup_send(keng_consumer_t *c, schema_lookup_t *l)
{
    if (keng_schemareg_get_id_async(c->sr_client, c->sr_conf, l->id, on_lookup, l) == 0) {
        l->in_flight = true;
        return;
    }
    l->retry_at = keng_monotonic_ms() + l->backoff_ms;
}

int keng_consumer__schema_unknown(keng_consumer_t *c, part_t *p, const rd_kafka_message_t *m,
                                  int32_t id, char *err, size_t err_size)
{
    const char *dead = dead_reason(c, id);
    schema_lookup_t *l;

    if (dead) {
        snprintf(err, err_size, "%s", dead);
        return 0;
    }
    keng_consumer__hold(c, p, m->offset, HOLD_FOR_SCHEMA);
    p->schema_wait_id = id;
    c->stats.schema_waits++;
    keng_log_info("partition paused until the schema registry resolves a new schema id",
                  "topic=%s partition=%" PRId32 " offset=%" PRId64 " schema_id=%d",
                  c->topics[p->topic], p->partition, m->offset, (int)id);
    for (l = c->lookups; l; l = l->next)
        if (l->id == id)
            return 1;
    l = calloc(1, sizeof(*l));
    if (!l)
        return 1; /* the partition waits; the next tick tries again */
    l->c = c;
    l->id = id;
    l->backoff_ms = BACKOFF_FIRST_MS;
    l->next = c->lookups;
    c->lookups = l;
    lookup_send(c, l);
    return 1;
}

void keng_consumer__schema_tick(keng_consumer_t *c)
{
    int64_t now = keng_monotonic_ms();

    if (!c->sr_client)
        return;
    for (schema_lookup_t *l = c->lookups; l; l = l->next)
        if (!l->in_flight && l->retry_at <= now)
            lookup_send(c, l);
    /* A partition that waits for an id whose lookup could not even be made. */
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        schema_lookup_t *l;
        if (!keng_consumer__held_for(p, HOLD_FOR_SCHEMA))
            continue;
        for (l = c->lookups; l && l->id != p->schema_wait_id; l = l->next)
            ;
        if (!l && (keng_avro_decoder_knows(c->dec, p->schema_wait_id) ||
                   dead_reason(c, p->schema_wait_id)))
            release(c, p->schema_wait_id);
    }
}

size_t keng_consumer__schema_waiting(const keng_consumer_t *c)
{
    size_t n = 0;

    for (size_t i = 0; i < c->nparts; i++)
        if (keng_consumer__held_for(&c->parts[i], HOLD_FOR_SCHEMA))
            n++;
    return n;
}

void keng_consumer__schema_close(keng_consumer_t *c)
{
    schema_lookup_t *l = c->lookups, *next;

    for (; l; l = next) {
        next = l->next;
        if (l->in_flight)
            l->c = NULL; /* its answer frees it */
        else
            free(l);
    }
    c->lookups = NULL;
}
