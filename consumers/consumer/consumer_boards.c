/* Events of a board that a registry version about to take effect adds. keng-ingest takes such
 * a board from its own switch on, and clocks differ between machines, so the event may reach
 * this program a moment before its own switch: rather than dead-letter it as an unknown board,
 * its partition pauses at it (messages already fetched behind it are skipped and fetched again
 * after a seek, so nothing is counted out of order) until the program stops to take the
 * version (a version that adds boards is taken at a start), or until no version about to take
 * effect has the board any more, when the event is dead-lettered as any unknown board is. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"

void keng_consumer_set_board_wait(keng_consumer_t *c, keng_consumer_board_wait_fn fn, void *arg)
{
    c->board_wait = fn;
    c->board_wait_arg = arg;
}

static rd_kafka_topic_partition_list_t *partition_at(keng_consumer_t *c, const part_t *p,
                                                     int64_t offset)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);

    rd_kafka_topic_partition_list_add(list, c->topics[p->topic], p->partition)->offset = offset;
    return list;
}

bool keng_consumer__board_wait(keng_consumer_t *c, part_t *p, const rd_kafka_message_t *m,
                               const char *board_id)
{
    rd_kafka_topic_partition_list_t *list;

    if (!c->board_wait || !c->board_wait(board_id, c->board_wait_arg))
        return false;
    list = partition_at(c, p, m->offset);
    rd_kafka_pause_partitions(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    p->board_wait = BOARD_WAIT_PAUSED;
    p->board_wait_offset = m->offset;
    snprintf(p->board_wait_board, sizeof(p->board_wait_board), "%s", board_id);
    c->stats.board_waits++;
    keng_log_info("partition paused: its next event is for a board that a registry version "
                  "about to take effect adds",
                  "topic=%s partition=%" PRId32 " offset=%" PRId64 " board=%s", c->topics[p->topic],
                  p->partition, m->offset, board_id);
    return true;
}

bool keng_consumer__board_skip(keng_consumer_t *c, part_t *p, const rd_kafka_message_t *m)
{
    (void)c;
    if (p->board_wait == BOARD_WAIT_NONE)
        return false;
    if (p->board_wait == BOARD_WAIT_PAUSED || m->offset != p->board_wait_offset)
        return true; /* fetched before the pause, or before the seek took effect */
    p->board_wait = BOARD_WAIT_NONE;
    return false;
}

void keng_consumer__board_tick(keng_consumer_t *c)
{
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        rd_kafka_topic_partition_list_t *list;
        rd_kafka_error_t *error;

        if (!p->assigned || p->board_wait != BOARD_WAIT_PAUSED ||
            (c->board_wait && c->board_wait(p->board_wait_board, c->board_wait_arg)))
            continue;
        list = partition_at(c, p, p->board_wait_offset);
        error = rd_kafka_seek_partitions(c->rk, list, 0);
        if (error) {
            keng_log_error("cannot seek back to the event that waited for its board",
                           "topic=%s partition=%" PRId32 " offset=%" PRId64 " error=\"%s\"",
                           c->topics[p->topic], p->partition, p->board_wait_offset,
                           rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
        rd_kafka_resume_partitions(c->rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        p->board_wait = BOARD_WAIT_RELEASED;
        keng_log_warn("partition resumed: no registry version about to take effect has the "
                      "board any more; its event is dead-lettered",
                      "topic=%s partition=%" PRId32 " offset=%" PRId64 " board=%s",
                      c->topics[p->topic], p->partition, p->board_wait_offset, p->board_wait_board);
    }
}

void keng_consumer__board_reset(keng_consumer_t *c, part_t *p)
{
    (void)c;
    p->board_wait = BOARD_WAIT_NONE;
}
