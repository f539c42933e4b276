/*
 * floor.c - bench-e2e-floor: the raw limits of the path one run takes, on
 * the same nats-server as the stack, for bench/e2e (bench.mjs prints them
 * beside the whole-stack figures).
 *
 * Why in C: these are floors, so they must not carry a Node event loop's
 * overhead; the services are C clients of the same libnats.
 *
 *   bench-e2e-floor <events per run> <bytes per event> <runs> [samples]
 *
 * Measures, in order, with the credentials of RS_NATS_USER/RS_NATS_PASSWORD
 * (the admin user) on RS_NATS_URL:
 *   core_rtt       core request-reply round trip (requester and responder
 *                  on two connections), sequential
 *   oneway         one message from one connection to a subscriber on
 *                  another, sequential: a hop that delivers without a reply
 * both twice: "_asap" with natsOptions_SetSendAsap (a publish is written to
 * the socket at once: the floor), and "_buffered" with nats.c's default,
 * which is how every service connects today (rs_nats_connect): nats.c's
 * flusher thread, once signalled, waits 1 ms "to accumulate more" before it
 * writes (conn.c, _flusher), so every plain publish, reply and ack of a
 * lone message leaves about 1 ms late. Requests (and so synchronous
 * JetStream publishes) are flushed at once either way.
 *   js_sync        a JetStream publish awaited for its ack (file storage),
 *                  sequential: what an append or a KV write costs at best
 *   async          <runs> x <events per run> messages of <bytes per event>
 *                  published without waiting (window of in-flight acks),
 *                  one subject per run and a Nats-Msg-Id per message as the
 *                  orchestrator's appends have: msg/s and so runs/s
 * into a scratch stream E2EFLOOR (file storage, like RUNS), deleted at the
 * end. Output: one "key value" line per figure (latencies in us).
 *
 * On a cluster (bench/e2e --cluster) RS_NATS_URL is the list of every
 * node, as the services are given it, and E2EFLOOR_REPLICAS=3 makes the
 * scratch stream R3 like RUNS there; the two connections of the core
 * figures land on whichever nodes nats.c picks from the list, as the
 * services' do, so a core hop may cross a route.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "rs_config.h"
#include "rs_nats.h"
#include "rs_time.h"

#define STREAM "E2EFLOOR"
#define MAX_SAMPLES 100000
#define MAX_EVENT_BYTES (64 * 1024)

static atomic_long acked, failed;

static void
die(const char *what)
{
	fprintf(stderr, "bench-e2e-floor: %s: %s\n", what, nats_GetLastError(NULL));
	exit(1);
}

/* The server list as the services take it (a cluster's list never
 * connects through natsOptions_SetURL in nats.c 3.4.1). */
static natsStatus
set_servers(natsOptions *o, const char *list)
{
	if (rs_nats_set_servers(o, list) != RS_OK) {
		fprintf(stderr, "RS_NATS_URL is not a list of server URLs: %s\n", list);
		exit(2);
	}
	return NATS_OK;
}

/* A connection as the services make one (user and password from the
 * environment), but with the send-asap choice rs_nats_connect does not
 * offer. js may be NULL. */
static natsConnection *
floor_connect(const char *url, const char *name, int asap, jsOptions *jo, jsCtx **js)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	const char *user = rs_env_str("RS_NATS_USER", NULL), *pass = rs_env_str("RS_NATS_PASSWORD", NULL);

	if (natsOptions_Create(&o) != NATS_OK || set_servers(o, url) != NATS_OK ||
	    natsOptions_SetName(o, name) != NATS_OK || natsOptions_SetSendAsap(o, asap) != NATS_OK)
		die("options");
	if (user != NULL && pass != NULL) {
		char prefix[128];

		snprintf(prefix, sizeof(prefix), "_INBOX_%s", user);
		if (natsOptions_SetUserInfo(o, user, pass) != NATS_OK ||
		    natsOptions_SetCustomInboxPrefix(o, prefix) != NATS_OK)
			die("credentials");
	}
	if (natsConnection_Connect(&nc, o) != NATS_OK)
		die("connect");
	natsOptions_Destroy(o);
	if (js != NULL && natsConnection_JetStream(js, nc, jo) != NATS_OK)
		die("JetStream context");
	return nc;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Print p50/p99/mean of n samples (sorted in place) as
 * "<name><suffix>_p50_us ...". */
static void
report(const char *name, const char *suffix, int64_t *v, int n)
{
	double sum = 0;

	qsort(v, (size_t)n, sizeof(*v), cmp_i64);
	for (int i = 0; i < n; i++)
		sum += (double)v[i];
	printf("%s%s_p50_us %lld\n%s%s_p99_us %lld\n%s%s_mean_us %.1f\n", name, suffix,
	       (long long)v[n / 2], name, suffix, (long long)v[(n * 99) / 100], name, suffix,
	       sum / n);
}

static void
on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)sub;
	(void)closure;
	if (natsMsg_GetReply(msg) != NULL)
		natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg),
		                       natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

static void
on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	(void)closure;
	if (pa != NULL && pae == NULL)
		atomic_fetch_add(&acked, 1);
	else
		atomic_fetch_add(&failed, 1);
	natsMsg_Destroy(msg);
}

/* Two sequential latency figures over core NATS between two new
 * connections (send-asap or buffered): request-reply (a responder on the
 * second) and one-way (a synchronous subscriber on the second). */
static void
core_latencies(const char *url, int asap, int64_t *v, int samples)
{
	natsConnection *a = floor_connect(url, "e2e-floor-req", asap, NULL, NULL);
	natsConnection *b = floor_connect(url, "e2e-floor-resp", asap, NULL, NULL);
	const char *suffix = asap ? "_asap" : "_buffered";
	natsSubscription *resp = NULL, *sink = NULL;
	natsMsg *m = NULL;
	char subj[128];
	const char *ping = "0123456789abcdef";

	snprintf(subj, sizeof(subj), "e2efloor.rtt");
	/* The sink first: a node forwards interest over its routes in order,
	 * so once a request reaches the responder the sink's is known too. */
	if (natsConnection_SubscribeSync(&sink, b, "e2efloor.oneway") != NATS_OK ||
	    natsConnection_Subscribe(&resp, b, subj, on_request, NULL) != NATS_OK ||
	    natsConnection_FlushTimeout(b, 5000) != NATS_OK)
		die("subscribe");
	/* On a cluster a and b may be on different nodes: b's flush says its
	 * node has the subscriptions, not that a's node heard of them yet
	 * (until then a request gets "no responders"). */
	for (int tries = 0;; tries++) {
		natsStatus st = natsConnection_RequestString(&m, a, subj, ping, 200);

		if (st == NATS_OK)
			break;
		if ((st != NATS_NO_RESPONDERS && st != NATS_TIMEOUT) || tries == 50)
			die("request (waiting for the responder's interest)");
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
	natsMsg_Destroy(m);
	for (int i = -200; i < samples; i++) {
		int64_t t0 = rs_mono_us();

		if (natsConnection_RequestString(&m, a, subj, ping, 5000) != NATS_OK)
			die("request");
		if (i >= 0)
			v[i] = rs_mono_us() - t0;
		natsMsg_Destroy(m);
	}
	report("core_rtt", suffix, v, samples);
	for (int i = -200; i < samples; i++) {
		int64_t t0 = rs_mono_us();

		if (natsConnection_PublishString(a, "e2efloor.oneway", ping) != NATS_OK ||
		    natsSubscription_NextMsg(&m, sink, 5000) != NATS_OK)
			die("one-way message");
		if (i >= 0)
			v[i] = rs_mono_us() - t0;
		natsMsg_Destroy(m);
	}
	report("oneway", suffix, v, samples);
	natsSubscription_Destroy(resp);
	natsSubscription_Destroy(sink);
	natsConnection_Destroy(a);
	natsConnection_Destroy(b);
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsOptions jo;
	jsStreamConfig sc;
	const char *subjects[] = { "e2efloor.>" };
	char *payload = NULL;
	int64_t *v = NULL, t0, dt;
	long events, bytes, runs, samples = 2000, total;
	int64_t replicas = 1;
	const char *url = rs_env_str("RS_NATS_URL", "nats://127.0.0.1:4222");

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: %s <events per run> <bytes per event> <runs> [samples]\n",
		        argv[0]);
		return 2;
	}
	events = strtol(argv[1], NULL, 10);
	bytes = strtol(argv[2], NULL, 10);
	runs = strtol(argv[3], NULL, 10);
	if (argc == 5)
		samples = strtol(argv[4], NULL, 10);
	if (events < 1 || events > 1000 || bytes < 1 || bytes > MAX_EVENT_BYTES || runs < 1 ||
	    runs > 1000000 || samples < 10 || samples > MAX_SAMPLES) {
		fprintf(stderr, "bench-e2e-floor: events 1..1000, bytes 1..%d, runs 1..1000000, "
		        "samples 10..%d\n", MAX_EVENT_BYTES, MAX_SAMPLES);
		return 2;
	}
	if (rs_env_int("E2EFLOOR_REPLICAS", 1, 1, 5, &replicas) != RS_OK) {
		fprintf(stderr, "bench-e2e-floor: E2EFLOOR_REPLICAS must be 1..5\n");
		return 2;
	}
	total = events * runs;
	/* Messages freed where they are destroyed, as in the services
	 * (common/rs_natsgc.c); referencing it also links it in. */
	printf("natsgc_ours %d\nreplicas %lld\n", rs_natsgc_active(), (long long)replicas);
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 16384;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.StallWait = 10000;
	/* Publishing: buffered (the default), for throughput. */
	nc = floor_connect(url, "e2e-floor-pub", 0, &jo, &js);
	v = malloc(sizeof(*v) * (size_t)samples);
	payload = malloc((size_t)bytes);
	if (v == NULL || payload == NULL)
		abort();
	memset(payload, 'x', (size_t)bytes);

	core_latencies(url, 1, v, (int)samples);
	core_latencies(url, 0, v, (int)samples);

	jsStreamConfig_Init(&sc);
	sc.Name = STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = replicas;
	js_DeleteStream(js, STREAM, NULL, NULL);   /* a leftover of an aborted run */
	if (js_AddStream(NULL, js, &sc, NULL, NULL) != NATS_OK)
		die("create stream " STREAM);

	/* Sequential JetStream publishes, each awaited: an append's round trip. */
	for (long i = -200; i < samples; i++) {
		char subj[64];
		int64_t s = rs_mono_us();

		snprintf(subj, sizeof(subj), "e2efloor.sync.%ld", i + 200);
		if (js_Publish(NULL, js, subj, payload, (int)bytes, NULL, NULL) != NATS_OK)
			die("sync publish");
		if (i >= 0)
			v[i] = rs_mono_us() - s;
	}
	report("js_sync", "", v, (int)samples);

	/* The events of `runs` runs, pipelined: one subject per run, a msg id
	 * per event (the server keeps each in its de-duplication window, as it
	 * does for the orchestrator's appends). */
	t0 = rs_mono_us();
	for (long r = 0; r < runs; r++) {
		char subj[64];

		snprintf(subj, sizeof(subj), "e2efloor.bench.r%ld", r);
		for (long e = 0; e < events; e++) {
			natsMsg *m = NULL;
			char id[64];

			snprintf(id, sizeof(id), "r%ld-%ld", r, e);
			if (natsMsg_Create(&m, subj, NULL, payload, (int)bytes) != NATS_OK ||
			    natsMsgHeader_Set(m, "Nats-Msg-Id", id) != NATS_OK)
				die("message");
			if (js_PublishMsgAsync(js, &m, NULL) != NATS_OK)
				die("async publish");
		}
	}
	if (js_PublishAsyncComplete(js, NULL) != NATS_OK)
		die("waiting for pub acks");
	dt = rs_mono_us() - t0;
	printf("async_msgs %ld\nasync_failed %ld\nasync_msgs_per_s %.0f\nasync_runs_per_s %.1f\n",
	       (long)atomic_load(&acked), (long)atomic_load(&failed),
	       (double)atomic_load(&acked) * 1e6 / (double)dt,
	       (double)atomic_load(&acked) * 1e6 / (double)dt / (double)events);
	js_DeleteStream(js, STREAM, NULL, NULL);
	free(v);
	free(payload);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return atomic_load(&acked) == total ? 0 : 1;
}
