/* The decode plan's two entry points, for the decoder; the plan itself is private to
 * plan.c and never words an error. */
#ifndef KENG_AVRO_PLAN_H
#define KENG_AVRO_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "decode.h"

/* Compiles s's plan into s->plan (owned by s, freed with it), leaving it NULL when the writer
 * has a shape the plan does not read (a type promotion, say): that writer id then always
 * takes the Avro-C path. Called once, when s is built. */
void keng_avro__plan_build(slot_t *s);

/* Reads the datum [*pp, end) with s's plan into raw, moving *pp past what it read; raw's
 * strings borrow the message. start is where the datum begins. False when anything is amiss:
 * the caller then takes the guard and Avro-C path. */
bool keng_avro__plan_read(const slot_t *s, const uint8_t **pp, const uint8_t *start,
                          const uint8_t *end, raw_event_t *raw);

#endif
