/* TLS on the HTTP server's connections: the socket's bytes go through two memory BIOs, so
 * that OpenSSL never touches the socket and libuv keeps every read and write on the loop.
 * Ciphertext read is decrypted at once into the connection's input buffer and then parsed as
 * plain HTTP would be; answers are encrypted as they are queued. The handshake is bounded by
 * http.header_timeout_ms, like every other slow client.
 *
 * Thread: the loop's thread. */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"

int keng_http__tls_accept(struct conn *c)
{
    SSL *ssl = SSL_new((SSL_CTX *)keng_tls_context(c->srv->tls));
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());

    if (!ssl || !rbio || !wbio) {
        SSL_free(ssl);
        BIO_free(rbio);
        BIO_free(wbio);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* An empty BIO asks for more rather than reporting the end of the stream. */
    BIO_set_mem_eof_return(rbio, -1);
    BIO_set_mem_eof_return(wbio, -1);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    return 0;
}

void keng_http__tls_free(struct conn *c)
{
    SSL_free(c->ssl); /* and its BIOs */
    c->ssl = NULL;
}

/* Queues what OpenSSL wrote (handshake messages, records, alerts) on the socket. 0 or <0. */
static int flush(struct conn *c)
{
    BIO *wbio = SSL_get_wbio(c->ssl);
    size_t len = BIO_ctrl_pending(wbio);

    if (len == 0)
        return 0;
    char *buf = keng_http__send_buffer_new(len);
    if (buf == NULL)
        return -ENOMEM;
    if (BIO_read(wbio, buf, (int)len) != (int)len) {
        keng_http__send_buffer_free(buf);
        return -EIO;
    }
    return keng_http__conn_send_buffer(c, buf, len);
}

/* Logs failed and stalled handshakes at most once per NOTE_INTERVAL_MS, as one line with the
 * counts since the last one and the latest reason: a scan of the port cannot flood the log. */
static void note_failures(keng_http_server_t *srv)
{
    uint64_t now = uv_now(srv->loop);

    if (now < srv->tls_note_next_ms)
        return;
    srv->tls_note_next_ms = now + NOTE_INTERVAL_MS;
    keng_log_warn("TLS handshakes failed (counts since the last such line)",
                  "failed=%" PRIu64 " timed_out=%" PRIu64 " last=\"%s\"",
                  srv->stats.tls_handshake_failures - srv->tls_failures_noted,
                  srv->stats.tls_handshake_timeouts - srv->tls_timeouts_noted,
                  srv->tls_last_failure);
    srv->tls_failures_noted = srv->stats.tls_handshake_failures;
    srv->tls_timeouts_noted = srv->stats.tls_handshake_timeouts;
}

void keng_http__tls_timed_out(struct conn *c)
{
    c->srv->stats.tls_handshake_timeouts++;
    snprintf(c->srv->tls_last_failure, sizeof(c->srv->tls_last_failure),
             "peer %s: the handshake did not finish within http.header_timeout_ms", c->peer);
    note_failures(c->srv);
    keng_http__conn_close(c);
}

/* Advances the handshake with what was received. Returns true once it is done; false while
 * it waits for the client, or when it failed (the connection then closes after the alert). */
static bool handshake(struct conn *c)
{
    int rc = SSL_do_handshake(c->ssl);
    int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
    unsigned long e = err == SSL_ERROR_NONE ? 0 : ERR_peek_last_error();
    keng_http_server_t *srv = c->srv;

    if (flush(c) < 0) {
        ERR_clear_error();
        keng_http__conn_close(c);
        return false;
    }
    if (rc == 1) {
        c->tls_ready = true;
        srv->stats.tls_handshakes++;
        /* Now the request's first byte is awaited, as on a new plain connection. */
        keng_http__conn_timer(c, srv->limits.first_byte_timeout_ms);
        return true;
    }
    if (err == SSL_ERROR_WANT_READ)
        return false;
    srv->stats.tls_handshake_failures++;
    snprintf(srv->tls_last_failure, sizeof(srv->tls_last_failure), "peer %s: %s", c->peer,
             e ? ERR_reason_error_string(e) : "the connection broke during the handshake");
    ERR_clear_error();
    note_failures(srv);
    /* The alert OpenSSL wrote is queued; the write side closes after it. */
    keng_http__conn_shutdown(c);
    return false;
}

/* Decrypts what OpenSSL holds into the connection, request bytes as they come. */
static void decrypt(struct conn *c)
{
    while (!c->closing && c->state != ST_CLOSING && c->state != ST_DELAYED) {
        size_t room = keng_http__conn_room(c);
        if (room == 0) {
            keng_http__conn_close(c);
            return;
        }
        int n = SSL_read(c->ssl, c->inbuf + c->inlen, room > INT_MAX ? INT_MAX : (int)room);
        if (n > 0) {
            keng_http__conn_received(c, (size_t)n);
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (err == SSL_ERROR_WANT_READ)
            break;
        if (err == SSL_ERROR_ZERO_RETURN) { /* close_notify: the client is done sending */
            keng_http__conn_eof(c);
            return;
        }
        keng_http__conn_close(c); /* a record that does not decrypt: nothing to answer */
        return;
    }
    /* Reading can make OpenSSL answer (a TLS 1.3 key update). */
    if (!c->closing && flush(c) < 0)
        keng_http__conn_close(c);
}

void keng_http__tls_received(struct conn *c, const char *data, size_t len)
{
    if (len > INT_MAX || BIO_write(SSL_get_rbio(c->ssl), data, (int)len) != (int)len) {
        ERR_clear_error();
        keng_http__conn_close(c);
        return;
    }
    if (!c->tls_ready) {
        if (!c->tls_started) {
            c->tls_started = true;
            keng_http__conn_timer(c, c->srv->limits.header_timeout_ms);
        }
        if (!handshake(c))
            return;
    }
    decrypt(c);
}

/* Encrypts len bytes into OpenSSL's output. 0 or -EIO. */
static int encrypt(struct conn *c, const char *data, size_t len)
{
    while (len > 0) {
        int n = SSL_write(c->ssl, data, len > INT_MAX ? INT_MAX : (int)len);
        if (n <= 0) {
            ERR_clear_error();
            return -EIO;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int keng_http__tls_write(struct conn *c, const char *head, size_t head_len, const char *body,
                         size_t body_len)
{
    /* An answer that fits one record goes as one: a second record for the body would cost a
     * second encryption and its own header and tag. */
    char record[SSL3_RT_MAX_PLAIN_LENGTH];
    int rc;

    if (!c->tls_ready)
        return -ENOTCONN;
    if (!body)
        body_len = 0;
    if (body_len > 0 && head_len + body_len <= sizeof(record)) {
        memcpy(record, head, head_len);
        memcpy(record + head_len, body, body_len);
        rc = encrypt(c, record, head_len + body_len);
    } else {
        rc = encrypt(c, head, head_len);
        if (rc == 0)
            rc = encrypt(c, body, body_len);
    }
    return rc == 0 ? flush(c) : rc;
}

void keng_http__tls_close_notify(struct conn *c)
{
    if (!c->tls_ready)
        return;
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
    (void)flush(c);
}
