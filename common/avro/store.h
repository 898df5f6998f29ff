/* The schema store's insides, shared by the encoder and the decoder that read its entries;
 * nothing here parses or changes a store (store.c does). */
#ifndef KENG_AVRO_STORE_H
#define KENG_AVRO_STORE_H

#include <avro.h>
#include <stdbool.h>

#include "avro_codec.h"

typedef struct schema_entry {
    int32_t id;
    int version;
    char *subject;
    char *json;
    avro_schema_t schema;
    bool pinned[2]; /* by keng_schema_role_t: this version replaces the newest in that role */
} schema_entry_t;

struct keng_schema_store {
    schema_entry_t *entries;
    size_t count;
    keng_avro_path_t path; /* what decoders made from this store take (codec.decoder) */
};

/* The version of a subject keng reads with or writes: the pinned one, else the newest.
 * NULL when the store lacks the subject. Borrowed from the store. */
const schema_entry_t *keng_avro__store_pick(const keng_schema_store_t *store, const char *subject,
                                            keng_schema_role_t role);

/* Parses "plan" or "avro-c" (codec.decoder, KENG_AVRO_DECODER). Returns 0, or -1 for any
 * other value. */
int keng_avro__parse_path(const char *value, keng_avro_path_t *path);

#endif
