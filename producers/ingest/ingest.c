/* keng-ingest: the HTTP gateway of the mobile gateways. It checks each request's bearer token,
 * validates every event of the body against the schema, the registry and the token's districts,
 * produces them with the idempotent producer, and never answers 202 before Kafka has
 * acknowledged every one of them (503 with Retry-After when it cannot within the deadline).
 *
 * Thread: one libuv loop runs everything, the HTTP server and the producer's delivery
 * reports alike, so no state here is locked. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "config.h"
#include "event.h"
#include "event_rule.h"
#include "failpoint.h"
#include "http_server.h"
#include "inflight.h"
#include "ingest_body.h"
#include "ingest_metrics.h"
#include "ingest_rate.h"
#include "registry_follow.h"
#include "kafka_denied.h"
#include "kafka_health.h"
#include "log.h"
#include "avro_codec.h"
#include "producer.h"
#include "schemareg.h"
#include "program.h"
#include "registry.h"
#include "timeutil.h"
#include "tokens.h"
#include "web_config.h"

#define DEFAULT_LISTEN  "127.0.0.1:8088"
#define DENIAL_CHECK_MS 200

/* The keys keng-ingest reads itself; the producer and the schema store list theirs. */
static keng_config_keys_t ingest_keys = {"registry",
                                         "registry.topic",
                                         "ingest.listen",
                                         "ingest.tokens",
                                         "ingest.max_events",
                                         "ingest.rate.events_per_s",
                                         "ingest.rate.burst",
                                         "ingest.rate.refusal_delay_ms",
                                         "ingest.deadline_ms",
                                         "ingest.max_in_flight_events",
                                         "ingest.retry_after_s",
                                         "ingest.flush_ms",
                                         "web.config.file",
                                         "http.insecure_listen",
                                         NULL};
static const char *const *const config_tables[] = {
    keng_config_common_keys,       ingest_keys,
    keng_producer_config_keys,     keng_http_server_config_keys,
    keng_schema_store_config_keys, keng_event_rule_config_keys,
    keng_schemareg_config_keys,    NULL};

struct options {
    const char *config_path;
    const char *brokers;
    const char *registry;
    const char *registry_topic;
    const char *listen;
    const char *tokens;
    const char *new_token;
    const char *districts;
    const char *max_connections;
    const char *revoke;
    const char *web_config;
    int insecure_listen;
    int list_tokens;
    int check_config;
};

/* The program's state, all of it on the loop thread. */
typedef struct ingest {
    bool check_only; /* --check-config: load everything, start nothing */
    uv_loop_t *loop;
    keng_config_t *cfg;
    keng_registry_t *reg;         /* the one in force: regs's with registry.topic, else owned */
    keng_registry_follow_t *regs; /* registry.topic: the versions; NULL without */
    keng_tokens_t *tokens;
    const char *tokens_path; /* borrowed from cfg; NULL: no token file, every POST gets 401 */
    keng_producer_t *producer;
    keng_http_server_t *srv;
    keng_ingest_metrics_t *metrics;
    keng_ingest_rate_t *rate;       /* events per second per gateway (ingest.rate.*) */
    keng_program_signals_t signals; /* SIGINT, SIGTERM stop; SIGHUP reloads the tokens and
                                     * the TLS certificate */
    uv_timer_t denial_timer;        /* stops the program once Kafka refused its user */
    bool denial_timer_on;
    int exit_code;
    bool stopping;
    keng_web_config_t *web; /* --web.config.file: the users of /metrics; NULL without */

    /* Schema Registry mode (schema.registry.url): the writer ids, found at start */
    keng_schemareg_conf_t sr;
    bool sr_on;
    keng_http_client_t *http;
    keng_schemareg_ids_t *ids;

    keng_ingest_body_limits_t body_limits;
    keng_event_rule_t rule; /* events.min_occurred_at, events.max_future_ms */
    long long deadline_ms;
    long long max_in_flight_events;
    long long flush_ms;
    long long refusal_delay_ms; /* a 429 is answered this late at most (a tarpit) */
    char retry_after[16];

    /* Requests refused before their body (401, 429), logged as the first of each status and
     * then one line per REFUSALS_LOG_MS with the count since: a flooding or scanning client
     * must not flood the log (the exact counts are on /metrics). */
    struct refusal_log {
        uint64_t next_ms;  /* loop time before which refusals are only counted */
        uint64_t unlogged; /* counted since the last line */
        char last[200];    /* the latest one, described */
    } refusals[2];         /* 401, 429 */

    unsigned in_flight_requests; /* waiting for their events' outcomes */
    size_t in_flight_events;     /* their events, resends that joined a copy included */
    keng_inflight_t *inflight;   /* the copies handed to the producer (inflight.h) */
} ingest_t;

/* One request whose events wait for Kafka: each event waits for the outcome of a copy, its
 * own or, for a resend of an event still in flight, the first one's (inflight.h). It lives
 * until every event has its outcome and its timer is closed, which may be after the request
 * was answered 503 at the deadline or at a first failure; req is NULL once answered. */
typedef struct pending {
    ingest_t *in;
    keng_http_request_t *req;
    uv_timer_t timer;
    size_t events;
    size_t outstanding; /* events without an outcome yet */
    int64_t started_ms;
    uint64_t produced_ns;             /* uv_hrtime() when the events went to the producer */
    bool in_produce;                  /* outcomes may come inside produce(), which settles then */
    rd_kafka_resp_err_t err;          /* the first failure */
    char what[160];                   /* "POST /v1/incidents peer=... gateway=...", for the log */
    keng_inflight_waiter_t waiters[]; /* one per event */
} pending_t;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: keng-ingest [options]\n"
            "       keng-ingest --new-token NAME --units D01,D07 --tokens FILE\n"
            "       keng-ingest --list-tokens --tokens FILE\n"
            "       keng-ingest --revoke NAME[@ID] --tokens FILE\n"
            "\n"
            "The HTTP gateway of the mobile gateways: POST /v1/incidents and /v1/mediations\n"
            "take one JSON event or an array of them, answer 202 {\"accepted\": N} once Kafka\n"
            "has acknowledged every event, 400 naming every invalid event (and then produce\n"
            "nothing), 401/403 for a missing or wrong token or a board outside its units,\n"
            "413 over http.max_body_bytes or ingest.max_events, 415 for a Content-Type other\n"
            "than application/json, and 503 with Retry-After when Kafka cannot take the\n"
            "events within ingest.deadline_ms. GET /healthz and GET /metrics (Prometheus).\n"
            "\n"
            "Options:\n"
            "  --listen HOST:PORT   where to listen (default %s; config ingest.listen)\n"
            "  --config FILE        key=value config; kafka.* keys go to librdkafka\n"
            "  --brokers LIST       bootstrap servers (else KENG_BROKERS, else the config)\n"
            "  --registry FILE      the board registry CSV (else the generated default)\n"
            "  --registry-topic TOPIC  follow the registry versions of TOPIC (config\n"
            "                       registry.topic, e.g. antt.registry) instead of --registry:\n"
            "                       start with the version in force, switch to each next one\n"
            "                       at its effective time without a restart; a version that\n"
            "                       cannot be used is skipped (log, /metrics, /readyz)\n"
            "  --tokens FILE        the token file (config ingest.tokens); without one every\n"
            "                       POST is refused with 401\n"
            "  --max-connections N  connections at once (config http.max_connections, default\n"
            "                       10000); at the cap the least recently active idle one is\n"
            "                       closed for the new one, and with none idle it gets 503\n"
            "  --web.config.file FILE  HTTPS (tls_server_config, client certificates\n"
            "                       included), the users who may read /metrics\n"
            "                       (metrics_users), and headers for every answer, in the\n"
            "                       format of Prometheus's web config (docs/OPERATIONS.md,\n"
            "                       \"Security\", \"Certificates\")\n"
            "  --insecure-listen    listen beyond loopback without TLS (config\n"
            "                       http.insecure_listen): only behind a TLS-terminating proxy\n"
            "  --new-token NAME     print a new random token once and append its hash, NAME\n"
            "                       and --units to --tokens FILE, then exit; units are ids of\n"
            "                       any level of the registry (D01,D07; communes; boards) or *,\n"
            "                       each checked against --registry FILE (--districts: the\n"
            "                       same flag under its former name)\n"
            "  --list-tokens        list --tokens FILE: each token's id (the first 8 digits of\n"
            "                       its hash), gateway, units and creation time, then exit\n"
            "  --revoke NAME[@ID]   remove the gateway's token (@ID to choose one of several)\n"
            "                       from --tokens FILE, then exit; send SIGHUP to take it in\n"
            "  --check-config       load the config, registry, token file and Kafka settings,\n"
            "                       say what is wrong (exit 64 or 78) or that they load\n"
            "                       (exit 0), and start nothing\n"
            "  --help, --version\n"
            "\n"
            "Token file: one line per token, '<sha256 of the token, hex> <gateway name>\n"
            "<units>', units a comma-separated list of unit ids or '*'; '#' starts a comment.\n"
            "A file meant to hold no token says so with the line '!no-tokens'.\n"
            "Send SIGHUP to reload it (rotate tokens without a restart), and the TLS certificate\n"
            "and key; a file that fails to load, or that holds no token without '!no-tokens',\n"
            "leaves the tokens (or certificate) in use unchanged. SIGINT and SIGTERM stop taking "
            "requests, finish those in flight, flush\n"
            "the producer and exit 0.\n"
            "\n"
            "Request bodies come with Content-Length: any Transfer-Encoding is refused (411 for\n"
            "chunked, 501 for another coding), as are bare-LF line ends, a space before a\n"
            "header's colon, a repeated Host, Authorization or Content-Type (400) and HTTP\n"
            "versions other than 1.0 and 1.1 (505). Every error answer is JSON.\n"
            "\n"
            "Config keys (defaults): http.max_body_bytes (1048576), http.max_header_bytes\n"
            "(16384), http.header_timeout_ms (10000), http.body_timeout_ms (10000),\n"
            "http.idle_timeout_ms (60000), http.first_byte_timeout_ms (5000),\n"
            "http.max_connections (10000), http.max_unsent_bytes (262144), ingest.max_events\n"
            "(1000), ingest.deadline_ms (5000), ingest.max_in_flight_events (50000),\n"
            "ingest.retry_after_s (1), ingest.flush_ms (10000), topic.incidents,\n"
            "topic.mediations, registry, registry.topic (none), events.min_occurred_at\n"
            "(2000-01-01T00:00:00Z) and events.max_future_ms (300000): the times an event\n"
            "may have.\n",
            DEFAULT_LISTEN);
}

static const keng_program_t program = {"keng-ingest", KENG_PROGRAM_RDKAFKA | KENG_PROGRAM_LIBUV,
                                       usage, config_tables, 0};

/* ---- answers ---- */

static json_t *error_body(const char *field, const char *message)
{
    return json_pack("{s:[{s:n, s:s, s:s}]}", "errors", "index", "field", field, "message",
                     message);
}

/* Counts and logs one answer and sends it; takes the reference to body. req is invalid
 * afterwards. what names the request in the log. */
/* The request as ready log pairs, "method=M path=P peer=A[ gateway=G]", each value escaped:
 * the path is whatever the client sent, the gateway's name whatever the token file says. A
 * long path is cut, and the line says less of it, nothing worse. */
static void describe_request(char *what, size_t size, const char *method, const char *path,
                             const char *peer, const char *gateway)
{
    const char *keys[] = {"method=", " path=", " peer=", " gateway="};
    const char *values[] = {method, path, peer, gateway};
    size_t n = 0;
    char v[128];

    what[0] = '\0';
    for (int i = 0; i < 4 && values[i]; i++) {
        size_t klen = strlen(keys[i]);
        size_t vlen = keng_log_value(v, sizeof(v), values[i]);
        if (n + klen + vlen >= size)
            break;
        memcpy(what + n, keys[i], klen);
        memcpy(what + n + klen, v, vlen + 1);
        n += klen + vlen;
    }
}

static void answer(ingest_t *in, keng_http_request_t *req, int status, json_t *body,
                   const char *what, int64_t started_ms, const char *reason)
{
    int64_t ms = keng_monotonic_ms() - started_ms;

    keng_ingest_metrics_request(in->metrics, status);
    if (status == 503)
        keng_http_request_add_header(req, "Retry-After", in->retry_after);
    if (status >= 400)
        keng_log_warn("request refused", "status=%d %s ms=%lld reason=\"%s\"", status, what,
                      (long long)ms, reason ? reason : "");
    else
        keng_log_debug("request", "status=%d %s ms=%lld", status, what, (long long)ms);
    keng_http_respond_json(req, status, body);
}

static void answer_error(ingest_t *in, keng_http_request_t *req, int status, const char *field,
                         const char *message, const char *what, int64_t started_ms)
{
    answer(in, req, status, error_body(field, message), what, started_ms, message);
}

/* The body of an error the HTTP server answers by itself (malformed or oversized requests,
 * timeouts, the connection cap), in the shape of every other error here, and counted. */
static bool events_path(const char *path, keng_kind_t *kind)
{
    if (strcmp(path, "/v1/incidents") == 0 || strcmp(path, "/v1/mediations") == 0) {
        *kind = path[4] == 'i' ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION;
        return true;
    }
    return false;
}

#define REFUSALS_LOG_MS 10000

/* Logs a refusal before the body: the first at once, then one line per REFUSALS_LOG_MS with
 * how many came since and the latest (what: the request described; detail: more pairs). */
static void log_refusal(ingest_t *in, int status, const char *what, const char *detail)
{
    struct refusal_log *r = &in->refusals[status == 429];
    uint64_t now = uv_now(in->loop);

    snprintf(r->last, sizeof(r->last), "%s %s", what, detail);
    if (now < r->next_ms) {
        r->unlogged++;
        return;
    }
    r->next_ms = now + REFUSALS_LOG_MS;
    keng_log_warn("request refused before its body", "status=%d %s refused_since_last_line=%llu",
                  status, r->last, (unsigned long long)r->unlogged);
    r->unlogged = 0;
}

/* The head of a POST of events, before any of its body is read or 100 Continue is sent: a
 * missing or unknown token is 401, a gateway over its rate 429, and the connection closes
 * without the body (keng_http_precheck_fn). The handler checks the token again, cheaply. */
static int precheck(keng_http_request_t *req, void *ctx, const char **why)
{
    ingest_t *in = ctx;
    keng_kind_t kind;
    char what[160];

    if (strcmp(keng_http_request_method(req), "POST") != 0 ||
        !events_path(keng_http_request_path(req), &kind))
        return 0;
    const char *auth = keng_http_request_header(req, "Authorization");
    const keng_gateway_t *gw = keng_tokens_authorize(in->tokens, auth);
    describe_request(what, sizeof(what), "POST", keng_http_request_path(req),
                     keng_http_request_peer(req), gw ? keng_gateway_name(gw) : "-");
    if (!gw) {
        keng_http_request_add_header(req, "WWW-Authenticate",
                                     auth ? "Bearer realm=\"keng-ingest\", error=\"invalid_token\""
                                          : "Bearer realm=\"keng-ingest\"");
        *why = auth ? "the bearer token is not known to keng-ingest; ask the operator for a "
                      "valid one"
                    : "send Authorization: Bearer <token>";
        log_refusal(in, 401, what, auth ? "reason=unknown_token" : "reason=no_token");
        return 401;
    }
    long wait_s = keng_ingest_rate_admit(in->rate, keng_gateway_name(gw), keng_monotonic_ms());
    if (wait_s > 0) {
        char retry[24];
        snprintf(retry, sizeof(retry), "%ld", wait_s);
        keng_http_request_add_header(req, "Retry-After", retry);
        *why = "this gateway sends more events than ingest.rate.events_per_s allows; send the "
               "request again after Retry-After seconds";
        char detail[40];
        snprintf(detail, sizeof(detail), "retry_after_s=%ld", wait_s);
        log_refusal(in, 429, what, detail);
        /* A gateway past its rate waits for its refusal as long as it would for a token (at
         * most ingest.rate.refusal_delay_ms): one that resends at once cannot take the loop's
         * time, nor the host's, from the other gateways. */
        long long delay =
            wait_s * 1000 < in->refusal_delay_ms ? wait_s * 1000 : in->refusal_delay_ms;
        if (delay > 0)
            keng_http_request_delay_refusal(req, (unsigned)delay);
        return 429;
    }
    return 0;
}

static json_t *server_error_body(int status, const char *message, void *ctx)
{
    ingest_t *in = ctx;

    keng_ingest_metrics_request(in->metrics, status);
    return error_body("", message);
}

/* ---- the producer's side of a request ---- */

static void on_pending_timer_closed(uv_handle_t *h)
{
    pending_t *pd = h->data;
    free(pd);
}

/* Answers the request, if it still waits: 202 once every event is in Kafka, 503 at the
 * first failure. */
static void pending_answer(pending_t *pd)
{
    ingest_t *in = pd->in;

    if (!pd->req)
        return;
    if (pd->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        keng_ingest_metrics_accepted(in->metrics, pd->events);
        keng_ingest_metrics_delivery(in->metrics, (double)(uv_hrtime() - pd->produced_ns) / 1e9);
        answer(in, pd->req, 202, json_pack("{s:I}", "accepted", (json_int_t)pd->events), pd->what,
               pd->started_ms, NULL);
        pd->req = NULL;
        KENG_FAILPOINT("ingest.answered");
    } else {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "Kafka did not take the events (%s); nothing of this request is "
                 "acknowledged, send it again later",
                 rd_kafka_err2str(pd->err));
        keng_ingest_metrics_rejected(in->metrics, KENG_REJECT_UNAVAILABLE, pd->events);
        answer_error(in, pd->req, 503, "", msg, pd->what, pd->started_ms);
        pd->req = NULL;
    }
}

/* After an outcome: a failure is answered at once; the last outcome ends the pending. */
static void pending_settle(pending_t *pd)
{
    ingest_t *in = pd->in;

    if (pd->err || pd->outstanding == 0)
        pending_answer(pd);
    if (pd->outstanding > 0)
        return;
    in->in_flight_requests--;
    in->in_flight_events -= pd->events;
    uv_timer_stop(&pd->timer);
    uv_close((uv_handle_t *)&pd->timer, on_pending_timer_closed);
}

/* One event's outcome. Runs on the loop thread (delivery reports are served there), or inside
 * produce(). */
static void on_event_done(keng_inflight_waiter_t *w, rd_kafka_resp_err_t err)
{
    pending_t *pd = w->arg;

    pd->outstanding--;
    if (err && !pd->err)
        pd->err = err;
    if (!pd->in_produce)
        pending_settle(pd);
}

/* A copy's delivery report: its outcome goes to every event waiting for it. */
static void on_copy_delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
                              int64_t offset)
{
    keng_inflight_complete(opaque, err);
}

/* Joins ev's copy in flight, or hands a new copy to the producer. Returns 0, or -1 when the
 * copy could not be queued (w's done has run with the error). */
static int send_or_join(ingest_t *in, const keng_event_t *ev, keng_inflight_waiter_t *w,
                        const char *what)
{
    keng_inflight_entry_t *e = keng_inflight_find(in->inflight, ev);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    char errstr[256];

    if (e) {
        keng_inflight_join(e, w);
        keng_ingest_metrics_joined(in->metrics, 1);
        return 0;
    }
    e = keng_inflight_add(in->inflight, ev);
    if (!e) {
        w->done(w, RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE);
        return -1;
    }
    keng_inflight_join(e, w);
    /* No wait for room: the loop must not block. A full queue fails the request, and the
     * client hears 503; events already queued may still be written, which their ids make
     * harmless. */
    if (keng_producer_send(in->producer, ev, on_copy_delivered, e, 0, &err, errstr,
                           sizeof(errstr)) < 0) {
        keng_log_warn("cannot produce", "%s error=\"%s\"", what, errstr);
        keng_inflight_complete(e, err ? err : RD_KAFKA_RESP_ERR__FAIL);
        return -1;
    }
    return 0;
}

/* The deadline passed with events still out: the client hears 503 now, and the pending
 * request waits, unanswerable, for their outcomes. */
static void on_deadline(uv_timer_t *t)
{
    pending_t *pd = t->data;
    ingest_t *in = pd->in;
    char msg[200];

    if (!pd->req)
        return;
    snprintf(msg, sizeof(msg),
             "Kafka did not acknowledge the events within %lld ms; send the request again "
             "later (events already written are counted once)",
             in->deadline_ms);
    keng_ingest_metrics_rejected(in->metrics, KENG_REJECT_UNAVAILABLE, pd->events);
    answer_error(in, pd->req, 503, "", msg, pd->what, pd->started_ms);
    pd->req = NULL;
}

/* Hands the events to the producer, or joins their copies in flight; the answer comes from
 * pending_settle or on_deadline. Takes body. */
static void produce(ingest_t *in, keng_http_request_t *req, keng_ingest_body_t *body,
                    const char *what, int64_t started_ms)
{
    size_t n = keng_ingest_body_count(body);
    pending_t *pd = NULL;
    char errstr[256];

    /* Back-pressure: a bounded number of events may wait for Kafka, whatever the clients
     * send, resends that join a copy included; past it they hear 503 at once rather than
     * filling memory. */
    if ((long long)in->in_flight_events + (long long)n > in->max_in_flight_events) {
        snprintf(errstr, sizeof(errstr),
                 "keng-ingest has %zu events waiting for Kafka, its limit is %lld; send the "
                 "request again later",
                 in->in_flight_events, in->max_in_flight_events);
        keng_ingest_metrics_rejected(in->metrics, KENG_REJECT_UNAVAILABLE, n);
        answer_error(in, req, 503, "", errstr, what, started_ms);
        goto out;
    }
    pd = calloc(1, sizeof(*pd) + n * sizeof(pd->waiters[0]));
    if (!pd) {
        answer_error(in, req, 503, "", "out of memory; send the request again later", what,
                     started_ms);
        goto out;
    }
    pd->in = in;
    pd->req = req;
    pd->events = n;
    pd->outstanding = n;
    pd->started_ms = started_ms;
    pd->produced_ns = uv_hrtime();
    snprintf(pd->what, sizeof(pd->what), "%s", what);
    uv_timer_init(in->loop, &pd->timer);
    pd->timer.data = pd;
    in->in_flight_requests++;
    in->in_flight_events += n;
    pd->in_produce = true;
    for (size_t i = 0; i < n; i++) {
        pd->waiters[i].done = on_event_done;
        pd->waiters[i].arg = pd;
        if (send_or_join(in, keng_ingest_body_event(body, i), &pd->waiters[i], what) < 0) {
            pd->outstanding -= n - i - 1; /* never sent: they fail with this request */
            break;
        }
    }
    pd->in_produce = false;
    if (pd->outstanding > 0)
        uv_timer_start(&pd->timer, on_deadline, (uint64_t)in->deadline_ms, 0);
    pending_settle(pd);

out:
    keng_ingest_body_destroy(body);
}

/* ---- the HTTP side ---- */

/* application/json, with an optional charset that must then be UTF-8. */
static bool content_type_ok(const char *ct)
{
    static const char json_type[] = "application/json";
    const char *p;

    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, json_type, sizeof(json_type) - 1) != 0)
        return false;
    p = ct + sizeof(json_type) - 1;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return true;
    if (*p != ';')
        return false;
    while (*p == ';') {
        const char *name, *value;
        size_t name_len, value_len;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        name = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        name_len = (size_t)(p - name);
        while (name_len > 0 && (name[name_len - 1] == ' ' || name[name_len - 1] == '\t'))
            name_len--;
        if (*p != '=') {
            if (name_len > 0)
                return false;
            continue;
        }
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        value = p;
        while (*p && *p != ';')
            p++;
        value_len = (size_t)(p - value);
        while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
            value_len--;
        if (value_len >= 2 && value[0] == '"' && value[value_len - 1] == '"') {
            value++;
            value_len -= 2;
        }
        if (name_len == 7 && strncasecmp(name, "charset", 7) == 0 &&
            !((value_len == 5 && strncasecmp(value, "utf-8", 5) == 0) ||
              (value_len == 4 && strncasecmp(value, "utf8", 4) == 0)))
            return false;
    }
    return true;
}

static void serve_metrics_now(ingest_t *in, keng_http_request_t *req)
{
    keng_ingest_gauges_t g = {
        .queue_depth = rd_kafka_outq_len(keng_producer_handle(in->producer)),
        .connections = in->srv ? keng_http_server_connections(in->srv) : 0,
        .in_flight_requests = in->in_flight_requests,
        .in_flight_events = (long long)in->in_flight_events,
        .tokens = (long long)keng_tokens_count(in->tokens),
    };
    size_t len = 0, all_len = 0;
    char *text, *all = NULL;
    FILE *out;

    keng_ingest_metrics_request(in->metrics, 200);
    text = keng_ingest_metrics_render(in->metrics, &g, &len);
    out = text ? open_memstream(&all, &all_len) : NULL;
    if (out) {
        fwrite(text, 1, len, out);
        if (in->srv)
            keng_http_server_write_metrics(in->srv, out);
        keng_ingest_rate_metrics(in->rate, out);
        keng_kafka_health_metrics(out);
        keng_registry_follow_metrics(in->regs, in->reg, out);
        if (fclose(out) != 0) {
            free(all);
            all = NULL;
        }
    }
    free(text);
    if (!all) {
        answer_error(in, req, 500, "", "out of memory", "method=GET path=/metrics",
                     keng_monotonic_ms());
        return;
    }
    keng_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", all, all_len);
    free(all);
}

typedef struct metrics_wait {
    ingest_t *in;
    keng_http_request_t *req;
} metrics_wait_t;

/* /metrics for a user of metrics_users, or a 401 or 403 naming what is wrong. */
static void metrics_for(ingest_t *in, keng_http_request_t *req, const keng_web_user_t *user)
{
    if (!user) {
        keng_http_request_add_header(req, "WWW-Authenticate",
                                     "Basic realm=\"keng\", charset=\"UTF-8\"");
        answer_error(in, req, 401, "", "sign in with a user of keng-ingest's metrics_users",
                     "method=GET path=/metrics", keng_monotonic_ms());
    } else if (!keng_web_user_metrics(user)) {
        answer_error(in, req, 403, "", "this user may not read /metrics",
                     "method=GET path=/metrics", keng_monotonic_ms());
    } else {
        serve_metrics_now(in, req);
    }
}

static void metrics_checked(const keng_web_user_t *user, void *arg)
{
    metrics_wait_t *w = arg;

    metrics_for(w->in, w->req, user);
    free(w);
}

/* /metrics: open without users, else for metrics_users only, the password checked with
 * bcrypt off the loop (the gateways' requests must not wait for it). */
static void serve_metrics(ingest_t *in, keng_http_request_t *req)
{
    const keng_web_user_t *user = NULL;
    keng_web_check_t check;
    metrics_wait_t *w;
    int rc;

    if (!keng_web_config_has_users(in->web)) {
        serve_metrics_now(in, req);
        return;
    }
    rc = keng_web_config_lookup(in->web, keng_http_request_header(req, "Authorization"), &user,
                                &check);
    if (rc != 0) {
        metrics_for(in, req, user);
        return;
    }
    w = malloc(sizeof(*w));
    if (w) {
        *w = (metrics_wait_t){in, req};
        rc = keng_web_check_queue(in->loop, in->web, &check, metrics_checked, w);
    } else {
        keng_web_config_finish(in->web, &check);
        rc = -ENOMEM;
    }
    if (rc == 0)
        return;
    free(w);
    keng_http_request_add_header(req, "Retry-After", "1");
    answer_error(in, req, 503, "", "too many sign-ins at once; retry in a second",
                 "method=GET path=/metrics", keng_monotonic_ms());
}

static void serve_events(ingest_t *in, keng_http_request_t *req, keng_kind_t kind,
                         int64_t started_ms)
{
    const keng_gateway_t *gw;
    keng_ingest_body_t *body = NULL;
    json_t *errors = NULL;
    const char *data;
    size_t len, nevents = 0;
    char what[160];
    int status;

    gw = keng_tokens_authorize(in->tokens, keng_http_request_header(req, "Authorization"));
    describe_request(what, sizeof(what), "POST", keng_http_request_path(req),
                     keng_http_request_peer(req), gw ? keng_gateway_name(gw) : "-");
    if (!gw) {
        bool sent = keng_http_request_header(req, "Authorization") != NULL;
        keng_http_request_add_header(req, "WWW-Authenticate",
                                     sent ? "Bearer realm=\"keng-ingest\", error=\"invalid_token\""
                                          : "Bearer realm=\"keng-ingest\"");
        answer_error(in, req, 401, "Authorization",
                     sent ? "the bearer token is not known to keng-ingest; ask the operator for "
                            "a valid one"
                          : "send Authorization: Bearer <token>",
                     what, started_ms);
        return;
    }
    if (!content_type_ok(keng_http_request_header(req, "Content-Type"))) {
        answer_error(in, req, 415, "Content-Type",
                     "the body must be sent as Content-Type: application/json (UTF-8)", what,
                     started_ms);
        return;
    }
    if (in->stopping) {
        answer_error(in, req, 503, "", "keng-ingest is shutting down; send the request again", what,
                     started_ms);
        return;
    }
    if (in->sr_on && !keng_schemareg_ids_ready(in->ids)) {
        answer_error(in, req, 503, "",
                     "keng-ingest waits for the schema registry's ids; send the request again "
                     "later",
                     what, started_ms);
        return;
    }
    data = keng_http_request_body(req, &len);
    in->body_limits.now_ms = keng_now_ms();
    in->body_limits.earlier = keng_registry_follow_earlier(in->regs, &in->body_limits.nearlier);
    status = keng_ingest_body_parse(data, len, kind, in->reg, gw, &in->body_limits, &body, &errors,
                                    &nevents);
    keng_ingest_rate_charge(in->rate, keng_gateway_name(gw), nevents, keng_monotonic_ms());
    if (status != 0) {
        keng_reject_t why = status == 403   ? KENG_REJECT_FORBIDDEN
                            : status == 413 ? KENG_REJECT_TOO_MANY
                            : status == 503 ? KENG_REJECT_UNAVAILABLE
                                            : KENG_REJECT_INVALID;
        json_t *list = json_object_get(errors, "errors");
        const char *field = json_string_value(json_object_get(json_array_get(list, 0), "field"));
        const char *message =
            json_string_value(json_object_get(json_array_get(list, 0), "message"));
        char reason[320];
        snprintf(reason, sizeof(reason), "%zu error(s), the first: %s: %s", json_array_size(list),
                 field ? field : "", message ? message : "");
        keng_ingest_metrics_rejected(in->metrics, why, nevents);
        answer(in, req, status, errors, what, started_ms, reason);
        return;
    }
    produce(in, req, body, what, started_ms);
}

/* The one handler of the HTTP server, on the loop thread. */
static void on_request(keng_http_request_t *req, void *ctx)
{
    ingest_t *in = ctx;
    const char *method = keng_http_request_method(req);
    const char *path = keng_http_request_path(req);
    int64_t started_ms = keng_monotonic_ms();
    keng_kind_t kind;
    char what[160];

    describe_request(what, sizeof(what), method, path, keng_http_request_peer(req), NULL);
    keng_web_config_add_headers(in->web, req);
    if (events_path(path, &kind)) {
        if (strcmp(method, "POST") != 0) {
            keng_http_request_add_header(req, "Allow", "POST");
            answer_error(in, req, 405, "", "use POST", what, started_ms);
            return;
        }
        serve_events(in, req, kind, started_ms);
        return;
    }
    if (strcmp(path, "/readyz") == 0 && strcmp(method, "GET") == 0) {
        bool ready = !in->stopping && (!in->sr_on || keng_schemareg_ids_ready(in->ids));
        json_t *body;
        keng_ingest_metrics_request(in->metrics, ready ? 200 : 503);
        if (ready)
            body = json_pack("{s:s}", "status", "ready");
        else
            body = json_pack("{s:s, s:s}", "status", "not ready", "reason",
                             in->stopping ? "stopping" : "waiting for the schema registry");
        /* A registry version skipped leaves keng-ingest ready with the one it has: the body
         * says so, for the operator who published it. */
        if (body && in->regs)
            json_object_set_new(body, "registry", keng_registry_follow_status(in->regs));
        keng_http_respond_json(req, ready ? 200 : 503, body);
        return;
    }
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0) {
        if (strcmp(method, "GET") != 0) {
            keng_http_request_add_header(req, "Allow", "GET");
            answer_error(in, req, 405, "", "use GET", what, started_ms);
            return;
        }
        if (path[1] == 'm') {
            serve_metrics(in, req);
            return;
        }
        keng_ingest_metrics_request(in->metrics, 200);
        keng_http_respond_json(req, 200,
                               json_pack("{s:s, s:b}", "status", in->stopping ? "stopping" : "ok",
                                         "tokens", keng_tokens_count(in->tokens) > 0));
        return;
    }
    answer_error(in, req, 404, "",
                 "no such endpoint; keng-ingest serves POST /v1/incidents, POST /v1/mediations, "
                 "GET /healthz, GET /readyz and GET /metrics",
                 what, started_ms);
}

/* ---- signals and shutdown ---- */

static void warn_unknown_unit(const char *gateway, const char *unit, void *arg)
{
    ingest_t *in = arg;

    if (keng_registry_follow_knew_unit(in->regs, unit)) {
        keng_log_warn("a token names a unit the registry in force no longer has: it keeps "
                      "covering the boards that were in it; scope the gateway's token to units "
                      "of the registry in force",
                      "gateway=%s unit=%s", gateway, unit);
        return;
    }
    keng_log_warn("a token names a unit the registry does not have: its gateway can report for "
                  "no board through it",
                  "gateway=%s unit=%s", gateway, unit);
}

static void reload_tokens(ingest_t *in)
{
    char errstr[512];
    keng_tokens_t *fresh;

    if (!in->tokens_path) {
        keng_log_warn("SIGHUP: no token file to reload; start with --tokens FILE", NULL);
        return;
    }
    fresh = keng_tokens_load(in->tokens_path, errstr, sizeof(errstr));
    if (!fresh) {
        keng_log_error("SIGHUP: the token file did not load; the tokens in use stay",
                       "error=\"%s\"", errstr);
        return;
    }
    /* An emptied file (a truncated save, a bad deploy) would revoke every gateway at once. */
    if (keng_tokens_count(fresh) == 0 && !keng_tokens_none_intended(fresh)) {
        keng_log_error("SIGHUP: the token file holds no token; the tokens in use stay (a file "
                       "meant to let no gateway post says so with the line '!no-tokens')",
                       "file=%s tokens_in_use=%zu", in->tokens_path, keng_tokens_count(in->tokens));
        keng_tokens_destroy(fresh);
        return;
    }
    keng_config_warn_if_exposed(in->tokens_path, "token file");
    /* Requests keep no gateway pointer past their handler, so the old set can go now. */
    keng_tokens_destroy(in->tokens);
    in->tokens = fresh;
    keng_log_info("tokens reloaded", "file=%s tokens=%zu", in->tokens_path,
                  keng_tokens_count(fresh));
    keng_tokens_each_unknown_unit(fresh, in->reg, warn_unknown_unit, in);
}

/* A registry version took effect: posts are checked against it from now on; the old one
 * stays alive in regs for requests that still point into it. */
/* keng-ingest takes every version that loads: posts are checked against it from now on. */
static int on_registry_switch(const keng_registry_t *reg, const char *version, void *arg, char *why,
                              size_t why_size)
{
    ingest_t *in = arg;

    (void)version, (void)why, (void)why_size;
    in->reg = (keng_registry_t *)reg; /* the follower owns it until exit */
    keng_tokens_each_unknown_unit(in->tokens, in->reg, warn_unknown_unit, in);
    return 0;
}

static void on_server_closed(void *arg)
{
    ingest_t *in = arg;

    in->srv = NULL;
    keng_log_info("every request answered; flushing the producer", "waiting_events=%d",
                  rd_kafka_outq_len(keng_producer_handle(in->producer)));
    /* The loop ends once nothing is active; main then flushes and destroys the producer. */
    keng_schemareg_ids_close(in->ids);
    in->ids = NULL;
    keng_http_client_close(in->http);
    in->http = NULL;
    keng_producer_detach_uv(in->producer);
    keng_program_signals_close(&in->signals);
}

static void stop(ingest_t *in)
{
    if (in->stopping)
        return;
    in->stopping = true;
    keng_registry_follow_stop(in->regs);
    if (in->denial_timer_on) {
        in->denial_timer_on = false;
        uv_close((uv_handle_t *)&in->denial_timer, NULL);
    }
    if (in->srv)
        keng_http_server_close(in->srv, on_server_closed, in);
    else
        on_server_closed(in);
}

/* A refused login or a missing ACL does not pass by itself (kafka_denied.h): the gateway stops
 * as on SIGTERM (requests in flight are answered) and exits 78, rather than answer 503 for
 * ever. */
static void on_denial_timer(uv_timer_t *timer)
{
    ingest_t *in = timer->data;
    const char *denial = keng_kafka_denial();

    if (!denial || in->stopping)
        return;
    keng_log_error("stopping: Kafka refuses this program's user", "denied=\"%s\" exit=%d", denial,
                   KENG_EXIT_CONFIG);
    in->exit_code = KENG_EXIT_CONFIG;
    stop(in);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    ingest_t *in = handle->data;

    if (signum == SIGHUP) {
        reload_tokens(in);
        keng_web_config_reload_tls(in->web);
        return;
    }
    keng_log_info("signal received: stop accepting, finish requests in flight, flush",
                  "signal=%d in_flight_requests=%u", signum, in->in_flight_requests);
    stop(in);
}

/* ---- setup ---- */

static int config_int(ingest_t *in, const char *key, long long def, long long min, long long max,
                      long long *out)
{
    char errstr[512];

    if (keng_config_get_int(in->cfg, key, def, min, max, out, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-ingest: %s\n", errstr);
        return -1;
    }
    return 0;
}

static int read_settings(ingest_t *in, keng_http_limits_t *limits)
{
    char errstr[512];
    long long max_events, retry, rate, burst;

    keng_http_limits_default(limits);
    if (keng_http_limits_from_config(limits, in->cfg, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-ingest: %s\n", errstr);
        return -1;
    }
    if (config_int(in, "ingest.max_events", KENG_INGEST_MAX_EVENTS_DEFAULT, 1, 1000000,
                   &max_events) ||
        config_int(in, "ingest.deadline_ms", 5000, 1, 3600000, &in->deadline_ms) ||
        config_int(in, "ingest.max_in_flight_events", 50000, 1, 100000000,
                   &in->max_in_flight_events) ||
        config_int(in, "ingest.retry_after_s", 1, 0, 3600, &retry) ||
        config_int(in, "ingest.flush_ms", 10000, 0, 3600000, &in->flush_ms) ||
        config_int(in, "ingest.rate.events_per_s", 0, 0, 100000000, &rate) ||
        config_int(in, "ingest.rate.burst", rate > max_events ? rate : max_events, 1, 1000000000,
                   &burst) ||
        config_int(in, "ingest.rate.refusal_delay_ms", 1000, 0, 60000, &in->refusal_delay_ms))
        return -1;
    in->rate = keng_ingest_rate_new((double)rate, (double)burst);
    if (!in->rate)
        return -1;
    if (keng_event_rule_from_config(in->cfg, &in->rule, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-ingest: %s\n", errstr);
        return -1;
    }
    in->body_limits.rule = &in->rule;
    /* keng-ingest serves no stream. */
    limits->max_streams = 0;
    in->body_limits.max_events = (size_t)max_events;
    in->body_limits.max_depth = KENG_INGEST_MAX_DEPTH;
    snprintf(in->retry_after, sizeof(in->retry_after), "%lld", retry);
    return 0;
}

/* The web config file (the users who may read /metrics), and the refusal to take gateways'
 * tokens from the network in clear without being told that a proxy in front speaks TLS.
 * Returns 0, or KENG_EXIT_USAGE. */
static int load_web_config(ingest_t *in, const char *listen)
{
    char errstr[512];
    bool insecure;

    if (keng_web_config_from_config(in->cfg, &in->web, &insecure, errstr, sizeof(errstr)) != 0) {
        keng_log_error("the web settings do not load", "error=\"%s\"", errstr);
        return KENG_EXIT_USAGE;
    }
    /* Beyond loopback without TLS, the gateways' bearer tokens would cross the network in
     * clear unless a TLS-terminating proxy is the only way in. */
    if (!keng_web_listen_is_loopback(listen) && !insecure && !keng_web_config_tls(in->web)) {
        keng_log_error("refusing to take the gateways' tokens in clear from the network: give "
                       "--web.config.file with tls_server_config, or, when a TLS-terminating "
                       "proxy in front is the only way in, --insecure-listen "
                       "(docs/OPERATIONS.md, \"Security\")",
                       "listen=%s", listen);
        return KENG_EXIT_USAGE;
    }
    return 0;
}

static void on_ids_ready(const int32_t *ids, void *arg)
{
    ingest_t *in = arg;

    keng_producer_set_schema_id(in->producer, KENG_KIND_INCIDENT, ids[0]);
    keng_producer_set_schema_id(in->producer, KENG_KIND_MEDIATION, ids[1]);
    keng_log_info("ready: events are framed with the schema registry's ids",
                  "incident_id=%d mediation_id=%d", (int)ids[0], (int)ids[1]);
}

/* Schema Registry mode: the writer ids are looked up (or registered) on the loop; until both
 * are known /readyz is 503 and POSTs get 503. Returns 0, or -1 when memory runs out. */
static int start_registry(ingest_t *in)
{
    const char *subjects[2], *jsons[2];
    char errstr[256];

    for (int k = 0; k < 2; k++) {
        const char *record = keng_producer_writer_schema(in->producer, (keng_kind_t)k, &jsons[k]);
        subjects[k] = record ? keng_schemareg_subject(&in->sr, record) : NULL;
        if (!subjects[k]) {
            keng_log_error("no writer schema for a kind of event", "kind=%d", k);
            return -1;
        }
    }
    in->http = keng_http_client_new(in->loop, errstr, sizeof(errstr));
    if (!in->http) {
        keng_log_error("cannot create the HTTP client", "error=\"%s\"", errstr);
        return -1;
    }
    keng_log_info("not ready until the schema registry gives the writer ids", "registry=%s urls=%d",
                  in->sr.shown[0], in->sr.url_count);
    in->ids =
        keng_schemareg_ids_start(in->loop, in->http, &in->sr, subjects, jsons, 2, on_ids_ready, in);
    return in->ids ? 0 : -1;
}

/* The registry: from registry.topic (*regs then owns *reg), else --registry FILE or the
 * built-in one (*reg the caller's). Returns 0, or an exit code after a log line. */
static int open_registry(keng_config_t *cfg, keng_registry_t **reg, keng_registry_follow_t **regs)
{
    const char *topic = keng_config_get(cfg, "registry.topic", NULL);
    const char *file = keng_config_get(cfg, "registry", NULL);
    char errstr[1024];
    int rc;

    *reg = NULL;
    *regs = NULL;
    if (topic && *topic) {
        if (file && *file) {
            fprintf(stderr, "keng-ingest: give the registry by --registry FILE (registry) or by "
                            "--registry-topic TOPIC (registry.topic), not both\n");
            return KENG_EXIT_USAGE;
        }
        rc = keng_registry_follow_open(cfg, topic, regs, errstr, sizeof(errstr));
        if (rc != 0) {
            keng_log_error("cannot take the board registry from the topic", "topic=%s error=\"%s\"",
                           topic, errstr);
            return rc;
        }
        *reg = keng_registry_follow_current(*regs);
        return 0;
    }
    *reg = keng_registry_open(file, errstr, sizeof(errstr));
    if (!*reg) {
        keng_log_error("cannot load the board registry", "error=\"%s\"", errstr);
        return KENG_EXIT_CONFIG;
    }
    keng_program_log_registry(*reg);
    return 0;
}

static int run(ingest_t *in)
{
    char errstr[512];
    keng_http_limits_t limits;
    const char *listen = keng_config_get(in->cfg, "ingest.listen", DEFAULT_LISTEN);
    int rc;

    if (read_settings(in, &limits) < 0)
        return KENG_EXIT_USAGE;
    if ((rc = open_registry(in->cfg, &in->reg, &in->regs)) != 0)
        return rc;
    if ((rc = load_web_config(in, listen)) != 0)
        return rc;
    in->tokens_path = keng_config_get(in->cfg, "ingest.tokens", NULL);
    if (in->tokens_path && *in->tokens_path) {
        in->tokens = keng_tokens_load(in->tokens_path, errstr, sizeof(errstr));
        if (!in->tokens) {
            keng_log_error("cannot load the token file", "error=\"%s\"", errstr);
            return KENG_EXIT_CONFIG;
        }
        keng_config_warn_if_exposed(in->tokens_path, "token file");
        keng_tokens_each_unknown_unit(in->tokens, in->reg, warn_unknown_unit, in);
        if (keng_tokens_count(in->tokens) == 0 && !keng_tokens_none_intended(in->tokens))
            keng_log_warn("the token file holds no token: every POST will be refused with 401 "
                          "(write '!no-tokens' in it when that is meant)",
                          "file=%s", in->tokens_path);
    } else {
        in->tokens_path = NULL;
        in->tokens = keng_tokens_empty();
        keng_log_warn("no token file (--tokens FILE): every POST will be refused with 401", NULL);
    }
    rc = keng_schemareg_conf_from_config(in->cfg, &in->sr, errstr, sizeof(errstr));
    if (rc < 0) {
        keng_log_error("the schema registry's config does not load", "error=\"%s\"", errstr);
        return KENG_EXIT_CONFIG;
    }
    in->sr_on = rc > 0;
    if (in->check_only) {
        /* The producer loads the schemas, and makes a Kafka client: load them alone. */
        keng_schema_store_t *store = keng_schema_store_from_config(in->cfg, errstr, sizeof(errstr));
        keng_avro_encoder_t *enc =
            store ? keng_avro_encoder_new(store, errstr, sizeof(errstr)) : NULL;
        if (enc)
            keng_avro_encoder_destroy(enc);
        if (store)
            keng_schema_store_destroy(store);
        if (!enc) {
            keng_log_error("cannot load the schemas", "error=\"%s\"", errstr);
            return KENG_EXIT_CONFIG;
        }
        if ((rc = keng_program_check_kafka(in->cfg, false)) != 0)
            return rc;
        fprintf(stderr,
                "keng-ingest: the config loads: registry of %zu boards, %zu token(s), schemas, "
                "HTTP limits, Kafka settings; nothing was started\n",
                keng_registry_board_count(in->reg), keng_tokens_count(in->tokens));
        return 0;
    }
    in->metrics = keng_ingest_metrics_new();
    in->inflight = keng_inflight_new();
    if (!in->tokens || !in->metrics || !in->inflight) {
        keng_log_error("out of memory", NULL);
        return 1;
    }
    /* Every request waits for its acknowledgement, so time spent lingering for a fuller batch
     * is latency for the gateways: 1 ms triples single-event requests/s against librdkafka's
     * 5 ms default and barely changes batched throughput. */
    if (!keng_config_get(in->cfg, "kafka.linger.ms", NULL))
        keng_config_set(in->cfg, "kafka.linger.ms", "1");
    in->producer = keng_producer_new(in->cfg, errstr, sizeof(errstr));
    if (!in->producer) {
        keng_log_error("cannot create the kafka producer", "error=\"%s\"", errstr);
        return KENG_EXIT_CONFIG;
    }
    if (keng_producer_attach_uv(in->producer, in->loop, errstr, sizeof(errstr)) < 0) {
        keng_log_error("cannot serve delivery reports on the loop", "error=\"%s\"", errstr);
        return 1;
    }
    if (in->sr_on && start_registry(in) != 0)
        return 1;

    in->srv = keng_http_server_new(in->loop, &limits, on_request, in);
    if (!in->srv) {
        keng_log_error("cannot create the HTTP server", NULL);
        rc = 1;
        goto fail;
    }
    keng_http_server_set_error_body(in->srv, server_error_body);
    keng_http_server_set_precheck(in->srv, precheck);
    if (keng_http_server_set_tls(in->srv, keng_web_config_tls(in->web)) != 0) {
        keng_log_error("cannot start TLS: out of memory", NULL);
        rc = 1;
        goto fail;
    }
    if (keng_http_server_allow_hosts(in->srv, in->cfg, NULL, errstr, sizeof(errstr)) != 0) {
        keng_log_error("cannot take the allowed hosts", "error=\"%s\"", errstr);
        rc = KENG_EXIT_CONFIG;
        goto fail;
    }
    rc = keng_http_server_listen(in->srv, listen);
    if (rc < 0) {
        keng_log_error("cannot listen", "listen=%s error=\"%s\"", listen, uv_strerror(rc));
        rc = 1;
        goto fail;
    }
    keng_log_info("listening", "listen=%s port=%d scheme=%s tokens=%zu boards=%zu", listen,
                  keng_http_server_port(in->srv), keng_web_config_tls(in->web) ? "https" : "http",
                  keng_tokens_count(in->tokens), keng_registry_board_count(in->reg));
    keng_web_config_log_tls(in->web);

    if (in->regs && keng_registry_follow_start(in->regs, in->loop, on_registry_switch, in, errstr,
                                               sizeof(errstr)) != 0) {
        keng_log_error("cannot follow the registry topic", "error=\"%s\"", errstr);
        rc = KENG_EXIT_CONFIG;
        goto fail;
    }
    keng_program_signals_start(&in->signals, in->loop, on_signal, in, 1);
    uv_timer_init(in->loop, &in->denial_timer);
    in->denial_timer.data = in;
    in->denial_timer_on = true;
    uv_timer_start(&in->denial_timer, on_denial_timer, DENIAL_CHECK_MS, DENIAL_CHECK_MS);

    uv_run(in->loop, UV_RUN_DEFAULT);
    return in->exit_code;

fail:
    stop(in);
    uv_run(in->loop, UV_RUN_DEFAULT);
    return rc;
}

/* Everything run() made, in reverse order. The producer is flushed here, off the loop:
 * batches still out finish inside keng_producer_destroy (their requests were answered), and
 * the loop runs once more for the timers they close. */
static int teardown(ingest_t *in)
{
    int rc = 0;

    if (in->producer) {
        char errstr[256];
        keng_producer_detach_uv(in->producer);
        uv_run(in->loop, UV_RUN_DEFAULT);
        if (keng_producer_flush(in->producer, (int)in->flush_ms, errstr, sizeof(errstr)) < 0) {
            keng_log_warn("flush incomplete at exit; those events were answered 503",
                          "error=\"%s\"", errstr);
        }
        KENG_FAILPOINT("ingest.flush");
        keng_producer_destroy(in->producer, 0);
        in->producer = NULL;
    }
    uv_run(in->loop, UV_RUN_DEFAULT);
    /* Empty now: destroying the producer served or purged every copy's report. */
    keng_inflight_destroy(in->inflight);
    keng_ingest_metrics_destroy(in->metrics);
    keng_ingest_rate_destroy(in->rate);
    keng_tokens_destroy(in->tokens);
    if (in->regs)
        keng_registry_follow_destroy(in->regs);
    else
        keng_registry_destroy(in->reg);
    keng_web_config_destroy(in->web);
    keng_schemareg_conf_free(&in->sr);
    return rc;
}

static int new_token(const struct options *opt, const keng_program_flag_t *table)
{
    char token[KENG_TOKEN_TEXT_LEN + 1];
    char hash[KENG_TOKEN_HASH_HEX_LEN + 1];
    char errstr[512];

    if (!opt->tokens || !opt->districts) {
        fprintf(stderr, "keng-ingest: --new-token needs --units D01,D07 (or '*') and "
                        "--tokens FILE\n");
        return KENG_EXIT_USAGE;
    }
    /* A unit the registry lacks (a lower-case d01, a D99) would make a token that can report
     * for nothing: refused while the operator is still at the keyboard. */
    keng_config_t *cfg = keng_program_config_table(&program, opt->config_path, table);
    if (!cfg)
        return KENG_EXIT_USAGE;
    keng_registry_t *reg = NULL;
    keng_registry_follow_t *regs = NULL;
    const char *topic = keng_config_get(cfg, "registry.topic", NULL);
    if (topic && *topic) {
        /* With registry.topic, the units are those of the version in force there. */
        int rc = open_registry(cfg, &reg, &regs);
        if (rc != 0) {
            keng_config_destroy(cfg);
            return rc;
        }
    } else {
        reg = keng_registry_open(keng_config_get(cfg, "registry", NULL), errstr, sizeof(errstr));
        if (!reg) {
            keng_config_destroy(cfg);
            fprintf(stderr, "keng-ingest: cannot load the board registry: %s\n", errstr);
            return KENG_EXIT_CONFIG;
        }
    }
    int known = keng_tokens_check_units(opt->districts, reg, errstr, sizeof(errstr));
    if (regs)
        keng_registry_follow_destroy(regs);
    else
        keng_registry_destroy(reg);
    keng_config_destroy(cfg);
    if (known != 0) {
        fprintf(stderr, "keng-ingest: --units %s: %s\n", opt->districts, errstr);
        return KENG_EXIT_USAGE;
    }
    if (keng_tokens_generate(token, hash, errstr, sizeof(errstr)) < 0 ||
        keng_tokens_append(opt->tokens, hash, opt->new_token, opt->districts, errstr,
                           sizeof(errstr)) < 0) {
        fprintf(stderr, "keng-ingest: %s\n", errstr);
        return 1;
    }
    printf("%s\n", token);
    fflush(stdout);
    fprintf(stderr,
            "keng-ingest: token for gateway '%s' (units %s) added to %s. It is shown only "
            "this once; the file keeps only its SHA-256. Send SIGHUP to a running keng-ingest "
            "to load it.\n",
            opt->new_token, opt->districts, opt->tokens);
    return 0;
}

/* --list-tokens and --revoke: the token file's administration, without starting. */
static int admin_tokens(const struct options *opt)
{
    char errstr[1024], what[256];

    if (!opt->tokens) {
        fprintf(stderr, "keng-ingest: --%s needs --tokens FILE\n",
                opt->list_tokens ? "list-tokens" : "revoke");
        return KENG_EXIT_USAGE;
    }
    if (opt->list_tokens) {
        /* The list first, then the heading with it: a file that does not load prints nothing
         * on standard output (a heading alone read as "no tokens"). */
        char *list = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&list, &len);
        int rc = out ? keng_tokens_list(opt->tokens, out, errstr, sizeof(errstr)) : -1;
        if (out && fclose(out) != 0)
            rc = -1;
        if (rc < 0) {
            fprintf(stderr, "keng-ingest: %s\n", out ? errstr : "out of memory");
            free(list);
            return KENG_EXIT_CONFIG;
        }
        printf("id  gateway  units  created\n%s", list ? list : "");
        free(list);
        return 0;
    }
    if (keng_tokens_revoke(opt->tokens, opt->revoke, what, sizeof(what), errstr, sizeof(errstr)) <
        0) {
        fprintf(stderr, "keng-ingest: %s\n", errstr);
        return 1;
    }
    fprintf(stderr,
            "keng-ingest: token %s removed from %s. Send SIGHUP to a running keng-ingest: "
            "until then the token still works.\n",
            what, opt->tokens);
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt = {0};
    const keng_program_flag_t table[] = {
        KENG_FLAG("config", &opt.config_path, NULL),
        KENG_FLAG("brokers", &opt.brokers, "brokers"),
        KENG_FLAG("registry", &opt.registry, "registry"),
        KENG_FLAG("registry-topic", &opt.registry_topic, "registry.topic"),
        KENG_FLAG("listen", &opt.listen, "ingest.listen"),
        KENG_FLAG("tokens", &opt.tokens, "ingest.tokens"),
        KENG_FLAG("new-token", &opt.new_token, NULL),
        KENG_FLAG("units", &opt.districts, NULL),
        KENG_FLAG("districts", &opt.districts, NULL), /* its name before units of any level */
        KENG_FLAG_SET("list-tokens", &opt.list_tokens),
        KENG_FLAG("revoke", &opt.revoke, NULL),
        KENG_FLAG_SET("check-config", &opt.check_config),
        KENG_FLAG("max-connections", &opt.max_connections, "http.max_connections"),
        KENG_FLAG("web.config.file", &opt.web_config, "web.config.file"),
        KENG_FLAG_SET("insecure-listen", &opt.insecure_listen),
        KENG_FLAGS_END,
    };
    ingest_t in = {0};
    uv_loop_t loop;

    keng_program_start(&program);
    int rc = keng_program_parse(&program, argc, argv, table, NULL);
    if (rc >= 0)
        return rc;
    if (!!opt.new_token + !!opt.list_tokens + !!opt.revoke > 1) {
        fprintf(stderr, "keng-ingest: --new-token, --list-tokens and --revoke go one at a time\n");
        return KENG_EXIT_USAGE;
    }
    if (opt.new_token)
        return new_token(&opt, table);
    if (opt.list_tokens || opt.revoke)
        return admin_tokens(&opt);
    if (opt.districts) {
        fprintf(stderr, "keng-ingest: --units goes with --new-token\n");
        return KENG_EXIT_USAGE;
    }

    in.cfg = keng_program_config_table(&program, opt.config_path, table);
    if (!in.cfg)
        return KENG_EXIT_USAGE;
    in.check_only = opt.check_config;
    if (opt.insecure_listen)
        keng_config_set(in.cfg, "http.insecure_listen", "true");
    if ((rc = keng_program_require_brokers(in.cfg)) != 0) {
        keng_config_destroy(in.cfg);
        return rc;
    }

    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    in.loop = &loop;
    rc = run(&in);
    if (teardown(&in) != 0 && rc == 0)
        rc = 1;
    if (uv_loop_close(&loop) != 0)
        keng_log_warn("the loop still had handles at exit", NULL);
    keng_config_destroy(in.cfg);
    keng_log_info("stopped", "exit=%d", rc);
    return rc;
}
