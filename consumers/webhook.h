/* Alert webhooks: POSTs JSON bodies to one http://host:port/path URL on the libuv loop, one
 * request at a time and in order, retrying a failed request with exponential backoff.
 * Best effort: a body still failing after the last attempt is dropped and counted.
 *
 * Thread: loop thread only. */
#ifndef KENG_WEBHOOK_H
#define KENG_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct keng_webhook keng_webhook_t;

/* Parses url (http:// only; host is a name or an IPv4/IPv6 literal in brackets; port 80 by
 * default). Returns NULL with errstr filled ("webhook.url: only http:// is supported"). */
keng_webhook_t *keng_webhook_new(uv_loop_t *loop, const char *url, char *errstr,
                                 size_t errstr_size);

/* Queues body (copied) for a POST with Content-Type application/json. When the queue is
 * full the oldest body is dropped and counted as a failure. Returns 0 or -1 (out of memory). */
int keng_webhook_post(keng_webhook_t *wh, const char *body);

/* Attempts that failed (connection, timeout or a non-2xx status), and bodies delivered. */
uint64_t keng_webhook_failures(const keng_webhook_t *wh);
uint64_t keng_webhook_delivered(const keng_webhook_t *wh);

/* Drops what is queued, aborts the request in progress and frees everything once the loop
 * has closed the handles. */
void keng_webhook_close(keng_webhook_t *wh);

#endif
