/* The TLS server context of keng's HTTP servers, made from tls_server_config and remade on
 * SIGHUP; the connections' own TLS is in http_tls.c. */
#include "tls.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"

struct keng_tls {
    SSL_CTX *ctx;
    char *cert_file, *key_file, *client_ca_file;
    keng_tls_client_auth_t client_auth;
    int min_version, max_version;
    bool prefer_server;
    char subject[256];
    int64_t not_after; /* Unix time, of the certificate in use */
    uint64_t reloads_ok, reloads_failed;
};

static const char *const auth_names[] = {"NoClientCert", "RequestClientCert",
                                         "RequireAnyClientCert", "VerifyClientCertIfGiven",
                                         "RequireAndVerifyClientCert"};

const char *keng_tls_client_auth_name(keng_tls_client_auth_t auth)
{
    return (unsigned)auth < sizeof(auth_names) / sizeof(auth_names[0]) ? auth_names[auth] : "?";
}

int keng_tls_client_auth_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(auth_names) / sizeof(auth_names[0]); i++)
        if (strcmp(name, auth_names[i]) == 0)
            return (int)i;
    /* The toolkit's older name for RequireAnyClientCert. */
    if (strcmp(name, "RequireClientCert") == 0)
        return KENG_TLS_REQUIRE_ANY_CLIENT_CERT;
    return -1;
}

/* OpenSSL's reason for the last failure, its queue emptied. */
static const char *ssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    snprintf(buf, size, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return buf;
}

/* RequestClientCert and RequireAnyClientCert ask for a certificate and take whatever comes,
 * as the toolkit does: the certificate is the client's to show, not OpenSSL's to judge. */
static int accept_any(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok;
    (void)store;
    return 1;
}

/* The certificate's subject and end of validity, for the log and /metrics. */
static void read_certificate(keng_tls_t *tls, SSL_CTX *ctx)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    struct tm tm;

    tls->subject[0] = '\0';
    tls->not_after = 0;
    if (!cert)
        return;
    X509_NAME_oneline(X509_get_subject_name(cert), tls->subject, sizeof(tls->subject));
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
        tls->not_after = (int64_t)timegm(&tm);
}

/* A new context from the files. NULL with errstr filled. */
static SSL_CTX *make_context(const keng_tls_t *tls, char *errstr, size_t errstr_size)
{
    char why[200];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *failed_file = NULL;

    if (!ctx) {
        snprintf(errstr, errstr_size, "tls_server_config: cannot make a TLS context: %s",
                 ssl_reason(why, sizeof(why)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, tls->min_version);
    if (tls->max_version)
        SSL_CTX_set_max_proto_version(ctx, tls->max_version);
    /* No renegotiation: a client could make the server repeat its costliest step at will. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 (tls->prefer_server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    /* Idle keep-alive connections give their record buffers back. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"keng", 4);

    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1)
        failed_file = tls->cert_file;
    else if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1)
        failed_file = tls->key_file;
    if (failed_file == tls->key_file &&
        ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        snprintf(errstr, errstr_size, "tls_server_config: %s is not the key of %s", tls->key_file,
                 tls->cert_file);
        goto fail;
    }
    if (failed_file) {
        snprintf(errstr, errstr_size, "tls_server_config: %s: %s", failed_file,
                 ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(errstr, errstr_size, "tls_server_config: %s is not the key of %s: %s",
                 tls->key_file, tls->cert_file, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (tls->client_ca_file) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(tls->client_ca_file);
        if (!names || SSL_CTX_load_verify_locations(ctx, tls->client_ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(errstr, errstr_size, "tls_server_config: client_ca_file %s: %s",
                     tls->client_ca_file, ssl_reason(why, sizeof(why)));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    switch (tls->client_auth) {
    case KENG_TLS_NO_CLIENT_CERT:
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        break;
    case KENG_TLS_REQUEST_CLIENT_CERT:
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
        break;
    case KENG_TLS_REQUIRE_ANY_CLIENT_CERT:
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
        break;
    case KENG_TLS_VERIFY_CLIENT_CERT_IF_GIVEN:
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        break;
    case KENG_TLS_REQUIRE_AND_VERIFY_CLIENT_CERT:
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        break;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

keng_tls_t *keng_tls_new(const keng_tls_settings_t *settings, char *errstr, size_t errstr_size)
{
    keng_tls_t *tls = calloc(1, sizeof(*tls));

    if (!tls)
        goto oom;
    tls->cert_file = settings->cert_file ? strdup(settings->cert_file) : NULL;
    tls->key_file = settings->key_file ? strdup(settings->key_file) : NULL;
    tls->client_ca_file = settings->client_ca_file ? strdup(settings->client_ca_file) : NULL;
    if (!tls->cert_file || !tls->key_file || (settings->client_ca_file && !tls->client_ca_file))
        goto oom;
    tls->client_auth = settings->client_auth;
    tls->min_version = settings->min_version ? settings->min_version : TLS1_2_VERSION;
    tls->max_version = settings->max_version;
    tls->prefer_server = settings->prefer_server_cipher_suites;
    tls->ctx = make_context(tls, errstr, errstr_size);
    if (!tls->ctx) {
        keng_tls_destroy(tls);
        return NULL;
    }
    read_certificate(tls, tls->ctx);
    return tls;
oom:
    snprintf(errstr, errstr_size, "out of memory");
    keng_tls_destroy(tls);
    return NULL;
}

int keng_tls_reload(keng_tls_t *tls, char *errstr, size_t errstr_size)
{
    SSL_CTX *ctx = make_context(tls, errstr, errstr_size);

    if (!ctx) {
        tls->reloads_failed++;
        return -1;
    }
    /* Each connection's SSL holds a reference to the context it was made from. */
    SSL_CTX_free(tls->ctx);
    tls->ctx = ctx;
    read_certificate(tls, ctx);
    tls->reloads_ok++;
    return 0;
}

void keng_tls_destroy(keng_tls_t *tls)
{
    if (!tls)
        return;
    SSL_CTX_free(tls->ctx);
    free(tls->cert_file);
    free(tls->key_file);
    free(tls->client_ca_file);
    free(tls);
}

void *keng_tls_context(const keng_tls_t *tls)
{
    return tls->ctx;
}

static const char *version_name(int v)
{
    return v == TLS1_3_VERSION ? "TLS1.3" : v == TLS1_2_VERSION ? "TLS1.2" : "newest";
}

void keng_tls_describe(const keng_tls_t *tls, char *buf, size_t size)
{
    char when[32] = "unknown";
    time_t t = (time_t)tls->not_after;
    struct tm tm;
    char file[300], subject[300];

    if (tls->not_after && gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* Ready pairs for the log: the values that come from outside are escaped. */
    keng_log_value(file, sizeof(file), tls->cert_file);
    keng_log_value(subject, sizeof(subject), tls->subject);
    snprintf(buf, size,
             "cert_file=%s subject=%s not_after=%s client_auth=%s min_version=%s max_version=%s",
             file, subject, when, keng_tls_client_auth_name(tls->client_auth),
             version_name(tls->min_version), version_name(tls->max_version));
}

void keng_tls_write_metrics(const keng_tls_t *tls, FILE *out)
{
    fprintf(out,
            "# HELP keng_tls_certificate_not_after_timestamp_seconds When the served "
            "certificate expires (Unix time).\n"
            "# TYPE keng_tls_certificate_not_after_timestamp_seconds gauge\n"
            "keng_tls_certificate_not_after_timestamp_seconds %" PRId64 "\n"
            "# HELP keng_tls_reloads_total Certificate reloads on SIGHUP, by result (a failed "
            "one keeps the certificate in use).\n"
            "# TYPE keng_tls_reloads_total counter\n"
            "keng_tls_reloads_total{result=\"ok\"} %" PRIu64 "\n"
            "keng_tls_reloads_total{result=\"failed\"} %" PRIu64 "\n",
            tls->not_after, tls->reloads_ok, tls->reloads_failed);
}
