/* keng-avro: turns NDJSON events into Confluent-framed Avro messages and back, to look inside
 * what keng writes to Kafka and to feed it messages made by other tools; it never talks to a
 * broker itself. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "avro_codec.h"
#include "event.h"
#include "program.h"
#include "schemareg.h"
#include "timeutil.h"

#define MSG_MAX (64 * 1024)

typedef enum { FORMAT_AUTO, FORMAT_SINGLE, FORMAT_STREAM } file_format_t;

typedef struct mutable_flag {
    bool set;
} mutable_flag_t;

struct conf {
    const char *mode;
    keng_kind_t kind;
    bool kind_set;
    const char *out_dir;
    const char *out_file;
    const char *schemas_dir;
    file_format_t format;
    const char *registry_urls;   /* --schema-registry: ids are the registry's */
    keng_schemareg_conf_t *sr;   /* set from it for decoding */
    mutable_flag_t *unreachable; /* a schema id could not be asked: exit 69 */
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: keng-avro encode --kind incident|mediation [--out-dir DIR | -o FILE]\n"
        "       keng-avro decode [--format auto|single|stream] FILE|DIR...\n"
        "\n"
        "encode reads one JSON event per line on stdin and writes Confluent-framed Avro:\n"
        "  --out-dir DIR   one file per input line, DIR/000001.bin, DIR/000002.bin, ...\n"
        "  -o FILE         all messages in one file, each after its length as a 4-byte\n"
        "                  big-endian integer (the default, FILE \"-\" is stdout)\n"
        "decode prints each framed message of each FILE (a single message, or a\n"
        "length-prefixed file as encode -o writes it, or every file of a DIR) as one JSON line.\n"
        "  --format F      how to read FILE: auto (the default), single or stream\n"
        "  --schema-registry URL[,URL...]  schema ids are a Confluent-compatible Schema\n"
        "                  Registry's (for Apicurio: http://host:port/apis/ccompat/v7): each\n"
        "                  id is asked there once (exit 69 when no registry answers)\n"
        "Both:\n"
        "  --kind K        incident or mediation (encode)\n"
        "  --schemas DIR   a schema directory laid out like schemas/ instead of the\n"
        "                  schemas built into keng\n"
        "  -h, --help      this help;  -V, --version  keng's version\n");
}

/* keng-avro reads no config file; a usage error exits 64, as in every program. */
static const keng_program_t program = {"keng-avro", 0, usage, NULL, 0};

static keng_schema_store_t *open_store(const struct conf *conf)
{
    char errstr[512];
    keng_schema_store_t *store =
        conf->schemas_dir != NULL
            ? keng_schema_store_load(conf->schemas_dir, errstr, sizeof(errstr))
            : keng_schema_store_builtin(errstr, sizeof(errstr));
    if (store == NULL)
        fprintf(stderr, "keng-avro: %s\n", errstr);
    return store;
}

static int write_all(FILE *f, const void *buf, size_t len)
{
    return fwrite(buf, 1, len, f) == len ? 0 : -1;
}

/* One JSON event of stdin line `lineno` encoded into msg (MSG_MAX bytes). Returns 0, or -1
 * after saying on stderr why the line is rejected. */
static int encode_line(const struct conf *conf, keng_avro_encoder_t *enc, const char *line,
                       size_t n, long lineno, unsigned char *msg, size_t *len)
{
    keng_event_limits_t limits = {keng_now_ms(), true, NULL};
    keng_field_error_t ferr;
    keng_event_t ev;
    json_error_t jerr;
    char errstr[512];

    json_t *obj = json_loadb(line, n, 0, &jerr);
    if (obj == NULL) {
        fprintf(stderr, "keng-avro: stdin line %ld: not JSON: %s\n", lineno, jerr.text);
        return -1;
    }
    int rc = 0;
    if (keng_event_from_json(obj, conf->kind, &limits, &ev, &ferr) < 0 ||
        keng_avro_encode(enc, &ev, msg, MSG_MAX, len, errstr, sizeof(errstr)) < 0) {
        if (ferr.message[0] != '\0')
            fprintf(stderr, "keng-avro: stdin line %ld: %s: %s\n", lineno,
                    ferr.field[0] ? ferr.field : "event", ferr.message);
        else
            fprintf(stderr, "keng-avro: stdin line %ld: %s\n", lineno, errstr);
        rc = -1;
    }
    json_decref(obj); /* the event's strings point into it: freed only after encoding */
    return rc;
}

/* Writes one message: to DIR/NNNNNN.bin with --out-dir, else after its 4-byte big-endian
 * length to `out`. Returns 0, or -1 after saying on stderr what could not be written. */
static int write_message(const struct conf *conf, FILE *out, long lineno, const unsigned char *msg,
                         size_t len)
{
    if (conf->out_dir != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%06ld.bin", conf->out_dir, lineno);
        FILE *f = fopen(path, "wb");
        if (f == NULL || write_all(f, msg, len) < 0 || fclose(f) != 0) {
            fprintf(stderr, "keng-avro: cannot write %s: %s\n", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    unsigned char prefix[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                               (unsigned char)(len >> 8), (unsigned char)len};
    if (write_all(out, prefix, 4) < 0 || write_all(out, msg, len) < 0) {
        fprintf(stderr, "keng-avro: cannot write: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int run_encode(const struct conf *conf)
{
    keng_schema_store_t *store = NULL;
    keng_avro_encoder_t *enc = NULL;
    FILE *out = NULL;
    char *line = NULL, errstr[512];
    static unsigned char msg[MSG_MAX];
    size_t cap = 0;
    ssize_t n;
    long lineno = 0, written = 0, failed = 0;
    int rc = 1;

    if (!conf->kind_set) {
        fprintf(stderr, "keng-avro: encode needs --kind incident or --kind mediation\n");
        return KENG_EXIT_USAGE;
    }
    if (conf->out_dir != NULL && conf->out_file != NULL) {
        fprintf(stderr, "keng-avro: give either --out-dir or -o, not both\n");
        return KENG_EXIT_USAGE;
    }
    store = open_store(conf);
    if (store == NULL)
        goto out;
    enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    if (enc == NULL) {
        fprintf(stderr, "keng-avro: %s\n", errstr);
        goto out;
    }
    if (conf->out_dir != NULL) {
        if (mkdir(conf->out_dir, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "keng-avro: cannot create %s: %s\n", conf->out_dir, strerror(errno));
            goto out;
        }
    } else if (conf->out_file == NULL || strcmp(conf->out_file, "-") == 0) {
        out = stdout;
    } else if ((out = fopen(conf->out_file, "wb")) == NULL) {
        fprintf(stderr, "keng-avro: cannot create %s: %s\n", conf->out_file, strerror(errno));
        goto out;
    }

    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len;

        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (encode_line(conf, enc, line, (size_t)n, lineno, msg, &len) != 0) {
            failed++;
            continue;
        }
        if (write_message(conf, out, lineno, msg, len) != 0)
            goto out;
        written++;
    }
    if (out != NULL && fflush(out) != 0) {
        fprintf(stderr, "keng-avro: cannot write: %s\n", strerror(errno));
        goto out;
    }
    fprintf(stderr, "keng-avro: %ld %s events encoded, %ld rejected\n", written,
            keng_kind_name(conf->kind), failed);
    rc = failed > 0 ? 1 : 0;
out:
    if (out != NULL && out != stdout)
        fclose(out);
    free(line);
    keng_avro_encoder_destroy(enc);
    keng_schema_store_destroy(store);
    return rc;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n;

    *len = 0;
    if (f == NULL)
        return NULL;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = grown;
        }
        n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        errno = EIO;
        return NULL;
    }
    fclose(f);
    return buf;
}

/* A length-prefixed file is one whose 4-byte prefixes chain exactly to its end. */
static bool looks_like_stream(const unsigned char *buf, size_t len)
{
    size_t pos = 0;

    if (len < 4)
        return false;
    while (pos + 4 <= len) {
        size_t n = (size_t)buf[pos] << 24 | (size_t)buf[pos + 1] << 16 | (size_t)buf[pos + 2] << 8 |
                   buf[pos + 3];
        if (n < KENG_FRAME_HEADER_LEN || n > len - pos - 4)
            return false;
        pos += 4 + n;
    }
    return pos == len;
}

static int decode_one(keng_avro_decoder_t *dec, const struct conf *conf, const char *path,
                      long index, const unsigned char *msg, size_t len)
{
    keng_event_t ev;
    int32_t id = 0;
    char errstr[512];
    int err = keng_avro_decode(dec, msg, len, &ev, &id, errstr, sizeof(errstr));

    if (err == KENG_AVRO_ERR_UNKNOWN_ID && conf->sr != NULL) {
        int rc = keng_schemareg_resolve(conf->sr, dec, id, errstr, sizeof(errstr));
        if (rc == KENG_SCHEMAREG_OK)
            err = keng_avro_decode(dec, msg, len, &ev, &id, errstr, sizeof(errstr));
        else if (rc == KENG_SCHEMAREG_UNREACHABLE)
            conf->unreachable->set = true;
    }

    if (err != KENG_AVRO_OK) {
        if (index >= 0)
            fprintf(stderr, "keng-avro: %s: message %ld: %s [%s]\n", path, index, errstr,
                    keng_avro_err_reason(err));
        else
            fprintf(stderr, "keng-avro: %s: %s [%s]\n", path, errstr, keng_avro_err_reason(err));
        return -1;
    }
    json_t *obj = keng_event_to_json(&ev);
    if (obj == NULL || json_dumpf(obj, stdout, JSON_COMPACT) != 0) {
        fprintf(stderr, "keng-avro: %s: cannot print the event\n", path);
        json_decref(obj);
        return -1;
    }
    fputc('\n', stdout);
    json_decref(obj);
    return 0;
}

static int decode_file(keng_avro_decoder_t *dec, const struct conf *conf, const char *path)
{
    size_t len;
    unsigned char *buf = slurp(path, &len);
    int failed = 0;

    if (buf == NULL) {
        fprintf(stderr, "keng-avro: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    bool stream = conf->format == FORMAT_STREAM ||
                  (conf->format == FORMAT_AUTO && looks_like_stream(buf, len));
    if (!stream) {
        failed += decode_one(dec, conf, path, -1, buf, len) < 0;
    } else {
        size_t pos = 0;
        long index = 0;
        while (pos < len) {
            index++;
            if (len - pos < 4) {
                fprintf(stderr, "keng-avro: %s: message %ld: %zu stray bytes at the end\n", path,
                        index, len - pos);
                failed++;
                break;
            }
            size_t n = (size_t)buf[pos] << 24 | (size_t)buf[pos + 1] << 16 |
                       (size_t)buf[pos + 2] << 8 | buf[pos + 3];
            if (n > len - pos - 4) {
                fprintf(stderr,
                        "keng-avro: %s: message %ld: its length prefix says %zu bytes but %zu "
                        "remain\n",
                        path, index, n, len - pos - 4);
                failed++;
                break;
            }
            failed += decode_one(dec, conf, path, index, buf + pos + 4, n) < 0;
            pos += 4 + n;
        }
    }
    free(buf);
    return failed > 0;
}

static int skip_dot_files(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* A directory, as encode --out-dir writes it, is decoded file by file in name order. */
static int decode_path(keng_avro_decoder_t *dec, const struct conf *conf, const char *path)
{
    struct dirent **names = NULL;
    struct stat st;
    char child[4096];
    int n, failed = 0;

    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return decode_file(dec, conf, path);
    n = scandir(path, &names, skip_dot_files, alphasort);
    if (n < 0) {
        fprintf(stderr, "keng-avro: cannot list %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (int i = 0; i < n; i++) {
        snprintf(child, sizeof(child), "%s/%s", path, names[i]->d_name);
        failed += decode_file(dec, conf, child);
        free(names[i]);
    }
    free(names);
    return failed > 0;
}

static int run_decode(const struct conf *conf, int nfiles, char **files)
{
    keng_schema_store_t *store = NULL;
    keng_avro_decoder_t *dec = NULL;
    char errstr[512];
    int failed = 0;

    if (nfiles == 0) {
        fprintf(stderr, "keng-avro: decode needs at least one FILE\n");
        return KENG_EXIT_USAGE;
    }
    store = open_store(conf);
    if (store == NULL)
        return 1;
    dec = keng_avro_decoder_new(store, errstr, sizeof(errstr));
    if (dec == NULL) {
        fprintf(stderr, "keng-avro: %s\n", errstr);
        keng_schema_store_destroy(store);
        return 1;
    }
    keng_schemareg_conf_t sr = {0};
    mutable_flag_t unreachable = {false};
    struct conf with = *conf;
    if (conf->registry_urls) {
        keng_config_t *cfg = keng_config_new();
        int rc = cfg ? 0 : -1;
        if (cfg) {
            keng_config_set(cfg, "schema.registry.url", conf->registry_urls);
            rc = keng_schemareg_conf_from_config(cfg, &sr, errstr, sizeof(errstr));
            keng_config_destroy(cfg);
        }
        if (rc <= 0) {
            fprintf(stderr, "keng-avro: --schema-registry: %s\n", rc < 0 ? errstr : "no URL");
            keng_schemareg_conf_free(&sr);
            keng_avro_decoder_destroy(dec);
            keng_schema_store_destroy(store);
            return KENG_EXIT_USAGE;
        }
        keng_avro_decoder_use_registry(dec);
        with.sr = &sr;
        with.unreachable = &unreachable;
    }
    for (int i = 0; i < nfiles; i++)
        failed += decode_path(dec, &with, files[i]);
    fflush(stdout);
    keng_avro_decoder_destroy(dec);
    keng_schema_store_destroy(store);
    keng_schemareg_conf_free(&sr);
    if (unreachable.set)
        return KENG_EXIT_UNAVAILABLE;
    return failed > 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"kind", required_argument, NULL, 'k'},
                                            {"out-dir", required_argument, NULL, 'd'},
                                            {"output", required_argument, NULL, 'o'},
                                            {"schemas", required_argument, NULL, 's'},
                                            {"format", required_argument, NULL, 'f'},
                                            {"help", no_argument, NULL, 'h'},
                                            {"version", no_argument, NULL, 'V'},
                                            {"schema-registry", required_argument, NULL, 'r'},
                                            {NULL, 0, NULL, 0}};
    struct conf conf = {0};
    int c;

    keng_program_start(&program);
    /* GNU getopt moves the mode and the files after the options, so options may come
     * before or after the mode: "keng-avro decode --schemas DIR FILE". */
    while ((c = getopt_long(argc, argv, "k:d:o:s:f:hV", options, NULL)) != -1) {
        switch (c) {
        case 'k':
            if (keng_kind_parse(optarg, &conf.kind) < 0) {
                fprintf(stderr, "keng-avro: unknown kind '%s'; expected incident or mediation\n",
                        optarg);
                return KENG_EXIT_USAGE;
            }
            conf.kind_set = true;
            break;
        case 'd':
            conf.out_dir = optarg;
            break;
        case 'o':
            conf.out_file = optarg;
            break;
        case 's':
            conf.schemas_dir = optarg;
            break;
        case 'r':
            conf.registry_urls = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "auto") == 0)
                conf.format = FORMAT_AUTO;
            else if (strcmp(optarg, "single") == 0)
                conf.format = FORMAT_SINGLE;
            else if (strcmp(optarg, "stream") == 0)
                conf.format = FORMAT_STREAM;
            else {
                fprintf(stderr, "keng-avro: unknown format '%s'; expected auto, single or stream\n",
                        optarg);
                return KENG_EXIT_USAGE;
            }
            break;
        case 'h':
            return keng_program_help(&program);
        case 'V':
            return keng_program_version(&program);
        default:
            usage(stderr);
            return KENG_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return KENG_EXIT_USAGE;
    }
    conf.mode = argv[optind++];
    if (strcmp(conf.mode, "encode") == 0)
        return run_encode(&conf);
    if (strcmp(conf.mode, "decode") == 0)
        return run_decode(&conf, argc - optind, argv + optind);
    fprintf(stderr, "keng-avro: unknown mode '%s'; expected encode or decode\n", conf.mode);
    usage(stderr);
    return KENG_EXIT_USAGE;
}
