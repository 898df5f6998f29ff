/* Events of a board that a registry version about to take effect adds. keng-ingest takes such
 * a board from its own switch on, and clocks differ between machines, so the event may reach
 * this program a moment before its own switch: rather than dead-letter it as an unknown board,
 * its partition is held at it (consumer.c's hold: nothing is counted out of order) until the
 * program stops to take the version (a version that adds boards is taken at a start), or until
 * no version about to take effect has the board any more, when the event is dead-lettered as
 * any unknown board is. */
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"
#include "log.h"

void keng_consumer_set_board_wait(keng_consumer_t *c, keng_consumer_board_wait_fn fn, void *arg)
{
    c->board_wait = fn;
    c->board_wait_arg = arg;
}

bool keng_consumer__board_wait(keng_consumer_t *c, part_t *p, const rd_kafka_message_t *m,
                               const char *board_id)
{
    if (!c->board_wait || !c->board_wait(board_id, c->board_wait_arg))
        return false;
    keng_consumer__hold(c, p, m->offset, HOLD_FOR_BOARD);
    snprintf(p->board_wait_board, sizeof(p->board_wait_board), "%s", board_id);
    c->stats.board_waits++;
    keng_log_info("partition paused: its next event is for a board that a registry version "
                  "about to take effect adds",
                  "topic=%s partition=%" PRId32 " offset=%" PRId64 " board=%s", c->topics[p->topic],
                  p->partition, m->offset, board_id);
    return true;
}

void keng_consumer__board_tick(keng_consumer_t *c)
{
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];

        if (!keng_consumer__held_for(p, HOLD_FOR_BOARD) ||
            (c->board_wait && c->board_wait(p->board_wait_board, c->board_wait_arg)))
            continue;
        keng_consumer__release(c, p, "the event that waited for its board");
        keng_log_warn("partition resumed: no registry version about to take effect has the "
                      "board any more; its event is dead-lettered",
                      "topic=%s partition=%" PRId32 " offset=%" PRId64 " board=%s",
                      c->topics[p->topic], p->partition, p->hold_offset, p->board_wait_board);
    }
}
