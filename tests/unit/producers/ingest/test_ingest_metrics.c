/* keng-ingest's /metrics: counters by status and reason, a cumulative histogram whose +Inf
 * bucket equals its count, and the gauges as given; they never open a socket. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_metrics.h"

static void expect_line(const char *text, const char *line)
{
    char want[256];
    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr(text, want))
        fail_msg("expected the line '%s' in:\n%s", line, text);
}

static void test_render(void **state)
{
    keng_ingest_metrics_t *m = keng_ingest_metrics_new();
    keng_ingest_gauges_t g = {.queue_depth = 7,
                              .connections = 3,
                              .in_flight_requests = 2,
                              .in_flight_events = 150,
                              .tokens = 4};
    size_t len = 0;
    char *text;

    assert_non_null(m);
    keng_ingest_metrics_request(m, 202);
    keng_ingest_metrics_request(m, 202);
    keng_ingest_metrics_request(m, 400);
    keng_ingest_metrics_request(m, 99); /* out of range: ignored */
    keng_ingest_metrics_accepted(m, 101);
    keng_ingest_metrics_rejected(m, KENG_REJECT_INVALID, 5);
    keng_ingest_metrics_rejected(m, KENG_REJECT_UNAVAILABLE, 20);
    keng_ingest_metrics_delivery(m, 0.004);
    keng_ingest_metrics_delivery(m, 0.2);
    keng_ingest_metrics_delivery(m, 60.0);
    text = keng_ingest_metrics_render(m, &g, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    expect_line(text, "keng_ingest_requests_total{status=\"202\"} 2");
    expect_line(text, "keng_ingest_requests_total{status=\"400\"} 1");
    assert_null(strstr(text, "status=\"99\""));
    expect_line(text, "keng_ingest_events_accepted_total 101");
    expect_line(text, "keng_ingest_events_rejected_total{reason=\"invalid\"} 5");
    expect_line(text, "keng_ingest_events_rejected_total{reason=\"forbidden\"} 0");
    expect_line(text, "keng_ingest_events_rejected_total{reason=\"unavailable\"} 20");
    expect_line(text, "keng_ingest_delivery_seconds_bucket{le=\"0.0025\"} 0");
    expect_line(text, "keng_ingest_delivery_seconds_bucket{le=\"0.005\"} 1");
    expect_line(text, "keng_ingest_delivery_seconds_bucket{le=\"0.25\"} 2");
    expect_line(text, "keng_ingest_delivery_seconds_bucket{le=\"10\"} 2");
    expect_line(text, "keng_ingest_delivery_seconds_bucket{le=\"+Inf\"} 3");
    expect_line(text, "keng_ingest_delivery_seconds_count 3");
    expect_line(text, "keng_ingest_delivery_seconds_sum 60.204000");
    expect_line(text, "keng_ingest_producer_queue_depth 7");
    expect_line(text, "keng_http_connections 3");
    expect_line(text, "keng_ingest_in_flight_events 150");
    expect_line(text, "keng_ingest_tokens 4");
    expect_line(text, "# TYPE keng_ingest_delivery_seconds histogram");
    free(text);
    keng_ingest_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
