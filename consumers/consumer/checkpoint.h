/* keng-aggregate's checkpoint: the counts of every board and the next input offset of every
 * partition, written together in one LMDB transaction, so that after a crash the state and the
 * place to resume reading always agree; nothing here talks to Kafka.
 *
 * Thread: not thread-safe; keng-aggregate uses it on the loop thread only. */
#ifndef KENG_CHECKPOINT_H
#define KENG_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

typedef struct keng_checkpoint keng_checkpoint_t;
typedef struct keng_checkpoint_txn keng_checkpoint_txn_t;

/* Opens (creating when missing) the LMDB environment in dir, which is created too.
 * map_size is the most bytes the store may grow to (0 for the default, 4 GiB; the file is
 * sparse). Returns NULL with errstr filled ("/var/lib/keng: Permission denied"). The caller owns
 * the store (keng_checkpoint_close). */
keng_checkpoint_t *keng_checkpoint_open(const char *dir, size_t map_size, char *errstr,
                                        size_t errstr_size);

/* Why keng_checkpoint_open_checked failed, for the exit code. */
enum {
    KENG_CHECKPOINT_ERROR = 1,  /* anything else: permissions, memory, LMDB */
    KENG_CHECKPOINT_LOCKED = 2, /* another process holds dir (its pid is in errstr) */
    KENG_CHECKPOINT_DAMAGED = 3 /* the store on disk is truncated or not an LMDB file */
};

/* keng_checkpoint_open that also says in *failure (may be NULL) why it failed. Either
 * holds an flock on dir/keng.lock, with this process's pid in it, until the store is
 * closed: a second open of dir, in this process or another, fails (KENG_CHECKPOINT_LOCKED). */
keng_checkpoint_t *keng_checkpoint_open_checked(const char *dir, size_t map_size, int *failure,
                                                char *errstr, size_t errstr_size);

/* Closes the store. Any transaction still open is the caller's bug. */
void keng_checkpoint_close(keng_checkpoint_t *cp);

/* Starts the one write transaction of a checkpoint. Returns NULL with errstr filled, also
 * when dir/data.mdb is no longer the file that was opened (deleted or replaced). The
 * caller owns txn until keng_checkpoint_commit or keng_checkpoint_abort, which free it. */
keng_checkpoint_txn_t *keng_checkpoint_begin(keng_checkpoint_t *cp, char *errstr,
                                             size_t errstr_size);

/* Records the next offset to read of topic/partition in txn. Returns 0 or -1 with errstr. */
int keng_checkpoint_put_offset(keng_checkpoint_txn_t *txn, const char *topic, int32_t partition,
                               int64_t next_offset, char *errstr, size_t errstr_size);

/* Records the state of one board (bytes copied) in txn. Returns 0 or -1 with errstr. */
int keng_checkpoint_put_board(keng_checkpoint_txn_t *txn, const char *board_id, const void *state,
                              size_t len, char *errstr, size_t errstr_size);

/* Makes everything put in txn durable at once, and frees txn (also on failure, when
 * nothing of it is kept). Returns 0 or -1 with errstr. */
int keng_checkpoint_commit(keng_checkpoint_txn_t *txn, char *errstr, size_t errstr_size);

/* Drops txn and everything put in it. */
void keng_checkpoint_abort(keng_checkpoint_txn_t *txn);

/* The checkpointed next offset of topic/partition. Returns 1 and sets *next_offset when there
 * is one, 0 when there is none, -1 with errstr on a read error. */
int keng_checkpoint_get_offset(keng_checkpoint_t *cp, const char *topic, int32_t partition,
                               int64_t *next_offset, char *errstr, size_t errstr_size);

/* Calls fn for every checkpointed board, in id order. id is not NUL-terminated; id and state
 * are borrowed for the call only. fn returns 0 to go on, anything else to stop (that value is
 * then returned). Returns 0, fn's value, or -1 with errstr on a read error. */
typedef int (*keng_checkpoint_board_fn)(const char *id, size_t id_len, const void *state,
                                        size_t len, void *arg);
int keng_checkpoint_each_board(keng_checkpoint_t *cp, keng_checkpoint_board_fn fn, void *arg,
                               char *errstr, size_t errstr_size);

/* The same for one board: returns 1 after calling fn, 0 when the board has no state, -1 with
 * errstr on a read error. */
int keng_checkpoint_get_board(keng_checkpoint_t *cp, const char *board_id,
                              keng_checkpoint_board_fn fn, void *arg, char *errstr,
                              size_t errstr_size);

/* Named blobs beside the boards and offsets, under "m/<name>" (added for the alert state, so
 * that it commits in the same transaction as the counts it derives from). put copies the
 * bytes into txn and returns 0 or -1 with errstr. get calls fn (id is the name) and returns
 * 1, 0 when there is no such blob, -1 with errstr on a read error. */
int keng_checkpoint_put_meta(keng_checkpoint_txn_t *txn, const char *name, const void *data,
                             size_t len, char *errstr, size_t errstr_size);
int keng_checkpoint_get_meta(keng_checkpoint_t *cp, const char *name, keng_checkpoint_board_fn fn,
                             void *arg, char *errstr, size_t errstr_size);

/* Per-(board, kind) state, for scale-out (additive): the unit that moves with a partition.
 * put_unit records it under "u/<board id>/<kind>" (kind as keng_kind_name spells it);
 * each_unit calls fn for every one, in key order, with id "<board id>/<kind>". Same
 * conventions as put_board and each_board. */
int keng_checkpoint_put_unit(keng_checkpoint_txn_t *txn, const char *board_id, const char *kind,
                             const void *state, size_t len, char *errstr, size_t errstr_size);
int keng_checkpoint_each_unit(keng_checkpoint_t *cp, keng_checkpoint_board_fn fn, void *arg,
                              char *errstr, size_t errstr_size);

#endif
