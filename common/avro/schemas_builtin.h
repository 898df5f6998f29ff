/* The schemas of schemas/manifest.csv, built into every program (generated at build time);
 * nothing here parses them (the schema store does). */
#ifndef KENG_SCHEMAS_BUILTIN_H
#define KENG_SCHEMAS_BUILTIN_H

#include <stdint.h>

typedef struct keng_builtin_schema {
    int32_t id;
    const char *subject; /* "vn.antt.Incident" */
    int version;
    const char *file;
    const char *json;
} keng_builtin_schema_t;

/* Terminated by an entry with id 0. */
extern const keng_builtin_schema_t keng_builtin_schemas[];

#endif
