/* Alert webhooks: POSTs JSON bodies to one URL (http:// or https://) through the loop's HTTP
 * client, one request at a time (never two at once) and in order, retrying a failed request
 * with exponential backoff until the receiver takes it. A receiver that refuses a body (a 4xx
 * other than 408 and 429) gets the next one; a queue that outgrows its bound drops its oldest
 * body. Both are counted.
 *
 * Thread: loop thread only. */
#ifndef KENG_WEBHOOK_H
#define KENG_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "http_client.h"

typedef struct keng_webhook keng_webhook_t;

/* Posts to url through client (borrowed; it must outlive the webhook), each attempt given
 * timeout_ms. Returns NULL with errstr filled ("webhook.url: 'ftp://x' ..."). */
keng_webhook_t *keng_webhook_new(uv_loop_t *loop, keng_http_client_t *client, const char *url,
                                 const char *bearer, long timeout_ms, char *errstr,
                                 size_t errstr_size);

/* Queues body (copied) for a POST with Content-Type application/json. When the queue is
 * full the oldest body is dropped and counted. Returns 0 or -1 (out of memory). */
int keng_webhook_post(keng_webhook_t *wh, const char *body);

/* Writes the stats in the Prometheus text format (wh may be NULL: zeros). */
void keng_webhook_metrics(const keng_webhook_t *wh, FILE *out);

/* Drops what is queued and frees everything once the loop has closed the timer. Close it
 * before the client. */
void keng_webhook_close(keng_webhook_t *wh);

#endif
