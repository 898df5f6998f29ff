/* TLS for keng's HTTP servers: a server context made from the tls_server_config of the web
 * config file (certificate, key, client CAs, client authentication, protocol versions), on
 * Debian's OpenSSL 3, and reloaded from the same files on SIGHUP without dropping a
 * connection. The connections themselves speak TLS in http_tls.c.
 *
 * Thread: the loop's thread (the context is swapped there, and connections made there). */
#ifndef KENG_TLS_H
#define KENG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct keng_tls keng_tls_t;

/* client_auth_type, with the exporter toolkit's names and meanings (Go's tls.ClientAuthType). */
typedef enum keng_tls_client_auth {
    KENG_TLS_NO_CLIENT_CERT,                /* NoClientCert (the default) */
    KENG_TLS_REQUEST_CLIENT_CERT,           /* RequestClientCert: asked for, not checked */
    KENG_TLS_REQUIRE_ANY_CLIENT_CERT,       /* RequireAnyClientCert: required, not checked */
    KENG_TLS_VERIFY_CLIENT_CERT_IF_GIVEN,   /* VerifyClientCertIfGiven */
    KENG_TLS_REQUIRE_AND_VERIFY_CLIENT_CERT /* RequireAndVerifyClientCert */
} keng_tls_client_auth_t;

/* What tls_server_config says. The strings are owned by whoever filled the struct. */
typedef struct keng_tls_settings {
    const char *cert_file;      /* PEM: the certificate, then any intermediates */
    const char *key_file;       /* PEM: its private key */
    const char *client_ca_file; /* PEM: the CAs client certificates are checked against */
    keng_tls_client_auth_t client_auth;
    int min_version;                  /* TLS1_2_VERSION (the default) or TLS1_3_VERSION */
    int max_version;                  /* 0: the newest OpenSSL has */
    bool prefer_server_cipher_suites; /* true by default, as in the toolkit */
} keng_tls_settings_t;

/* Makes the server context: reads the certificate, the key (checked against each other) and
 * the client CAs. Returns NULL with errstr naming the file and what is wrong ("cert.pem: no
 * certificate in the file"). settings is copied. The caller owns the result. */
keng_tls_t *keng_tls_new(const keng_tls_settings_t *settings, char *errstr, size_t errstr_size);

/* Reads the same files again into a new context that new connections get; connections already
 * open keep the one they started with until they close. On failure the context in use stays.
 * Returns 0, or -1 with errstr filled. Counted on /metrics either way. */
int keng_tls_reload(keng_tls_t *tls, char *errstr, size_t errstr_size);

/* Frees the context; connections still open keep their reference (OpenSSL counts them). */
void keng_tls_destroy(keng_tls_t *tls);

/* The context new connections get (borrowed: an SSL_CTX *, kept as void * so that this
 * header does not pull in OpenSSL's). */
void *keng_tls_context(const keng_tls_t *tls);

/* For the log, as ready pairs (keng_log's " %s "): "cert_file=keng.crt subject=/CN=keng
 * not_after=2027-12-06T00:00:00Z client_auth=NoClientCert min_version=TLS1.2 ...". */
void keng_tls_describe(const keng_tls_t *tls, char *buf, size_t size);

/* keng_tls_certificate_not_after_timestamp_seconds, keng_tls_reloads_total{result}, with
 * HELP and TYPE lines. */
void keng_tls_write_metrics(const keng_tls_t *tls, FILE *out);

/* The name of a client_auth_type, and the other way round (-1 for an unknown name). */
const char *keng_tls_client_auth_name(keng_tls_client_auth_t auth);
int keng_tls_client_auth_parse(const char *name);

#endif
