/* keng-ingest's table of copies waiting for Kafka: a resend finds the copy of the same kind,
 * board and event id, every waiter hears the one outcome, and an outcome empties the entry so
 * that a later resend makes a new copy; it never produces anything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "inflight.h"

static keng_event_t event(keng_kind_t kind, const char *board, const char *id)
{
    keng_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    snprintf(ev.board_id, sizeof(ev.board_id), "%s", board);
    snprintf(ev.event_id, sizeof(ev.event_id), "%s", id);
    return ev;
}

typedef struct heard {
    int calls;
    const keng_inflight_waiter_t *who[8];
    rd_kafka_resp_err_t err[8];
} heard_t;

static void on_done(keng_inflight_waiter_t *w, rd_kafka_resp_err_t err)
{
    heard_t *h = w->arg;
    int i = h->calls++;

    if (i < 8) {
        h->who[i] = w;
        h->err[i] = err;
    }
}

static void test_resend_joins_the_copy(void **state)
{
    keng_inflight_t *t = keng_inflight_new();
    keng_event_t a = event(KENG_KIND_INCIDENT, "D07-C012-B03", "e-1");
    heard_t h = {0};
    keng_inflight_waiter_t first = {.done = on_done, .arg = &h};
    keng_inflight_waiter_t resend = {.done = on_done, .arg = &h};

    (void)state;
    assert_null(keng_inflight_find(t, &a));
    keng_inflight_entry_t *e = keng_inflight_add(t, &a);
    assert_non_null(e);
    keng_inflight_join(e, &first);
    assert_ptr_equal(keng_inflight_find(t, &a), e);
    keng_inflight_join(keng_inflight_find(t, &a), &resend);
    assert_int_equal(keng_inflight_count(t), 1);

    /* Only the same kind, board and id share a copy: the consumer counts per board and kind. */
    keng_event_t other_kind = event(KENG_KIND_MEDIATION, "D07-C012-B03", "e-1");
    keng_event_t other_board = event(KENG_KIND_INCIDENT, "D07-C012-B04", "e-1");
    keng_event_t other_id = event(KENG_KIND_INCIDENT, "D07-C012-B03", "e-2");
    assert_null(keng_inflight_find(t, &other_kind));
    assert_null(keng_inflight_find(t, &other_board));
    assert_null(keng_inflight_find(t, &other_id));

    keng_inflight_complete(e, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    assert_int_equal(h.calls, 2);
    assert_ptr_equal(h.who[0], &first); /* in the order they joined */
    assert_ptr_equal(h.who[1], &resend);
    assert_int_equal(h.err[0], RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    assert_int_equal(h.err[1], RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    assert_null(keng_inflight_find(t, &a));
    assert_int_equal(keng_inflight_count(t), 0);
    keng_inflight_destroy(t);
}

/* A waiter's done may send the same event again (a request answered and resent at once):
 * the outcome already removed the old entry, so the resend gets a copy of its own. */
typedef struct resender {
    keng_inflight_t *t;
    keng_event_t ev;
    keng_inflight_entry_t *fresh;
    keng_inflight_waiter_t next;
    int calls;
} resender_t;

static void on_done_resend(keng_inflight_waiter_t *w, rd_kafka_resp_err_t err)
{
    resender_t *r = w->arg;

    (void)err;
    r->calls++;
    if (r->fresh == NULL && keng_inflight_find(r->t, &r->ev) == NULL) {
        r->fresh = keng_inflight_add(r->t, &r->ev);
        r->next.done = on_done_resend;
        r->next.arg = r;
        keng_inflight_join(r->fresh, &r->next);
    }
}

static void test_resend_after_the_outcome_makes_a_new_copy(void **state)
{
    resender_t r = {0};
    keng_inflight_waiter_t w = {.done = on_done_resend, .arg = &r};

    (void)state;
    r.t = keng_inflight_new();
    r.ev = event(KENG_KIND_MEDIATION, "D01-C001-B01", "m-9");
    keng_inflight_entry_t *e = keng_inflight_add(r.t, &r.ev);
    keng_inflight_join(e, &w);
    keng_inflight_complete(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(r.calls, 1);
    assert_non_null(r.fresh);
    assert_ptr_equal(keng_inflight_find(r.t, &r.ev), r.fresh);
    keng_inflight_complete(r.fresh, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(r.calls, 2);
    assert_int_equal(keng_inflight_count(r.t), 0);
    keng_inflight_destroy(r.t);
}

/* Many entries: the buckets grow, and every entry is still found and removed. */
static void test_many_entries(void **state)
{
    enum { N = 5000 };
    static keng_inflight_entry_t *entries[N];
    keng_inflight_t *t = keng_inflight_new();
    char id[32];

    (void)state;
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "ev-%d", i);
        keng_event_t ev =
            event(i % 2 ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION, "D02-C003-B04", id);
        entries[i] = keng_inflight_add(t, &ev);
        assert_non_null(entries[i]);
    }
    assert_int_equal(keng_inflight_count(t), N);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "ev-%d", i);
        keng_event_t ev =
            event(i % 2 ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION, "D02-C003-B04", id);
        if (keng_inflight_find(t, &ev) != entries[i])
            fail_msg("entry %d: expected %p, found %p", i, (void *)entries[i],
                     (void *)keng_inflight_find(t, &ev));
    }
    for (int i = 0; i < N; i += 2)
        keng_inflight_complete(entries[i], RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(keng_inflight_count(t), N / 2);
    keng_inflight_destroy(t); /* frees the rest */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resend_joins_the_copy),
        cmocka_unit_test(test_resend_after_the_outcome_makes_a_new_copy),
        cmocka_unit_test(test_many_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
