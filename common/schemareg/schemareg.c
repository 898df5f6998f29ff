/* The Schema Registry's REST API as keng calls it: the configuration, the subjects, and each
 * call twice over, blocking (libcurl easy) and on the loop (keng_http_client_request), both
 * failing over between the configured URLs the same way. */
#include "schemareg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "avro_codec.h"
#include "program.h" /* KENG_EXIT_CONFIG */

#define CONTENT_TYPE "application/vnd.schemaregistry.v1+json"
#define MAX_ANSWER   (4u << 20)

const char *const keng_schemareg_config_keys[] = {"schema.registry.url",
                                                  "schema.registry.basic_auth.username",
                                                  "schema.registry.basic_auth.password_file",
                                                  "schema.registry.ca_file",
                                                  "schema.registry.timeout.ms",
                                                  "topic.incidents",
                                                  "topic.mediations",
                                                  "topic.alerts",
                                                  NULL};

static const char *const records[3] = {"vn.antt.Incident", "vn.antt.Mediation", "vn.antt.Alert"};

void keng_schemareg_conf_free(keng_schemareg_conf_t *conf)
{
    for (int i = 0; i < conf->url_count; i++)
        free(conf->urls[i]);
    for (int i = 0; i < 3; i++)
        free(conf->subjects[i]);
    free(conf->username);
    if (conf->password) {
        memset(conf->password, 0, strlen(conf->password));
        free(conf->password);
    }
    free(conf->ca_file);
    memset(conf, 0, sizeof(*conf));
}

static char *subject_of(const keng_config_t *cfg, const char *key, const char *def)
{
    const char *topic = keng_config_get(cfg, key, def);
    char *s = malloc(strlen(topic) + sizeof("-value"));

    if (s)
        sprintf(s, "%s-value", topic);
    return s;
}

int keng_schemareg_conf_from_config(const keng_config_t *cfg, keng_schemareg_conf_t *conf,
                                    char *errstr, size_t errstr_size)
{
    const char *list = keng_config_get(cfg, "schema.registry.url", NULL);
    const char *user = keng_config_get(cfg, "schema.registry.basic_auth.username", NULL);
    const char *ca = keng_config_get(cfg, "schema.registry.ca_file", NULL);
    char secret[512], why[300];
    long long timeout;
    int got;

    memset(conf, 0, sizeof(*conf));
    conf->subjects[0] = subject_of(cfg, "topic.incidents", "antt.incidents");
    conf->subjects[1] = subject_of(cfg, "topic.mediations", "antt.mediations");
    conf->subjects[2] = subject_of(cfg, "topic.alerts", "antt.alerts");
    if (!conf->subjects[0] || !conf->subjects[1] || !conf->subjects[2]) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if (keng_config_get_int(cfg, "schema.registry.timeout.ms", 5000, 100, 600000, &timeout, errstr,
                            errstr_size) < 0)
        return -1;
    conf->timeout_ms = (long)timeout;
    if (!list || !*list) {
        if (user || ca || keng_config_get(cfg, "schema.registry.basic_auth.password_file", NULL)) {
            snprintf(errstr, errstr_size,
                     "schema.registry.* is set without schema.registry.url: set the registry's "
                     "URL, or remove the other schema.registry.* keys");
            return -1;
        }
        return 0;
    }
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        char *url = strndup(p, n), *start = url, *end;

        if (!url) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        while (*start == ' ' || *start == '\t')
            start++;
        end = start + strlen(start);
        while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '/'))
            *--end = '\0';
        if (*start) {
            if (conf->url_count == KENG_SCHEMAREG_MAX_URLS) {
                free(url);
                snprintf(errstr, errstr_size, "schema.registry.url: at most %d URLs",
                         KENG_SCHEMAREG_MAX_URLS);
                return -1;
            }
            if (keng_http_client_check_url(start, why, sizeof(why)) != 0) {
                free(url);
                snprintf(errstr, errstr_size, "schema.registry.url: URL %d: %s",
                         conf->url_count + 1, why);
                return -1;
            }
            memmove(url, start, strlen(start) + 1);
            keng_http_client_redact(url, conf->shown[conf->url_count], sizeof(conf->shown[0]));
            conf->urls[conf->url_count++] = url;
        } else {
            free(url);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (conf->url_count == 0) {
        snprintf(errstr, errstr_size, "schema.registry.url names no URL");
        return -1;
    }
    got = keng_config_read_secret(cfg, "schema.registry.basic_auth.password_file", secret,
                                  sizeof(secret), errstr, errstr_size);
    if (got < 0)
        return -1;
    if ((got == 1) != (user != NULL && *user != '\0')) {
        memset(secret, 0, sizeof(secret));
        snprintf(errstr, errstr_size,
                 "schema.registry.basic_auth.username and "
                 "schema.registry.basic_auth.password_file go together: set both or neither");
        return -1;
    }
    if (got == 1) {
        conf->username = strdup(user);
        conf->password = strdup(secret);
        memset(secret, 0, sizeof(secret));
        if (!conf->username || !conf->password) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    if (ca && *ca) {
        FILE *f = fopen(ca, "r");
        if (!f) {
            snprintf(errstr, errstr_size, "schema.registry.ca_file: cannot read %s", ca);
            return -1;
        }
        fclose(f);
        conf->ca_file = strdup(ca);
        if (!conf->ca_file) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    }
    return 1;
}

const char *keng_schemareg_subject(const keng_schemareg_conf_t *conf, const char *record)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(records[i], record) == 0)
            return conf->subjects[i];
    return NULL;
}

/* ---- answers ---- */

/* The registry's words in an error answer ({"message": ..., "error_code": ...}), or the
 * status alone. */
static void answer_words(long status, const char *body, char *out, size_t size)
{
    json_t *root = body ? json_loads(body, 0, NULL) : NULL;
    const char *msg =
        json_is_object(root) ? json_string_value(json_object_get(root, "message")) : NULL;

    if (msg)
        snprintf(out, size, "the registry answered %ld: %s", status, msg);
    else
        snprintf(out, size, "the registry answered %ld", status);
    json_decref(root);
}

/* An integer member of the JSON object in body, or -1. */
static long long answer_int(const char *body, const char *name)
{
    json_t *root = json_loads(body, 0, NULL);
    json_t *v = json_is_object(root) ? json_object_get(root, name) : NULL;
    long long n = json_is_integer(v) ? json_integer_value(v) : -1;

    json_decref(root);
    return n;
}

/* A string member of the JSON object in body, copied, or NULL. */
static char *answer_string(const char *body, const char *name)
{
    json_t *root = json_loads(body, 0, NULL);
    json_t *v = json_is_object(root) ? json_object_get(root, name) : NULL;
    char *s = json_is_string(v) ? strdup(json_string_value(v)) : NULL;

    json_decref(root);
    return s;
}

/* {"schema": json} for a POST. The caller frees it. */
static char *schema_body(const char *json)
{
    json_t *root = json_pack("{s:s}", "schema", json);
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;

    json_decref(root);
    return s;
}

/* The path with subject escaped for a URL (a topic name may hold '.', '_' and '-' only, but
 * a subject is the registry's to name). */
static void subject_path(char *out, size_t size, const char *fmt, const char *subject)
{
    char *esc = curl_easy_escape(NULL, subject, 0);

    snprintf(out, size, fmt, esc ? esc : subject);
    curl_free(esc);
}

/* Whether an answer ends the failover: any answer but a server error. */
static bool answered(long status)
{
    return status > 0 && status < 500;
}

/* ---- blocking ---- */

typedef struct buf {
    char *data;
    size_t len;
    bool cut;
} buf_t;

static size_t buf_keep(char *data, size_t size, size_t n, void *userp)
{
    buf_t *b = userp;
    size_t len = size * n;

    if (b->len + len > MAX_ANSWER) {
        b->cut = true;
        return len;
    }
    char *grown = realloc(b->data, b->len + len + 1);
    if (!grown)
        return 0;
    memcpy(grown + b->len, data, len);
    b->data = grown;
    b->len += len;
    grown[b->len] = '\0';
    return len;
}

/* One request to one URL. Returns the status (0 when no answer came, with why filled). */
static long call_one(const keng_schemareg_conf_t *conf, int u, const char *method, const char *path,
                     const char *body, buf_t *answer, char *why, size_t why_size)
{
    CURL *easy = curl_easy_init();
    struct curl_slist *headers = NULL;
    char url[2048], error[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc;

    if (!easy) {
        snprintf(why, why_size, "out of memory");
        return 0;
    }
    snprintf(url, sizeof(url), "%s%s", conf->urls[u], path);
    headers = curl_slist_append(headers, "Content-Type: " CONTENT_TYPE);
    headers = curl_slist_append(headers, "Accept: " CONTENT_TYPE ", application/json");
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    if (conf->username) {
        curl_easy_setopt(easy, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(easy, CURLOPT_USERNAME, conf->username);
        curl_easy_setopt(easy, CURLOPT_PASSWORD, conf->password);
    }
    if (conf->ca_file)
        curl_easy_setopt(easy, CURLOPT_CAINFO, conf->ca_file);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, conf->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "keng/" KENG_VERSION);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, buf_keep);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, answer);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error);
    rc = curl_easy_perform(easy);
    if (rc != CURLE_OK)
        snprintf(why, why_size, "%s", error[0] ? error : curl_easy_strerror(rc));
    else
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 500)
        answer_words(status, answer->data, why, why_size);
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    return status;
}

int keng_schemareg_call(keng_schemareg_conf_t *conf, const char *method, const char *path,
                        const char *body, long *status, char **out, char *errstr,
                        size_t errstr_size)
{
    size_t used = 0;

    if (out)
        *out = NULL;
    if (errstr_size)
        errstr[0] = '\0';
    for (int k = 0; k < conf->url_count; k++) {
        int u = (conf->preferred + k) % conf->url_count;
        buf_t answer = {NULL, 0, false};
        char why[400] = "";
        long st = call_one(conf, u, method, path, body, &answer, why, sizeof(why));

        if (answered(st) && !answer.cut) {
            conf->preferred = u;
            *status = st;
            if (out)
                *out = answer.data;
            else
                free(answer.data);
            return KENG_SCHEMAREG_OK;
        }
        if (answer.cut)
            snprintf(why, sizeof(why), "the answer is longer than %u bytes", MAX_ANSWER);
        free(answer.data);
        if (used < errstr_size)
            used += (size_t)snprintf(errstr + used, errstr_size - used, "%s%s: %s",
                                     used ? "; " : "", conf->shown[u], why);
    }
    return KENG_SCHEMAREG_UNREACHABLE;
}

/* The rc of an answer that is not the 200 wanted. */
static int rc_of(long status, const char *body, char *errstr, size_t errstr_size)
{
    answer_words(status, body, errstr, errstr_size);
    if (status == 404)
        return KENG_SCHEMAREG_NOT_FOUND;
    if (status == 409 || status == 422)
        return KENG_SCHEMAREG_REFUSED;
    return KENG_SCHEMAREG_ERROR;
}

int keng_schemareg_get_id(keng_schemareg_conf_t *conf, int32_t id, char **json, char *errstr,
                          size_t errstr_size)
{
    char path[64], *body = NULL;
    long status;
    int rc;

    *json = NULL;
    snprintf(path, sizeof(path), "/schemas/ids/%d", (int)id);
    rc = keng_schemareg_call(conf, "GET", path, NULL, &status, &body, errstr, errstr_size);
    if (rc != KENG_SCHEMAREG_OK)
        return rc;
    if (status == 200 && (*json = answer_string(body, "schema")) != NULL)
        rc = KENG_SCHEMAREG_OK;
    else if (status == 200) {
        snprintf(errstr, errstr_size, "the registry's answer for id %d has no schema", (int)id);
        rc = KENG_SCHEMAREG_ERROR;
    } else {
        rc = rc_of(status, body, errstr, errstr_size);
    }
    free(body);
    return rc;
}

/* POSTs a schema to the subject's path_fmt ("/subjects/%s/versions" registers it,
 * "/subjects/%s" looks it up) and reads the id, and the version when asked, of the answer. */
static int post_schema_for_id(keng_schemareg_conf_t *conf, const char *path_fmt,
                              const char *subject, const char *json, int32_t *id, int *version,
                              char *errstr, size_t errstr_size)
{
    char path[512], *body = schema_body(json), *answer = NULL;
    long status;
    int rc;

    if (!body) {
        snprintf(errstr, errstr_size, "out of memory");
        return KENG_SCHEMAREG_ERROR;
    }
    subject_path(path, sizeof(path), path_fmt, subject);
    rc = keng_schemareg_call(conf, "POST", path, body, &status, &answer, errstr, errstr_size);
    if (rc == KENG_SCHEMAREG_OK) {
        long long n = status == 200 ? answer_int(answer, "id") : -1;
        if (n > 0 && n <= INT32_MAX) {
            *id = (int32_t)n;
            if (version)
                *version = (int)answer_int(answer, "version");
        } else if (status == 200) {
            snprintf(errstr, errstr_size, "the registry's answer for %s has no id", subject);
            rc = KENG_SCHEMAREG_ERROR;
        } else {
            rc = rc_of(status, answer, errstr, errstr_size);
        }
    }
    free(answer);
    free(body);
    return rc;
}

int keng_schemareg_register(keng_schemareg_conf_t *conf, const char *subject, const char *json,
                            int32_t *id, char *errstr, size_t errstr_size)
{
    return post_schema_for_id(conf, "/subjects/%s/versions", subject, json, id, NULL, errstr,
                              errstr_size);
}

int keng_schemareg_lookup(keng_schemareg_conf_t *conf, const char *subject, const char *json,
                          int32_t *id, int *version, char *errstr, size_t errstr_size)
{
    return post_schema_for_id(conf, "/subjects/%s", subject, json, id, version, errstr,
                              errstr_size);
}

int keng_schemareg_set_compatibility(keng_schemareg_conf_t *conf, const char *subject,
                                     const char *level, char *errstr, size_t errstr_size)
{
    char path[512], body[96], *answer = NULL;
    long status;
    int rc;

    subject_path(path, sizeof(path), "/config/%s", subject);
    snprintf(body, sizeof(body), "{\"compatibility\":\"%s\"}", level);
    rc = keng_schemareg_call(conf, "PUT", path, body, &status, &answer, errstr, errstr_size);
    if (rc == KENG_SCHEMAREG_OK && status != 200)
        rc = rc_of(status, answer, errstr, errstr_size);
    free(answer);
    return rc;
}

int keng_schemareg_check(keng_schemareg_conf_t *conf, const char *subject, const char *json,
                         bool *compatible, char *errstr, size_t errstr_size)
{
    char path[512], *body = schema_body(json), *answer = NULL;
    long status;
    int rc;

    if (!body) {
        snprintf(errstr, errstr_size, "out of memory");
        return KENG_SCHEMAREG_ERROR;
    }
    subject_path(path, sizeof(path), "/compatibility/subjects/%s/versions/latest", subject);
    rc = keng_schemareg_call(conf, "POST", path, body, &status, &answer, errstr, errstr_size);
    if (rc == KENG_SCHEMAREG_OK) {
        json_t *root = status == 200 ? json_loads(answer, 0, NULL) : NULL;
        json_t *v = json_is_object(root) ? json_object_get(root, "is_compatible") : NULL;
        if (json_is_boolean(v))
            *compatible = json_is_true(v);
        else if (status == 200) {
            snprintf(errstr, errstr_size, "the registry's answer for %s has no is_compatible",
                     subject);
            rc = KENG_SCHEMAREG_ERROR;
        } else {
            rc = rc_of(status, answer, errstr, errstr_size);
        }
        json_decref(root);
    }
    free(answer);
    free(body);
    return rc;
}

int keng_schemareg_latest(keng_schemareg_conf_t *conf, const char *subject, char **json,
                          char *errstr, size_t errstr_size)
{
    char path[512], *answer = NULL;
    long status;
    int rc;

    *json = NULL;
    subject_path(path, sizeof(path), "/subjects/%s/versions/latest", subject);
    rc = keng_schemareg_call(conf, "GET", path, NULL, &status, &answer, errstr, errstr_size);
    if (rc == KENG_SCHEMAREG_OK) {
        if (status == 200 && (*json = answer_string(answer, "schema")) != NULL)
            rc = KENG_SCHEMAREG_OK;
        else if (status == 200) {
            snprintf(errstr, errstr_size, "the registry's answer for %s has no schema", subject);
            rc = KENG_SCHEMAREG_ERROR;
        } else {
            rc = rc_of(status, answer, errstr, errstr_size);
        }
    }
    free(answer);
    return rc;
}

int keng_schemareg_resolve(keng_schemareg_conf_t *conf, keng_avro_decoder_t *dec, int32_t id,
                           char *errstr, size_t errstr_size)
{
    char *json = NULL, why[300];
    int rc = keng_schemareg_get_id(conf, id, &json, errstr, errstr_size);

    if (rc == KENG_SCHEMAREG_NOT_FOUND) {
        snprintf(why, sizeof(why), "%s", errstr);
        snprintf(errstr, errstr_size, "the schema registry has no schema id %d (%s)", (int)id, why);
    }
    if (rc == KENG_SCHEMAREG_OK &&
        keng_avro_decoder_add_writer(dec, id, json, errstr, errstr_size) != 0)
        rc = KENG_SCHEMAREG_ERROR;
    free(json);
    return rc;
}

/* ---- on the loop ---- */

typedef enum { OP_GET_ID, OP_LOOKUP, OP_REGISTER } op_t;

typedef struct call {
    keng_http_client_t *client;
    keng_schemareg_conf_t *conf;
    op_t op;
    int32_t id;
    char *subject, *body;
    int tried; /* URLs tried for this step */
    int url;   /* the one in flight */
    char errors[600];
    keng_schemareg_done_fn done;
    void *arg;
} call_t;

static void call_free(call_t *c)
{
    free(c->subject);
    free(c->body);
    free(c);
}

static void on_answer(long status, const char *error, const char *body, size_t len, void *arg);

/* Sends c's step to its next URL. Returns 0, or -1 when it could not be sent. */
static int call_send(call_t *c)
{
    keng_schemareg_conf_t *conf = c->conf;
    keng_http_auth_t auth = {conf->username, conf->password, NULL};
    keng_http_request_t req;
    char path[512], url[2048];

    c->url = (conf->preferred + c->tried) % conf->url_count;
    if (c->op == OP_GET_ID)
        snprintf(path, sizeof(path), "/schemas/ids/%d", (int)c->id);
    else if (c->op == OP_LOOKUP)
        subject_path(path, sizeof(path), "/subjects/%s", c->subject);
    else
        subject_path(path, sizeof(path), "/subjects/%s/versions", c->subject);
    snprintf(url, sizeof(url), "%s%s", conf->urls[c->url], path);
    req = (keng_http_request_t){
        .method = c->op == OP_GET_ID ? "GET" : "POST",
        .url = url,
        .body = c->op == OP_GET_ID ? NULL : c->body,
        .content_type = CONTENT_TYPE,
        .accept = CONTENT_TYPE ", application/json",
        .timeout_ms = conf->timeout_ms,
        .auth = conf->username ? &auth : NULL,
        .ca_file = conf->ca_file,
        .max_answer = MAX_ANSWER,
    };
    return keng_http_client_request(c->client, &req, on_answer, c);
}

static void call_end(call_t *c, int rc, int32_t id, const char *json, const char *error)
{
    keng_schemareg_done_fn done = c->done;
    void *arg = c->arg;
    char words[sizeof(c->errors)];

    /* error may be c's own (c->errors): copied before c goes. */
    snprintf(words, sizeof(words), "%s", error ? error : "");
    call_free(c);
    done(rc, id, json, error ? words : NULL, arg);
}

static void on_answer(long status, const char *error, const char *body, size_t len, void *arg)
{
    call_t *c = arg;
    keng_schemareg_conf_t *conf = c->conf;
    char words[400];

    (void)len;
    if (status < 0) {
        call_end(c, KENG_SCHEMAREG_CLOSED, 0, NULL, error);
        return;
    }
    if (!answered(status) || (status == 200 && error)) {
        size_t used = strlen(c->errors);
        if (status >= 500)
            answer_words(status, body, words, sizeof(words));
        snprintf(c->errors + used, sizeof(c->errors) - used, "%s%s: %s", used ? "; " : "",
                 conf->shown[c->url],
                 status >= 500 ? words
                 : error       ? error
                               : "no answer");
        if (++c->tried < conf->url_count) {
            if (call_send(c) != 0)
                call_end(c, KENG_SCHEMAREG_UNREACHABLE, 0, NULL, "out of memory");
            return;
        }
        call_end(c, KENG_SCHEMAREG_UNREACHABLE, 0, NULL, c->errors);
        return;
    }
    conf->preferred = c->url;
    if (status != 200) {
        int rc = rc_of(status, body, words, sizeof(words));
        if (c->op == OP_LOOKUP && rc == KENG_SCHEMAREG_NOT_FOUND) {
            /* Not registered yet: register it (a new step, every URL again). */
            c->op = OP_REGISTER;
            c->tried = 0;
            c->errors[0] = '\0';
            if (call_send(c) != 0)
                call_end(c, KENG_SCHEMAREG_UNREACHABLE, 0, NULL, "out of memory");
            return;
        }
        call_end(c, rc, 0, NULL, words);
        return;
    }
    if (c->op == OP_GET_ID) {
        char *json = answer_string(body, "schema");
        if (!json) {
            snprintf(words, sizeof(words), "the registry's answer for id %d has no schema",
                     (int)c->id);
            call_end(c, KENG_SCHEMAREG_ERROR, 0, NULL, words);
            return;
        }
        int32_t id = c->id;
        keng_schemareg_done_fn done = c->done;
        void *done_arg = c->arg;
        call_free(c);
        done(KENG_SCHEMAREG_OK, id, json, NULL, done_arg);
        free(json);
        return;
    }
    long long n = answer_int(body, "id");
    if (n <= 0 || n > INT32_MAX) {
        snprintf(words, sizeof(words), "the registry's answer for %s has no id", c->subject);
        call_end(c, KENG_SCHEMAREG_ERROR, 0, NULL, words);
        return;
    }
    call_end(c, KENG_SCHEMAREG_OK, (int32_t)n, NULL, NULL);
}

static int call_start(keng_http_client_t *client, keng_schemareg_conf_t *conf, op_t op, int32_t id,
                      const char *subject, const char *json, keng_schemareg_done_fn done, void *arg)
{
    call_t *c = calloc(1, sizeof(*c));

    if (!c)
        return -1;
    c->client = client;
    c->conf = conf;
    c->op = op;
    c->id = id;
    c->done = done;
    c->arg = arg;
    if (subject && (!(c->subject = strdup(subject)) || !(c->body = schema_body(json)))) {
        call_free(c);
        return -1;
    }
    if (call_send(c) != 0) {
        call_free(c);
        return -1;
    }
    return 0;
}

int keng_schemareg_get_id_async(keng_http_client_t *client, keng_schemareg_conf_t *conf, int32_t id,
                                keng_schemareg_done_fn done, void *arg)
{
    return call_start(client, conf, OP_GET_ID, id, NULL, NULL, done, arg);
}

int keng_schemareg_register_async(keng_http_client_t *client, keng_schemareg_conf_t *conf,
                                  const char *subject, const char *json,
                                  keng_schemareg_done_fn done, void *arg)
{
    return call_start(client, conf, OP_LOOKUP, 0, subject, json, done, arg);
}

int keng_schemareg_check_config(const keng_config_t *cfg, const char *program)
{
    keng_schemareg_conf_t conf;
    char errstr[512];
    int rc = keng_schemareg_conf_from_config(cfg, &conf, errstr, sizeof(errstr));

    keng_schemareg_conf_free(&conf);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", program, errstr);
        return KENG_EXIT_CONFIG;
    }
    return 0;
}
