/*
 * orch.h - the orchestrator's internal interfaces (one section per file).
 *
 * Threads and who owns what:
 *   - the command fetcher (cmdloop.c) pulls CMDS messages in batches and
 *     carries them out itself (rs_orch_engine_commands);
 *   - the nats.c thread that delivers publish acks carries out what each
 *     ack means (rs_orch_engine_puback, via appender.c): the next event, effects,
 *     the command's ack;
 *   - both do so under the one engine mutex, which guards run state, the
 *     run cache, the agent cache and the pubmap. Working where the message
 *     arrives, instead of queueing it to an engine thread, saves a thread
 *     wake-up per event (measured: futex waits and wakes were a fifth of
 *     the orchestrator's CPU);
 *   - the timer thread (timers.c) owns the TIMERS consumer and its heap;
 *   - the ops thread (rs_ops_server) reads atomics only.
 */
#ifndef ORCH_H
#define ORCH_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "rs_agent.h"
#include "rs_cmd.h"
#include "rs_config.h"
#include "rs_consume.h"
#include "rs_metrics.h"
#include "rs_logread.h"
#include "rs_nats.h"
#include "rs_run.h"
#include "rs_service.h"

/* ---- settings (main.c) ---- */
typedef struct {
	rs_config base;
	int64_t fetch_batch;      /* RS_ORCH_FETCH_BATCH */
	int64_t cache_size;       /* RS_ORCH_CACHE_SIZE */
	int64_t max_inflight;     /* RS_ORCH_MAX_INFLIGHT: commands fetched, not yet acked */
	int64_t max_deliver;      /* RS_ORCH_MAX_DELIVER: poison after this many deliveries */
	int64_t max_pending_pub;  /* RS_ORCH_MAX_PENDING_PUBLISH: async publishes in flight */
	int64_t timer_hold_ms;    /* RS_ORCH_TIMER_HOLD_MS: hold in memory if due within */
	int64_t timer_lead_ms;    /* RS_ORCH_TIMER_LEAD_MS: nak so it returns this early */
	int64_t timer_batch;      /* RS_ORCH_TIMER_BATCH */
	int64_t sweep_interval_ms; /* RS_ORCH_SWEEP_INTERVAL_MS: reconcile.c, 0 = off */
	int64_t sweep_lookback_s; /* RS_ORCH_SWEEP_LOOKBACK_S: first pass reads this far back */
	int64_t sweep_quiet_ms;   /* RS_ORCH_SWEEP_QUIET_MS: runs quiet this long are checked */
	int64_t late_ms;          /* RS_ORCH_LATE_MS: a run resting this long is checked for
	                           * overdue timers and undispatched calls; 0 = off */
	int64_t tenant_max_running; /* RS_ORCH_TENANT_MAX_RUNNING: 0 = no tenant limit */
	int64_t scheduler_tick_ms;  /* RS_ORCH_SCHEDULER_TICK_MS: 0 = no scheduler */
	int64_t schedule_grace_ms;  /* RS_ORCH_SCHEDULE_GRACE_MS: a tick this late is on time */
} orch_cfg;

/* ---- metrics (metrics.c) ---- */
typedef struct {
	rs_metric *runs_started;
	rs_metric *runs_finished[4];   /* completed, failed, cancelled, timed_out */
	rs_metric *step_duration;
	rs_metric *commands[RS_CMD__COUNT];
	rs_metric *redeliveries;
	rs_metric *dead_letters;
	rs_metric *timer_lag;
	rs_metric *timers_fired;
	rs_metric *append_latency;
	rs_metric *events_appended;
	rs_metric *conflicts;
	rs_metric *command_duration;
	rs_metric *cache_runs;
	rs_metric *inflight;
	rs_metric *busy_runs, *queued_commands, *oldest_command;
	rs_metric *timers_held;
	rs_metric *sweep_continued;
	rs_metric *sweep_events;
	rs_metric *sweep_duration;
	rs_metric *gate_admits;
	rs_metric *gate_conflicts;
	rs_metric *schedule_runs;
} orch_metrics;

extern orch_metrics rs_orch_om;
void rs_orch_metrics_init(void);

/* ---- service.c: the hooks of common/rs_service.c (main.c's table) ---- */
rs_status rs_orch_service_init(rs_service *s);
rs_status rs_orch_service_start(rs_service *s);
void rs_orch_service_drain(rs_service *s, int64_t grace_ms);
int rs_orch_service_stop(rs_service *s);
/* Account for an event that became durable (runs started/finished, steps). */
void rs_orch_metrics_event(const rs_event *ev);

/* ---- a publish result (appender.c -> engine.c) ---- */
typedef struct {
	uint64_t token;        /* which publish (appender.c) */
	uint64_t seq;          /* stream sequence */
	int dup;               /* the server saw the Nats-Msg-Id before */
	natsStatus err;        /* NATS_OK or the failure */
	jsErrCode jerr;
} puback;

/* ---- the process (main.c fills it) ---- */
typedef struct orch {
	orch_cfg cfg;
	rs_nats nats;
	kvStore *agents_kv;
	rs_nats gate_nats;         /* admission gate's own connection (gate.c) */
	kvStore *gates_kv;
	kvStore *schedules_kv;     /* scheduler.c */
	pthread_mutex_t engine_mu; /* see the top of this file */
	pthread_cond_t idle_cv;    /* signalled when inflight drops to 0 */
	int64_t pending_pubs;      /* async publishes not yet acked (engine_mu) */
	atomic_int stopping;       /* SIGTERM seen: stop fetching */
	atomic_int streams_ok;
	atomic_long inflight;      /* commands fetched and not yet acked/naked */
	struct runcache *cache;
	rs_logread runs_reads;     /* how runcache.c reads RUNS (engine_mu) */
	int runs_reads_ready;
	struct agentcache *agents;
	struct pubmap *pubs;
	struct rs_consume *cmds;    /* CMDS/orchestrator (cmdloop.c) */
	struct rs_consume *timer_in; /* TIMERS/timers (timers.c) */
	jsCtx *timer_js;           /* async publishes of due timers (timers.c) */
	struct timerfly *timer_fly; /* timers forwarded, awaiting their ack */
	struct timerheld *timer_held; /* timers due soon, held in memory (timers.c) */
	pthread_t timer_fire_thread, sweep_thread, sched_thread;
} orch;

/* ---- gate.c: admission (concurrency keys, tenant limit) ---- */
rs_status rs_orch_gate_start(orch *o);
void rs_orch_gate_stop(orch *o);
/* After a gated run's events are durable: a queued run joins its gates
 * (admitted: run.admit sent), a finished one leaves them (the next in line
 * admitted; redelivered: the command came again after a crash, so the
 * admits of the slot holders are re-sent too). No-op for other runs.
 * Synchronous; engine thread. */
rs_status rs_orch_gate_settle(orch *o, const rs_run *r, int redelivered);

/* ---- scheduler.c: schedules fire runs ---- */
rs_status rs_orch_scheduler_start(orch *o);   /* after rs_orch_gate_start (its connection) */
void rs_orch_scheduler_join(orch *o);

rs_status rs_orch_reconcile_start(orch *o);
rs_status rs_orch_reconcile_continue(orch *o, const char *tenant, const char *run_id, int64_t runseq);
void rs_orch_reconcile_join(orch *o);

/* ---- cmdloop.c: the CMDS fetcher ---- */
rs_status rs_orch_cmdloop_start(orch *o);
/* Stop taking commands and wait for the loop (SIGTERM); free after the
 * engine has drained. */
void rs_orch_cmdloop_join(orch *o);
void rs_orch_cmdloop_free(orch *o);

/* ---- engine.c: decide, append, effects, ack ---- */
rs_status rs_orch_engine_init(orch *o);
void rs_orch_engine_destroy(orch *o);
/* Carry out fetched commands (takes the messages; the fetcher counted
 * them in o->inflight). Takes engine_mu. */
void rs_orch_engine_commands(orch *o, natsMsg **msgs, int n);
/* What a publish ack means. Takes engine_mu (the _locked one: held). */
void rs_orch_engine_puback(orch *o, puback *pa);
void rs_orch_engine_puback_locked(orch *o, puback *pa);
/* Expire lost pub acks (rs_orch_appender_expire); called by cmdloop's ticker. */
void rs_orch_engine_expire(orch *o);
/* Shutdown: wait until every fetched command is finished or 3/4 of the
 * grace period passed, then nak what is left. */
void rs_orch_engine_drain(orch *o);

/* ---- runcache.c: hot runs in memory (LRU), cold runs rebuilt ---- */
typedef struct pending_cmd {
	natsMsg *msg;
	rs_cmd cmd;
	uint64_t ndelivered;
	int64_t t0_us;
	struct pending_cmd *next;
} pending_cmd;

typedef struct orun {
	char key[120];             /* "<tenant>.<run_id>" */
	char tenant[72], run_id[40];
	rs_run *state;
	uint64_t last_seq;         /* stream seq of the run's last event; 0: none */
	const rs_agent *agent;     /* borrowed from the agent cache */
	int busy;                  /* a command is being carried out */
	int stale;                 /* state unknown (failed publish): reload first */
	int fresh;                 /* state read from the log for this command */
	pending_cmd *cur;          /* the command in progress */
	pending_cmd *waitq, *waitq_tail;
	rs_decision dec;
	size_t next_ev;            /* index in dec.events of the event in flight */
	int64_t sent_us;           /* when it was sent (append latency) */
	int effects_left;          /* effect publishes not yet acked */
	int effects_failed;
	int attempts;              /* decisions for this command (conflicts) */
	struct orun *lprev, *lnext;
} orun;

struct runcache *rs_orch_runcache_new(size_t cap);
void rs_orch_runcache_free(struct runcache *c);
orun *rs_orch_runcache_get(struct runcache *c, const char *tenant, const char *run_id);
/* A new, empty, uncached-in-log entry (a run.start assumed new). */
orun *rs_orch_runcache_add_empty(struct runcache *c, const char *tenant, const char *run_id);
/* Rebuild the entry's state from the log (runs.<tenant>.<run_id>).
 * RS_ENOTFOUND: the run has no events. */
rs_status rs_orch_runcache_reload(orch *o, orun *r);
/* *current = 1 if the log has no event after r->last_seq (one direct get). */
rs_status rs_orch_runcache_check_current(orch *o, orun *r, int *current);
void rs_orch_runcache_touch(struct runcache *c, orun *r);
void rs_orch_runcache_remove(struct runcache *c, orun *r);
/* Evict least recently used idle entries above capacity. */
void rs_orch_runcache_trim(struct runcache *c);
/* What the engine holds: runs busy with a command, commands queued behind
 * them, and the busy run whose command arrived first (NULL: none). */
orun *rs_orch_runcache_oldest(struct runcache *c, size_t *busy, size_t *queued);
size_t rs_orch_runcache_count(const struct runcache *c);
/* Shutdown: nak every command still held (another instance takes them). */
void rs_orch_runcache_nak_all(struct runcache *c);

/* ---- agents.c: immutable agent versions, cached forever ---- */
struct agentcache *rs_orch_agentcache_new(void);
void rs_orch_agentcache_free(struct agentcache *a);
/* version NULL: resolve <tenant>.<name>.latest first (not cached: it moves). */
rs_status rs_orch_agents_get(orch *o, const char *tenant, const char *name, const char *version,
                     const rs_agent **out, char *err, size_t cap);

/* ---- appender.c: JetStream publishes and their acks ---- */
typedef enum { PUB_EVENT, PUB_EFFECT } pub_kind;
struct pubmap *rs_orch_pubmap_new(void);
void rs_orch_pubmap_free(struct pubmap *m);
/* Subscribe to the pub-ack inbox; after the connection is up. */
rs_status rs_orch_appender_start(orch *o);
/* Publish data on subj (Runstream-Type: type; Content-Type of a CloudEvent
 * if cloudevent; Nats-Msg-Id if msg_id; Nats-Expected-Last-Subject-
 * Sequence if expect >= 0, "0" meaning "none yet") for r; the pub ack
 * comes back as an rs_orch_engine_puback. data is copied. Engine mutex held.
 * RS_EUNAVAIL above RS_ORCH_MAX_PENDING_PUBLISH publishes in flight. */
rs_status rs_orch_appender_send(orch *o, orun *r, pub_kind kind, const char *subj, const char *data,
                        size_t len, const char *type, int cloudevent, const char *msg_id,
                        int64_t expect);
/* Who sent publish `token` (and what kind); removes it from the map. */
orun *rs_orch_pubmap_take(struct pubmap *m, uint64_t token, pub_kind *kind);
/* Fail (NATS_TIMEOUT) every publish unanswered for older_than_ms: an ack
 * lost with a connection. Engine mutex held. */
void rs_orch_appender_expire(orch *o, int64_t older_than_ms);

/* ---- effects.c: timers to TIMERS, tool calls to TOOLCALLS ---- */
/* Publish every effect of d for r; returns how many were sent. */
rs_status rs_orch_effects_send(orch *o, orun *r, const rs_decision *d, int *nsent);
/* A timer.fire that arrived before its due time (clock skew between
 * instances): put it back on TIMERS. One effect publish. */
rs_status rs_orch_effects_requeue_timer(orch *o, orun *r, const rs_cmd *fire);
/* run.continue on a run at rest: what it owes for over RS_ORCH_LATE_MS. */
rs_status rs_orch_effects_send_late(orch *o, orun *r, int *nsent);
/* A signal or cancel applied: delete its copy in KV runs (not awaited). */
void rs_orch_effects_forget_copy(orch *o, const rs_cmd *c);
/* A KV delete marker on subj ("$KV.<bucket>.<key>"), not awaited. */
void rs_orch_kv_delete(orch *o, const char *subj);
/* Append ev for r: encode (one reused buffer: engine mutex held) and
 * publish with Nats-Expected-Last-Subject-Sequence = r->last_seq. */
rs_status rs_orch_event_send(orch *o, orun *r, const rs_event *ev);

/* ---- dlq.c: poison handling ---- */
/* Dead-letter the command message with a reason and terminate it. */
void rs_orch_poison(orch *o, natsMsg *msg, const char *run_id, const char *reason);
/* A child's run.start that is dead-lettered: tell its parent (child.done
 * "failed", child_not_started) so the parent's step does not wait for ever.
 * Nothing for any other command. */
void rs_orch_poison_tell_parent(orch *o, const rs_cmd *c, const char *reason);
/* The trace id (32 hex) of a traceparent into out[33], "" if none. */
void rs_orch_trace_id_of(const char *traceparent, char out[33]);

/* ---- timers.c ---- */
rs_status rs_orch_timers_start(orch *o);
void rs_orch_timers_join(orch *o);
/* Free what rs_orch_timers_start made; after the connection is closed. */
void rs_orch_timers_free(orch *o);

#endif
