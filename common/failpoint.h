/* Named crash points for the fault tests, as databases have them (fail points): each marks a
 * place just after keng made something durable, where a crash must lose nothing acknowledged
 * and count nothing twice.
 *
 * They exist only in the test copies of the programs (build/test-bin/, compiled with
 * KENG_FAILPOINTS); in every other build KENG_FAILPOINT(name) is nothing at all. A test copy
 * reads KENG_FAILPOINT=NAME[:N] from its environment and, at the N-th time (default the
 * first) the point NAME is reached, logs one line and kills its own process with SIGKILL:
 * no exit handler, no flush, nothing after the point happens, as in a power cut.
 *
 * The points (docs/DESIGN.md, "Crash points"):
 *   checkpoint.commit    keng-aggregate: an LMDB checkpoint transaction has committed
 *   board-counts.unit    keng-aggregate: antt.board-counts acknowledged a unit's counts
 *   board-counts.mark    keng-aggregate: antt.board-counts acknowledged a partition mark
 *   alerts.delivered     keng-aggregate: antt.alerts acknowledged an alert transition
 *   registry.switch      keng-aggregate: half-way through a registry switch (counts switched,
 *                        alerts and answers not yet)
 *   ingest.flush         keng-ingest: the producer's flush at a stop has returned
 *   ingest.answered      keng-ingest: a 202 has been handed to the socket
 *
 * Thread: any; the hit count is atomic. */
#ifndef KENG_FAILPOINT_H
#define KENG_FAILPOINT_H

#ifdef KENG_FAILPOINTS
void keng_failpoint(const char *name);
#define KENG_FAILPOINT(name) keng_failpoint(name)
#else
#define KENG_FAILPOINT(name) ((void)0)
#endif

#endif
