/*
 * bench-orchestrator - load generator and meter for rs-orchestrator.
 *
 *   bench-orchestrator raw    N   async JetStream publish rate, 250-byte
 *                                 messages, scratch stream BENCHRAW
 *   bench-orchestrator runs   N   N run.start commands of a 3-step transform
 *                                 agent straight into CMDS; runs/s and
 *                                 events/s until RUNS holds all 9 N events
 *                                 (stream state polled every 10 ms), then
 *                                 every run checked: its last event is
 *                                 run.completed with runseq 9.
 *                                 BENCH_WATCH=live: also one live
 *                                 watcher (an ordered consumer on RUNS,
 *                                 as the API has) counting completions
 *   bench-orchestrator timers N   N runs that each sleep 2-10 s; lateness of
 *                                 timer.fired (event time and observed time
 *                                 minus due_at), p50/p99/max; observed
 *                                 through an ordered consumer on RUNS
 * RS_NATS_URL names the server. Output: one "key value" line per result
 * (bench/orchestrator/run.sh turns them into a table). Not a test.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rs_agent.h"
#include "rs_cmd.h"
#include "rs_config.h"
#include "rs_event.h"
#include "rs_id.h"
#include "rs_json.h"
#include "rs_nats.h"
#include "rs_time.h"

#define TENANT "bench"

static atomic_long acked, completed, events_seen, fired;
static int64_t *lat_event, *lat_seen;   /* timer lateness samples, ms */
static atomic_long nlat;
static int64_t t_last_done;

static void
die(const char *what)
{
	fprintf(stderr, "bench-orchestrator: %s\n", what);
	exit(1);
}

static void
on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	if (pa != NULL)
		atomic_fetch_add(&acked, 1);
	natsMsg_Destroy(msg);
}

static void
connect_js(rs_nats *n)
{
	jsOptions jo;

	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 65536;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.StallWait = 10000;
	if (rs_nats_connect(n, rs_env_str("RS_NATS_URL", "nats://127.0.0.1:4222"), "bench",
	                    &jo, 5000) != RS_OK)
		die("cannot connect");
}

static void
bench_raw(rs_nats *n, long count)
{
	jsStreamConfig sc;
	const char *subj[] = { "benchraw.>" };
	char payload[250];
	int64_t t0, t1;

	jsStreamConfig_Init(&sc);
	sc.Name = "BENCHRAW";
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	if (js_AddStream(NULL, n->js, &sc, NULL, NULL) != NATS_OK)
		die("cannot create stream BENCHRAW");
	memset(payload, 'x', sizeof(payload));
	t0 = rs_mono_us();
	for (long i = 0; i < count; i++) {
		char s[64];
		snprintf(s, sizeof(s), "benchraw.%ld", i % 1000);
		if (js_PublishAsync(n->js, s, payload, sizeof(payload), NULL) != NATS_OK)
			die("publish failed");
	}
	js_PublishAsyncComplete(n->js, NULL);
	t1 = rs_mono_us();
	printf("raw_msgs %ld\nraw_rate %.0f\n", (long)atomic_load(&acked),
	       (double)atomic_load(&acked) * 1e6 / (double)(t1 - t0));
	js_DeleteStream(n->js, "BENCHRAW", NULL, NULL);
}

/* Store def in KV agents as <tenant>.<name>.<version>; returns version. */
static void
push_agent(rs_nats *n, kvStore *kv, const char *text, char ver[17])
{
	json_t *def;
	char err[200], key[200], *canon;
	uint64_t rev;

	if (rs_json_parse(text, strlen(text), &def, err, sizeof(err)) != RS_OK)
		die(err);
	rs_agent_version_of(def, ver);
	canon = rs_json_dump(def);
	snprintf(key, sizeof(key), TENANT ".%s.%s",
	         json_string_value(json_object_get(def, "name")), ver);
	if (kvStore_PutString(&rev, kv, key, canon) != NATS_OK)
		die("kv put");
	free(canon);
	json_decref(def);
}

static void
on_live(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	const char *type = NULL;
	int timers = closure != NULL;

	atomic_fetch_add(&events_seen, 1);
	natsMsgHeader_Get(msg, "Runstream-Type", &type);
	if (type != NULL && strcmp(type, "run.completed") == 0) {
		atomic_fetch_add(&completed, 1);
		t_last_done = rs_mono_us();
	}
	if (timers && type != NULL && strcmp(type, "timer.fired") == 0) {
		rs_event ev;
		char err[128];
		int64_t now = rs_now_ms();
		if (rs_event_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &ev, err,
		                    sizeof(err)) == RS_OK) {
			long i = atomic_fetch_add(&nlat, 1);
			lat_event[i] = ev.time_ms - ev.d.timer_fired.due_at;
			lat_seen[i] = now - ev.d.timer_fired.due_at;
			rs_event_free(&ev);
		}
		atomic_fetch_add(&fired, 1);
	}
	natsMsg_Destroy(msg);
}

/* A live watcher of tenant bench: an ordered consumer on RUNS from now on
 * (what the API does), delivering to on_live. */
static void
watch_runs(rs_nats *n, void *closure, natsSubscription **sub)
{
	jsSubOptions so;

	jsSubOptions_Init(&so);
	so.Stream = "RUNS";
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverNew;
	if (js_Subscribe(sub, n->js, "runs." TENANT ".>", on_live, closure, NULL, &so, NULL) != NATS_OK)
		die("cannot open an ordered consumer on RUNS");
	natsSubscription_SetPendingLimits(*sub, -1, -1);
}

static void
start_run(rs_nats *n, const char *agent, const char *ver, char run_id[40])
{
	rs_cmd c;
	char *buf, subj[160], id[160];
	size_t len;
	natsMsg *m = NULL;
	jsPubOptions po;

	memset(&c, 0, sizeof(c));
	c.type = RS_CMD_RUN_START;
	rs_id_uuidv7(c.run_id);
	if (run_id != NULL)
		memcpy(run_id, c.run_id, 40);
	snprintf(c.tenant, sizeof(c.tenant), TENANT);
	c.agent = (char *)agent;
	c.version = (char *)ver;
	c.input = json_pack("{s:i}", "n", 1);
	if (rs_cmd_encode(&c, &buf, &len) != RS_OK)
		die("encode");
	json_decref(c.input);
	rs_cmd_subject(c.tenant, c.run_id, subj, sizeof(subj));
	rs_cmd_msg_id(&c, id, sizeof(id));
	rs_nats_msg(&m, subj, buf, (int)len, "Runstream-Type", "run.start", NULL);
	free(buf);
	jsPubOptions_Init(&po);
	po.MsgId = id;
	if (js_PublishMsgAsync(n->js, &m, &po) != NATS_OK)
		die("publish run.start");
}

static void
wait_for(atomic_long *counter, long want, int64_t timeout_ms)
{
	int64_t deadline = rs_mono_ms() + timeout_ms;

	while (atomic_load(counter) < want && rs_mono_ms() < deadline)
		usleep(1000);
	if (atomic_load(counter) < want)
		fprintf(stderr, "bench-orchestrator: only %ld of %ld after %lld ms\n",
		        atomic_load(counter), want, (long long)timeout_ms);
}

static uint64_t
runs_msgs(rs_nats *n)
{
	jsStreamInfo *si = NULL;
	uint64_t msgs;

	if (js_GetStreamInfo(&si, n->js, "RUNS", NULL, NULL) != NATS_OK)
		die("stream info RUNS");
	msgs = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	return msgs;
}

/* Every run's last event must be its 9th, run.completed: the count on the
 * stream alone could hide a run with 8 events and another with 10. */
static long
check_runs(rs_nats *n, char (*ids)[40], long count)
{
	long ok = 0;

	for (long i = 0; i < count; i++) {
		char subj[160];
		const char *type = NULL;
		natsMsg *m = NULL;
		rs_event ev;
		char err[128];

		rs_event_subject(TENANT, ids[i], subj, sizeof(subj));
		if (js_GetLastMsg(&m, n->js, "RUNS", subj, NULL, NULL) != NATS_OK)
			continue;
		natsMsgHeader_Get(m, "Runstream-Type", &type);
		if (type != NULL && strcmp(type, "run.completed") == 0 &&
		    rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err,
		                    sizeof(err)) == RS_OK) {
			if (ev.runseq == 9)
				ok++;
			rs_event_free(&ev);
		}
		natsMsg_Destroy(m);
	}
	return ok;
}

static void
bench_runs(rs_nats *n, kvStore *kv, long count)
{
	natsSubscription *sub = NULL;
	char ver[17], (*ids)[40] = calloc((size_t)count, 40);
	const char *watch = rs_env_str("BENCH_WATCH", "log");
	uint64_t base, want, have = 0;
	int64_t t0, t_done, deadline;
	double secs;

	if (ids == NULL)
		die("out of memory");
	push_agent(n, kv, "{\"name\":\"three\",\"steps\":["
	           "{\"id\":\"a\",\"kind\":\"transform\",\"value\":{\"x\":\"{{input.n}}\"}},"
	           "{\"id\":\"b\",\"kind\":\"transform\",\"value\":{\"y\":\"{{steps.a.output.x}}\"}},"
	           "{\"id\":\"c\",\"kind\":\"transform\",\"value\":{\"z\":\"{{steps.b.output.y}}\"}}],"
	           "\"output\":\"{{steps.c.output}}\"}", ver);
	if (strcmp(watch, "live") == 0)
		watch_runs(n, NULL, &sub);
	base = runs_msgs(n);
	want = base + 9 * (uint64_t)count;
	t0 = rs_mono_us();
	for (long i = 0; i < count; i++)
		start_run(n, "three", ver, ids[i]);
	js_PublishAsyncComplete(n->js, NULL);
	printf("inject_rate %.0f\n", (double)count * 1e6 / (double)(rs_mono_us() - t0));
	deadline = rs_mono_ms() + 600000;
	while ((have = runs_msgs(n)) < want && rs_mono_ms() < deadline)
		usleep(10000);   /* each poll is a STREAM.INFO the server answers */
	t_done = rs_mono_us();
	if (have < want)
		fprintf(stderr, "bench-orchestrator: only %llu of %llu events after 600 s\n",
		        (unsigned long long)(have - base), (unsigned long long)(want - base));
	secs = (double)(t_done - t0) / 1e6;
	printf("watch %s\nruns %ld\nevents %llu\nruns_per_s %.0f\nevents_per_s %.0f\n", watch, count,
	       (unsigned long long)(have - base), (double)count / secs,
	       (double)(have - base) / secs);
	if (sub != NULL) {
		wait_for(&completed, count, 10000);
		printf("live_completed %ld\nlive_events %ld\n", atomic_load(&completed),
		       atomic_load(&events_seen));
		natsSubscription_Unsubscribe(sub);
		natsSubscription_Destroy(sub);
	}
	printf("runs_completed %ld\n", check_runs(n, ids, count));
	free(ids);
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void
report(const char *name, int64_t *v, long k)
{
	if (k == 0)
		return;
	qsort(v, (size_t)k, sizeof(*v), cmp64);
	printf("%s_min_ms %lld\n%s_p50_ms %lld\n%s_p99_ms %lld\n%s_max_ms %lld\n",
	       name, (long long)v[0], name, (long long)v[k / 2],
	       name, (long long)v[(k * 99) / 100], name, (long long)v[k - 1]);
}

static void
bench_timers(rs_nats *n, kvStore *kv, long count)
{
	natsSubscription *sub = NULL;
	char vers[9][17], text[256];

	/* Nine agents sleeping 2..10 s; each run picks one plus jitter via
	 * its start time, so due times spread over ~8 s. */
	for (int i = 0; i < 9; i++) {
		snprintf(text, sizeof(text), "{\"name\":\"nap%d\",\"steps\":[{\"id\":\"s\","
		         "\"kind\":\"sleep\",\"duration_ms\":%d}]}", i, 2000 + i * 1000 + (i * 37) % 1000);
		push_agent(n, kv, text, vers[i]);
	}
	lat_event = calloc((size_t)count, sizeof(int64_t));
	lat_seen = calloc((size_t)count, sizeof(int64_t));
	watch_runs(n, (void *)1, &sub);
	srand(42);
	for (long i = 0; i < count; i++) {
		char name[16];
		int k = rand() % 9;
		snprintf(name, sizeof(name), "nap%d", k);
		start_run(n, name, vers[k], NULL);
	}
	js_PublishAsyncComplete(n->js, NULL);
	wait_for(&fired, count, 120000);
	wait_for(&nlat, count, 1000);
	printf("timers %ld\ntimers_fired %ld\n", count, atomic_load(&fired));
	report("lateness_event", lat_event, atomic_load(&nlat));
	report("lateness_observed", lat_seen, atomic_load(&nlat));
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
	free(lat_event);
	free(lat_seen);
}

int
main(int argc, char **argv)
{
	rs_nats n;
	kvStore *kv = NULL;
	long count;

	if (argc != 3 || (count = atol(argv[2])) <= 0)
		die("usage: bench-orchestrator raw|runs|timers N");
	connect_js(&n);
	if (strcmp(argv[1], "raw") == 0) {
		bench_raw(&n, count);
	} else {
		if (js_KeyValue(&kv, n.js, "agents") != NATS_OK)
			die("no KV agents (run runctl streams apply)");
		if (strcmp(argv[1], "runs") == 0)
			bench_runs(&n, kv, count);
		else if (strcmp(argv[1], "timers") == 0)
			bench_timers(&n, kv, count);
		else
			die("unknown mode");
		kvStore_Destroy(kv);
	}
	rs_nats_close(&n, 5000);
	nats_Close();
	return 0;
}
