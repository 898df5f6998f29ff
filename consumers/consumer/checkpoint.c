/* The LMDB checkpoint of keng-aggregate: one environment in --state-dir, held by one process
 * at a time through an flock on keng.lock, one database with three kinds of keys,
 * "o/<topic>/<partition>" (next offset, 8 bytes little-endian), "u/<board id>/<kind>" (one kind of
 * a board's state, the unit that moves with a partition) and "b/<board id>" (a whole board's state,
 * as written before scale-out); it never decides what to save or when (the consumer does). */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "failpoint.h"
#include "log.h"

#define DEFAULT_MAP_SIZE ((size_t)4 << 30)
#define KEY_MAX          512
#define LOCK_FILE        "keng.lock"

struct keng_checkpoint {
    MDB_env *env;
    MDB_dbi dbi;
    char *dir;
    int lock_fd; /* holds the flock on LOCK_FILE while open; -1 before */
};

struct keng_checkpoint_txn {
    keng_checkpoint_t *cp;
    MDB_txn *txn;
};

/* mkdir -p: the state dir is often a fresh path under a temp or /var directory. The state
 * dir itself is its user's alone (0700): it holds counts per hamlet by category. */
static int make_dirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(buf, &st) == 0 && (st.st_mode & 077))
        keng_log_warn("the state dir may be read by its group or other users: chmod 700 it "
                      "(it holds counts per hamlet by category)",
                      "dir=%s mode=%04o", buf, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* The pid the holder wrote into the lock file, or 0 when it has not (yet). */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

/* Takes the state dir for this process: LMDB lets several processes write one environment,
 * and two aggregators on one store would each checkpoint the other's offsets away. The
 * flock goes with the process, so a crash never leaves it behind. Returns 0, or fills
 * errstr and *failure. */
static int lock_dir(keng_checkpoint_t *cp, int *failure, char *errstr, size_t errstr_size)
{
    char path[4096], pid[32];
    int n = snprintf(path, sizeof(path), "%s/%s", cp->dir, LOCK_FILE);

    if (n < 0 || (size_t)n >= sizeof(path)) {
        snprintf(errstr, errstr_size, "%s: the state directory's path is too long", cp->dir);
        return -1;
    }
    cp->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (cp->lock_fd < 0) {
        snprintf(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (flock(cp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            char holder[48] = "its pid not written yet";
            long holder_id = holder_pid(cp->lock_fd);
            if (holder_id > 0)
                snprintf(holder, sizeof(holder), "pid %ld", holder_id);
            *failure = KENG_CHECKPOINT_LOCKED;
            snprintf(errstr, errstr_size,
                     "%s is in use by another keng-aggregate (%s holds %s); stop it, or give "
                     "this one a --state-dir of its own",
                     cp->dir, holder, path);
        } else
            snprintf(errstr, errstr_size, "%s: cannot lock: %s", path, strerror(errno));
        return -1;
    }
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(cp->lock_fd, 0) != 0 || pwrite(cp->lock_fd, pid, (size_t)n, 0) != n) {
        snprintf(errstr, errstr_size, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The refusal of a damaged store: what is wrong and the one way out. */
static void damaged(char *errstr, size_t errstr_size, const char *dir, const char *why)
{
    snprintf(errstr, errstr_size,
             "%s/data.mdb is damaged (%s); nothing was read from it. Move the state aside and "
             "start again, which rebuilds the counts from Kafka: mv %s %s.damaged",
             dir, why, dir, dir);
}

/* An empty data.mdb is what LMDB takes for a new store, and would silently start from
 * nothing; keng writes both meta pages when it creates one, so empty means cut. */
static int check_not_empty(const char *dir, int *failure, char *errstr, size_t errstr_size)
{
    char path[4096];
    struct stat st;

    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    if (stat(path, &st) != 0 || st.st_size > 0)
        return 0;
    *failure = KENG_CHECKPOINT_DAMAGED;
    damaged(errstr, errstr_size, dir, "the file is empty");
    return -1;
}

/* LMDB maps data.mdb and trusts its meta page: a page the meta names beyond the end of a
 * truncated file is a SIGBUS at the first read. mdb_env_open reads the meta pages with
 * pread, so this runs before any page is touched through the map. */
static int check_whole(keng_checkpoint_t *cp, int *failure, char *errstr, size_t errstr_size)
{
    MDB_envinfo info;
    MDB_stat mst;
    struct stat st;
    int fd = -1;

    if (mdb_env_info(cp->env, &info) != 0 || mdb_env_stat(cp->env, &mst) != 0 ||
        mdb_env_get_fd(cp->env, &fd) != 0 || fstat(fd, &st) != 0) {
        snprintf(errstr, errstr_size, "%s/data.mdb: cannot check its size", cp->dir);
        return -1;
    }
    unsigned long long need = ((unsigned long long)info.me_last_pgno + 1) * mst.ms_psize;
    if ((unsigned long long)st.st_size >= need)
        return 0;
    char why[128];
    snprintf(why, sizeof(why), "truncated: %lld bytes, its pages need %llu", (long long)st.st_size,
             need);
    *failure = KENG_CHECKPOINT_DAMAGED;
    damaged(errstr, errstr_size, cp->dir, why);
    return -1;
}

keng_checkpoint_t *keng_checkpoint_open(const char *dir, size_t map_size, char *errstr,
                                        size_t errstr_size)
{
    return keng_checkpoint_open_checked(dir, map_size, NULL, errstr, errstr_size);
}

keng_checkpoint_t *keng_checkpoint_open_checked(const char *dir, size_t map_size, int *failure,
                                                char *errstr, size_t errstr_size)
{
    keng_checkpoint_t *cp = NULL;
    MDB_txn *txn = NULL;
    int rc, why = KENG_CHECKPOINT_ERROR;

    if (make_dirs(dir) != 0) {
        snprintf(errstr, errstr_size, "%s: cannot create the state directory: %s", dir,
                 strerror(errno));
        goto fail;
    }
    cp = calloc(1, sizeof(*cp));
    if (!cp || !(cp->dir = strdup(dir))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    cp->lock_fd = -1;
    if (lock_dir(cp, &why, errstr, errstr_size) != 0)
        goto fail;
    rc = mdb_env_create(&cp->env);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if (check_not_empty(dir, &why, errstr, errstr_size) != 0)
        goto fail;
    rc = mdb_env_set_mapsize(cp->env, map_size ? map_size : DEFAULT_MAP_SIZE);
    if (rc == 0)
        rc = mdb_env_open(cp->env, dir, 0, 0600);
    if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH) {
        why = KENG_CHECKPOINT_DAMAGED;
        damaged(errstr, errstr_size, dir, mdb_strerror(rc));
        goto fail;
    }
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: cannot open the checkpoint: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if (check_whole(cp, &why, errstr, errstr_size) != 0)
        goto fail;
    rc = mdb_txn_begin(cp->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &cp->dbi);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: cannot open the checkpoint database: %s", dir,
                 mdb_strerror(rc));
        goto fail;
    }
    return cp;

fail:
    if (txn)
        mdb_txn_abort(txn);
    keng_checkpoint_close(cp);
    if (failure)
        *failure = why;
    return NULL;
}

void keng_checkpoint_close(keng_checkpoint_t *cp)
{
    if (!cp)
        return;
    if (cp->env)
        mdb_env_close(cp->env);
    if (cp->lock_fd >= 0)
        close(cp->lock_fd);
    free(cp->dir);
    free(cp);
}

/* LMDB writes on through its open descriptor after data.mdb was deleted (with its state
 * dir, say) or replaced, and every commit succeeds into a file that nobody will ever read:
 * a write is refused unless the path still names the file that is open. */
static int check_in_place(keng_checkpoint_t *cp, char *errstr, size_t errstr_size)
{
    char path[4096];
    struct stat open_st, path_st;
    int fd = -1;

    snprintf(path, sizeof(path), "%s/data.mdb", cp->dir);
    if (mdb_env_get_fd(cp->env, &fd) != 0 || fstat(fd, &open_st) != 0)
        return 0; /* nothing to compare with: LMDB says what is wrong when it writes */
    if (stat(path, &path_st) != 0 || open_st.st_nlink == 0 || path_st.st_ino != open_st.st_ino ||
        path_st.st_dev != open_st.st_dev) {
        snprintf(errstr, errstr_size,
                 "%s was deleted or replaced after keng-aggregate opened it: checkpoints "
                 "would be written nowhere; restart it to rebuild the state from Kafka",
                 path);
        return -1;
    }
    return 0;
}

keng_checkpoint_txn_t *keng_checkpoint_begin(keng_checkpoint_t *cp, char *errstr,
                                             size_t errstr_size)
{
    keng_checkpoint_txn_t *t = NULL;
    int rc;

    if (check_in_place(cp, errstr, errstr_size) != 0)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    rc = mdb_txn_begin(cp->env, NULL, 0, &t->txn);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: cannot start a checkpoint: %s", cp->dir,
                 mdb_strerror(rc));
        free(t);
        return NULL;
    }
    t->cp = cp;
    return t;
}

static int offset_key(char *buf, size_t size, const char *topic, int32_t partition)
{
    int n = snprintf(buf, size, "o/%s/%d", topic, (int)partition);

    return n < 0 || (size_t)n >= size ? -1 : n;
}

static int board_key(char *buf, size_t size, const char *board_id)
{
    int n = snprintf(buf, size, "b/%s", board_id);

    return n < 0 || (size_t)n >= size ? -1 : n;
}

static int put(keng_checkpoint_txn_t *t, const char *key, size_t key_len, const void *val,
               size_t len, char *errstr, size_t errstr_size)
{
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    MDB_val v = {.mv_size = len, .mv_data = (void *)val};
    int rc = mdb_put(t->txn, t->cp->dbi, &k, &v, 0);

    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: cannot write %.*s to the checkpoint: %s%s", t->cp->dir,
                 (int)key_len, key, mdb_strerror(rc),
                 rc == MDB_MAP_FULL ? " (raise checkpoint.map_size_mb)" : "");
        return -1;
    }
    return 0;
}

int keng_checkpoint_put_offset(keng_checkpoint_txn_t *txn, const char *topic, int32_t partition,
                               int64_t next_offset, char *errstr, size_t errstr_size)
{
    char key[KEY_MAX];
    unsigned char val[8];
    int n = offset_key(key, sizeof(key), topic, partition);
    uint64_t u = (uint64_t)next_offset;

    if (n < 0) {
        snprintf(errstr, errstr_size, "topic name too long for the checkpoint: %s", topic);
        return -1;
    }
    for (int i = 0; i < 8; i++)
        val[i] = (unsigned char)(u >> (8 * i));
    return put(txn, key, (size_t)n, val, sizeof(val), errstr, errstr_size);
}

int keng_checkpoint_put_board(keng_checkpoint_txn_t *txn, const char *board_id, const void *state,
                              size_t len, char *errstr, size_t errstr_size)
{
    char key[KEY_MAX];
    int n = board_key(key, sizeof(key), board_id);

    if (n < 0) {
        snprintf(errstr, errstr_size, "board id too long for the checkpoint: %s", board_id);
        return -1;
    }
    return put(txn, key, (size_t)n, state, len, errstr, errstr_size);
}

int keng_checkpoint_commit(keng_checkpoint_txn_t *txn, char *errstr, size_t errstr_size)
{
    int rc = mdb_txn_commit(txn->txn);

    if (rc != 0)
        snprintf(errstr, errstr_size, "%s: cannot commit the checkpoint: %s", txn->cp->dir,
                 mdb_strerror(rc));
    else
        KENG_FAILPOINT("checkpoint.commit");
    free(txn);
    return rc == 0 ? 0 : -1;
}

void keng_checkpoint_abort(keng_checkpoint_txn_t *txn)
{
    if (!txn)
        return;
    mdb_txn_abort(txn->txn);
    free(txn);
}

int keng_checkpoint_get_offset(keng_checkpoint_t *cp, const char *topic, int32_t partition,
                               int64_t *next_offset, char *errstr, size_t errstr_size)
{
    char key[KEY_MAX];
    int n = offset_key(key, sizeof(key), topic, partition);
    MDB_txn *txn = NULL;
    MDB_val k, v;
    int rc, ret = -1;

    if (n < 0) {
        snprintf(errstr, errstr_size, "topic name too long for the checkpoint: %s", topic);
        return -1;
    }
    rc = mdb_txn_begin(cp->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: cannot read the checkpoint: %s", cp->dir,
                 mdb_strerror(rc));
        goto out;
    }
    k.mv_size = (size_t)n;
    k.mv_data = key;
    rc = mdb_get(txn, cp->dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        ret = 0;
        goto out;
    }
    if (rc != 0 || v.mv_size != 8) {
        snprintf(errstr, errstr_size, "%s: cannot read %s from the checkpoint: %s", cp->dir, key,
                 rc ? mdb_strerror(rc) : "the value is not 8 bytes");
        goto out;
    }
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)((const unsigned char *)v.mv_data)[i] << (8 * i);
    *next_offset = (int64_t)u;
    ret = 1;

out:
    if (txn)
        mdb_txn_abort(txn);
    return ret;
}

/* Calls fn for every key under prefix (two bytes, such as "b/"), without the prefix. */
static int each_prefixed(keng_checkpoint_t *cp, const char *prefix, keng_checkpoint_board_fn fn,
                         void *arg, char *errstr, size_t errstr_size)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k = {.mv_size = 2, .mv_data = (void *)prefix}, v;
    int rc, ret = -1;

    rc = mdb_txn_begin(cp->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0)
        rc = mdb_cursor_open(txn, cp->dbi, &cur);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: cannot read the checkpoint: %s", cp->dir,
                 mdb_strerror(rc));
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 2 || memcmp(k.mv_data, prefix, 2) != 0)
            break;
        int r = fn((const char *)k.mv_data + 2, k.mv_size - 2, v.mv_data, v.mv_size, arg);
        if (r != 0) {
            ret = r;
            goto out;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        snprintf(errstr, errstr_size, "%s: cannot read the checkpoint: %s", cp->dir,
                 mdb_strerror(rc));
        goto out;
    }
    ret = 0;

out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    return ret;
}

int keng_checkpoint_each_board(keng_checkpoint_t *cp, keng_checkpoint_board_fn fn, void *arg,
                               char *errstr, size_t errstr_size)
{
    return each_prefixed(cp, "b/", fn, arg, errstr, errstr_size);
}

int keng_checkpoint_each_unit(keng_checkpoint_t *cp, keng_checkpoint_board_fn fn, void *arg,
                              char *errstr, size_t errstr_size)
{
    return each_prefixed(cp, "u/", fn, arg, errstr, errstr_size);
}

int keng_checkpoint_put_unit(keng_checkpoint_txn_t *txn, const char *board_id, const char *kind,
                             const void *state, size_t len, char *errstr, size_t errstr_size)
{
    char key[KEY_MAX];
    int n = snprintf(key, sizeof(key), "u/%s/%s", board_id, kind);

    if (n < 0 || (size_t)n >= sizeof(key)) {
        snprintf(errstr, errstr_size, "board id too long for the checkpoint: %s", board_id);
        return -1;
    }
    return put(txn, key, (size_t)n, state, len, errstr, errstr_size);
}

/* Reads one key in its own read transaction and hands its value to fn with the name that
 * the caller's key stands for. Returns 1 when found, 0 when absent, -1 with errstr filled. */
static int get_one(keng_checkpoint_t *cp, const char *key, size_t key_len, const char *name,
                   size_t name_len, keng_checkpoint_board_fn fn, void *arg, char *errstr,
                   size_t errstr_size)
{
    MDB_txn *txn = NULL;
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key}, v;
    int rc, ret = -1;

    rc = mdb_txn_begin(cp->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: cannot read the checkpoint: %s", cp->dir,
                 mdb_strerror(rc));
        goto out;
    }
    rc = mdb_get(txn, cp->dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        ret = 0;
        goto out;
    }
    if (rc != 0) {
        snprintf(errstr, errstr_size, "%s: cannot read %s from the checkpoint: %s", cp->dir, key,
                 mdb_strerror(rc));
        goto out;
    }
    fn(name, name_len, v.mv_data, v.mv_size, arg);
    ret = 1;

out:
    if (txn)
        mdb_txn_abort(txn);
    return ret;
}

int keng_checkpoint_get_board(keng_checkpoint_t *cp, const char *board_id,
                              keng_checkpoint_board_fn fn, void *arg, char *errstr,
                              size_t errstr_size)
{
    char key[KEY_MAX];
    int n = board_key(key, sizeof(key), board_id);

    if (n < 0) {
        snprintf(errstr, errstr_size, "board id too long for the checkpoint: %s", board_id);
        return -1;
    }
    return get_one(cp, key, (size_t)n, key + 2, (size_t)n - 2, fn, arg, errstr, errstr_size);
}

static int meta_key(char *buf, size_t size, const char *name)
{
    int n = snprintf(buf, size, "m/%s", name);

    return n < 0 || (size_t)n >= size ? -1 : n;
}

int keng_checkpoint_put_meta(keng_checkpoint_txn_t *txn, const char *name, const void *data,
                             size_t len, char *errstr, size_t errstr_size)
{
    char key[KEY_MAX];
    int n = meta_key(key, sizeof(key), name);

    if (n < 0) {
        snprintf(errstr, errstr_size, "name too long for the checkpoint: %s", name);
        return -1;
    }
    return put(txn, key, (size_t)n, data, len, errstr, errstr_size);
}

int keng_checkpoint_get_meta(keng_checkpoint_t *cp, const char *name, keng_checkpoint_board_fn fn,
                             void *arg, char *errstr, size_t errstr_size)
{
    char key[KEY_MAX];
    int n = meta_key(key, sizeof(key), name);

    if (n < 0) {
        snprintf(errstr, errstr_size, "name too long for the checkpoint: %s", name);
        return -1;
    }
    return get_one(cp, key, (size_t)n, name, strlen(name), fn, arg, errstr, errstr_size);
}
