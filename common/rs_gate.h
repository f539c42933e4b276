/*
 * rs_gate.h - the admission gate's state, as pure functions: who holds a
 * slot of a concurrency key (or of a tenant's running-run limit) and who
 * waits, first come first served.
 *
 * One gate is one KV entry of the bucket `gates` (streams/kv.gates.json):
 *   <tenant>.k.<sha256(key)[0..32]>  a concurrency key of the tenant
 *   <tenant>.tenant                  the tenant's limit on running runs
 * holding {"limit": n, "running": [run_id...], "queue": [run_id...]}.
 * The orchestrator (services/orchestrator/gate.c) changes an entry only by
 * compare-and-set on its revision, so any number of instances share it;
 * the api reads it to show a queued run's position. Nothing here does I/O.
 *
 * Ownership: an rs_gate holds new references (rs_gate_free).
 */
#ifndef RS_GATE_H
#define RS_GATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "rs_status.h"

/* Most run ids one gate holds (running + queue): an entry must stay well
 * under the 1 MiB KV value (a run id is 39 bytes in it). */
#define RS_GATE_MAX_IDS 20000

typedef struct {
	int64_t limit;
	json_t *running;   /* array of run id strings, oldest first */
	json_t *queue;     /* array of run id strings, FIFO */
} rs_gate;

/* The KV key of a gate: key NULL = the tenant's gate. */
void rs_gate_kv_key(const char *tenant, const char *key, char *buf, size_t cap);

/* An empty gate (buf NULL) or the entry's JSON. RS_EINVAL if malformed. */
rs_status rs_gate_parse(const char *buf, size_t len, rs_gate *g);
char *rs_gate_dump(const rs_gate *g);   /* malloc'd, compact */
void rs_gate_free(rs_gate *g);

typedef enum {
	RS_GATE_ADMITTED = 0,  /* holds a slot (newly, or already) */
	RS_GATE_QUEUED,        /* waits (newly, or already) */
	RS_GATE_FULL           /* not added: RS_GATE_MAX_IDS reached */
} rs_gate_result;

/* Add run_id (idempotent): a slot if fewer than limit run, else the end of
 * the queue. *changed: the entry must be written back. The gate's limit
 * becomes limit (the newest definition's). */
rs_gate_result rs_gate_join(rs_gate *g, int64_t limit, const char *run_id, int *changed);

/* Remove run_id from wherever it is (idempotent), then give free slots to
 * the head of the queue: their ids are appended to promoted (an array).
 * Returns 1 if run_id was there, 0 if not. *changed as above. */
int rs_gate_leave(rs_gate *g, int64_t limit, const char *run_id, json_t *promoted,
                  int *changed);

/* 0: holds a slot; k >= 1: k-th in the queue; -1: not in this gate. */
int64_t rs_gate_position(const rs_gate *g, const char *run_id);

#endif
