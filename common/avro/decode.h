/* One writer id's decoding state (its slot) and the fields of a datum as read, shared by the
 * Avro-C reference path (decode.c) and the plan (plan.c); nothing here reads bytes. */
#ifndef KENG_AVRO_DECODE_H
#define KENG_AVRO_DECODE_H

#include <avro.h>
#include <stdbool.h>
#include <stdint.h>

#include "avro_codec.h"
#include "fields.h"
#include "guard.h"
#include "store.h"

enum slot_state { SLOT_UNBUILT, SLOT_READY, SLOT_OTHER_RECORD, SLOT_FAILED };

/* Everything needed to decode one writer schema id, built on its first message. */
typedef struct slot {
    const schema_entry_t *writer;
    enum slot_state state;
    char error[256];
    keng_kind_t kind;
    guard_t guard;
    uint32_t root;
    avro_schema_t reader; /* keng's reader schema, narrowed to the fields the writer has */
    avro_value_iface_t *reader_iface;
    avro_value_t reader_value;
    bool has_reader_value;
    avro_value_iface_t *rw_iface;
    avro_value_t rw_value;
    bool has_rw_value;
    int ridx[F_COUNT]; /* index in the narrowed reader record, -1: take the default */
    shape_info_t info[F_COUNT];
    avro_schema_t wenum[F_COUNT]; /* writer's enum, for messages */
    int *enum_map[F_COUNT];       /* writer symbol index -> keng value, -1: unknown */
    int enum_n[F_COUNT];
    struct plan_op *plan; /* one op per writer field; NULL: this id takes the Avro-C path */
} slot_t;

/* The fields of one datum as read, before keng's checks: what both decode paths produce.
 * Strings are borrowed from wherever they were read (Avro-C's value or the message). */
typedef struct raw_field {
    bool present;  /* false: the reader takes the default (null, or the enum's default) */
    const char *s; /* strings */
    size_t len;
    int64_t n; /* numbers; the writer's symbol index for enums */
} raw_field_t;

typedef struct raw_event {
    raw_field_t f[F_COUNT];
    double lat, lon; /* when f[F_LOCATION].present */
} raw_event_t;

#endif
