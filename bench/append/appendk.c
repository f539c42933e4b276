/*
 * appendk.c - bench-appendk: what one decision's K events cost to append,
 * four ways, on the real nats-server (issue 22: "if events per step turn
 * out to be the limit, propose a leaner encoding with numbers").
 *
 * Today the orchestrator appends a decision's events one after another,
 * each carrying Nats-Expected-Last-Subject-Sequence = the stream sequence
 * of the run's previous event, and waits for each pub ack before sending
 * the next (services/orchestrator/engine.c). This measures, for K = KMIN..
 * KMAX events of real sizes (the events of a recorded run, a
 * tests/fixtures ndjson export), the time from the first publish to the
 * last ack of one decision:
 *   seq        today: K publishes, each awaited, each expecting the
 *              sequence the previous ack returned;
 *   pipe1      K publishes sent at once, acks awaited together; only the
 *              first carries the expectation (the client cannot know the
 *              sequences the others will get: other runs share the stream);
 *   pipechain  K publishes sent at once, each expecting the sequence the
 *              previous one will get: the first the run's last, event i
 *              the stream's last + i (the stream sequence is global, so
 *              this prediction holds only with no other writer). Valid here
 *              only because this program is the stream's only writer; it
 *              shows what the server does with a chain of expectations in
 *              flight (single node: taken in order; 2.9.10 clustered: the
 *              leader's precheck compares with its applied store, so a link
 *              is refused unless the event before it happened to be
 *              applied already; counted as "refused");
 *   batch      one message carrying the K events (a JSON array), one
 *              expectation, one ack.
 * Then "two writers": rounds x two events sent back to back with the same
 * expectation (what two orchestrators deciding the same run at once would
 * send), first with distinct Nats-Msg-Ids, then with the same one (the
 * orchestrator's <run_id>-<runseq>); the guards must keep the second out.
 * Counted: both stored, and the second answered as a duplicate. On a
 * 2.9.10 cluster the expectation is only prechecked (not re-checked on
 * apply), so with distinct ids both are stored; de-duplication is checked
 * on apply and refuses the second with the same id.
 * Decisions are interleaved (one of each mode and K per round) so a load
 * change on a shared machine falls on every mode alike. Each run subject
 * takes 4 decisions, after one untimed seed event (so every timed
 * expectation is > 0: the path a run's later decisions take).
 *
 *   bench-appendk <fixture.ndjson> <rounds>
 *
 * Environment: RS_NATS_URL (a list on a cluster), RS_NATS_USER and
 * RS_NATS_PASSWORD (admin), APPENDK_REPLICAS (1; 3 on a cluster),
 * APPENDK_KMIN (2), APPENDK_KMAX (6). The connection is send-asap (nats.c
 * otherwise holds a lone publish ~1 ms in its flusher), so no mode pays a
 * client-side delay. Scratch stream APPENDK (file storage), deleted at the
 * end. Output: "key value" lines, latencies in us.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "rs_config.h"
#include "rs_nats.h"
#include "rs_time.h"

#define STREAM "APPENDK"
#define MAX_EVENTS 64
#define MAX_LINE (64 * 1024)
#define KCAP 16
#define RUN_DECISIONS 4
#define ACK_WAIT_MS 10000

enum { M_SEQ, M_PIPE1, M_PIPECHAIN, M_BATCH, N_MODES };
static const char *mode_name[N_MODES] = { "seq", "pipe1", "pipechain", "batch" };

typedef struct {
	char *data;
	int len;
	char type[96];
} event;

/* Per mode and K: the subject of the current run and its last sequence. */
typedef struct {
	int64_t *lat;
	int n;
	long refused;
	long run, in_run;
	uint64_t last;
	char subj[96];
} series;

static natsConnection *nc;
static natsSubscription *acks;
static char inbox[192];
static uint64_t token;
static uint64_t stream_last;   /* the highest sequence any ack gave: we are the only writer */
static event ev[MAX_EVENTS];
static int n_ev;

static void
die(const char *what)
{
	fprintf(stderr, "bench-appendk: %s: %s\n", what, nats_GetLastError(NULL));
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

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		abort();
	return p;
}

/* The events of a run export: every line but the header (which has
 * "runstream_export"), its type read for the Runstream-Type header. */
static void
load_events(const char *file)
{
	FILE *f = fopen(file, "r");
	char *line = xmalloc(MAX_LINE);

	if (f == NULL) {
		perror(file);
		exit(2);
	}
	while (n_ev < MAX_EVENTS && fgets(line, MAX_LINE, f) != NULL) {
		size_t len = strcspn(line, "\n");
		json_t *j;
		const char *type = NULL;

		line[len] = '\0';
		if (len == 0 || strstr(line, "\"runstream_export\"") != NULL)
			continue;
		if ((j = json_loadb(line, len, 0, NULL)) == NULL ||
		    json_unpack(j, "{s:s}", "type", &type) != 0) {
			fprintf(stderr, "bench-appendk: %s: not an event line\n", file);
			exit(2);
		}
		snprintf(ev[n_ev].type, sizeof(ev[n_ev].type), "%s", type);
		json_decref(j);
		ev[n_ev].data = xmalloc(len + 1);
		memcpy(ev[n_ev].data, line, len + 1);
		ev[n_ev].len = (int)len;
		n_ev++;
	}
	fclose(f);
	free(line);
	if (n_ev == 0) {
		fprintf(stderr, "bench-appendk: %s has no events\n", file);
		exit(2);
	}
}

/* Publish one message with a reply subject on our ack inbox; expect < 0:
 * no expectation header; msg_id NULL: a new unique one. */
static void
publish_id(const char *subj, const char *data, int len, const char *type, int64_t expect,
           const char *msg_id)
{
	natsMsg *m = NULL;
	char reply[224], id[160], num[24];

	snprintf(reply, sizeof(reply), "%s.%llu", inbox, (unsigned long long)++token);
	if (msg_id != NULL)
		snprintf(id, sizeof(id), "%s", msg_id);
	else
		snprintf(id, sizeof(id), "ak-%d-%llu", (int)getpid(), (unsigned long long)token);
	if (natsMsg_Create(&m, subj, reply, data, len) != NATS_OK ||
	    natsMsgHeader_Set(m, "Content-Type", "application/cloudevents+json") != NATS_OK ||
	    natsMsgHeader_Set(m, "Runstream-Type", type) != NATS_OK ||
	    natsMsgHeader_Set(m, "Nats-Msg-Id", id) != NATS_OK)
		die("message");
	if (expect >= 0) {
		snprintf(num, sizeof(num), "%lld", (long long)expect);
		if (natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", num) != NATS_OK)
			die("message");
	}
	if (natsConnection_PublishMsg(nc, m) != NATS_OK)
		die("publish");
	natsMsg_Destroy(m);
}

static void
publish(const char *subj, const char *data, int len, const char *type, int64_t expect)
{
	publish_id(subj, data, len, type, expect, NULL);
}

static int last_duplicate;   /* the last ack said "duplicate": true */

/* Wait for one pub ack: its sequence, or 0 when the server refused the
 * message (wrong last sequence, or anything else: then we stop). */
static uint64_t
await_ack(void)
{
	natsMsg *m = NULL;
	json_t *j, *err;
	json_int_t seq = 0, code = 0;

	last_duplicate = 0;

	if (natsSubscription_NextMsg(&m, acks, ACK_WAIT_MS) != NATS_OK)
		die("waiting for a pub ack");
	j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
	if (j == NULL) {
		fprintf(stderr, "bench-appendk: a pub ack that is not JSON\n");
		exit(1);
	}
	if ((err = json_object_get(j, "error")) != NULL) {
		json_unpack(err, "{s?I}", "err_code", &code);
		if (code != 10071) {   /* only "wrong last sequence" is expected */
			fprintf(stderr, "bench-appendk: pub ack error: %.*s\n",
			        natsMsg_GetDataLength(m), natsMsg_GetData(m));
			exit(1);
		}
		seq = 0;
	} else if (json_unpack(j, "{s:I}", "seq", &seq) != 0 || seq <= 0) {
		fprintf(stderr, "bench-appendk: pub ack without a sequence\n");
		exit(1);
	} else if ((uint64_t)seq > stream_last) {
		stream_last = (uint64_t)seq;
	}
	last_duplicate = json_is_true(json_object_get(j, "duplicate"));
	json_decref(j);
	natsMsg_Destroy(m);
	return (uint64_t)seq;
}

/* A new run subject for a series, seeded with one event (untimed). */
static void
new_run(series *s, const char *mode, int k)
{
	s->run++;
	s->in_run = 0;
	snprintf(s->subj, sizeof(s->subj), "appendk.%s.k%d.r%ld", mode, k, s->run);
	publish(s->subj, ev[0].data, ev[0].len, ev[0].type, 0);
	if ((s->last = await_ack()) == 0)
		die("seeding a run");
}

static char *batch_buf;

/* One decision of k events in mode; returns its time in us. */
static int64_t
decision(series *s, int mode, int k)
{
	int64_t t0;
	uint64_t seq, max = 0;
	int off = 0;

	if (s->in_run == RUN_DECISIONS || s->run == 0)
		new_run(s, mode_name[mode], k);
	s->in_run++;
	t0 = rs_mono_us();
	switch (mode) {
	case M_SEQ:
		for (int i = 0; i < k; i++) {
			const event *e = &ev[(i + 1) % n_ev];

			publish(s->subj, e->data, e->len, e->type, (int64_t)s->last);
			if ((seq = await_ack()) == 0)
				die("a sequential append refused (another writer?)");
			s->last = seq;
		}
		break;
	case M_PIPE1:
	case M_PIPECHAIN:
		for (int i = 0; i < k; i++) {
			const event *e = &ev[(i + 1) % n_ev];
			int64_t expect = i == 0 ? (int64_t)s->last
			                 : mode == M_PIPE1 ? -1 : (int64_t)(stream_last + (uint64_t)i);

			publish(s->subj, e->data, e->len, e->type, expect);
		}
		for (int i = 0; i < k; i++) {
			if ((seq = await_ack()) == 0)
				s->refused++;
			else if (seq > max)
				max = seq;
		}
		if (max == 0)
			die("every event of a pipelined decision refused");
		s->last = max;
		break;
	case M_BATCH:
		batch_buf[off++] = '[';
		for (int i = 0; i < k; i++) {
			const event *e = &ev[(i + 1) % n_ev];

			if (i > 0)
				batch_buf[off++] = ',';
			memcpy(batch_buf + off, e->data, (size_t)e->len);
			off += e->len;
		}
		batch_buf[off++] = ']';
		publish(s->subj, batch_buf, off, "runstream.batch", (int64_t)s->last);
		if ((seq = await_ack()) == 0)
			die("a batch refused (another writer?)");
		s->last = seq;
		break;
	}
	return rs_mono_us() - t0;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	natsOptions *o = NULL;
	jsCtx *js = NULL;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	const char *subjects[] = { "appendk.>" };
	const char *url = rs_env_str("RS_NATS_URL", "nats://127.0.0.1:4222");
	const char *user = rs_env_str("RS_NATS_USER", NULL), *pass = rs_env_str("RS_NATS_PASSWORD", NULL);
	int64_t replicas = 1, kmin = 2, kmax = 6;
	long rounds;
	series s[N_MODES][KCAP + 1];
	char sub[224];
	size_t batch_cap = 2;
	int created = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s <fixture.ndjson> <rounds>\n", argv[0]);
		return 2;
	}
	rounds = strtol(argv[2], NULL, 10);
	if (rounds < 10 || rounds > 100000 ||
	    rs_env_int("APPENDK_REPLICAS", 1, 1, 5, &replicas) != RS_OK ||
	    rs_env_int("APPENDK_KMIN", 2, 1, KCAP, &kmin) != RS_OK ||
	    rs_env_int("APPENDK_KMAX", 6, 1, KCAP, &kmax) != RS_OK || kmin > kmax) {
		fprintf(stderr, "bench-appendk: rounds 10..100000, APPENDK_REPLICAS 1..5, "
		        "1 <= APPENDK_KMIN <= APPENDK_KMAX <= %d\n", KCAP);
		return 2;
	}
	load_events(argv[1]);
	for (int i = 0; i <= KCAP; i++)
		batch_cap += (size_t)ev[i % n_ev].len + 1;
	batch_buf = xmalloc(batch_cap);

	if (natsOptions_Create(&o) != NATS_OK || set_servers(o, url) != NATS_OK ||
	    natsOptions_SetName(o, "bench-appendk") != NATS_OK ||
	    natsOptions_SetSendAsap(o, true) != NATS_OK)
		die("options");
	if (user != NULL && pass != NULL) {
		char prefix[128];

		snprintf(prefix, sizeof(prefix), "_INBOX_%s", user);
		if (natsOptions_SetUserInfo(o, user, pass) != NATS_OK ||
		    natsOptions_SetCustomInboxPrefix(o, prefix) != NATS_OK)
			die("credentials");
		snprintf(inbox, sizeof(inbox), "%s.appendk%d", prefix, (int)getpid());
	} else {
		snprintf(inbox, sizeof(inbox), "_INBOX.appendk%d", (int)getpid());
	}
	if (natsConnection_Connect(&nc, o) != NATS_OK)
		die("connect");
	natsOptions_Destroy(o);
	snprintf(sub, sizeof(sub), "%s.*", inbox);
	if (natsConnection_SubscribeSync(&acks, nc, sub) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		die("subscribe");

	jsStreamConfig_Init(&sc);
	sc.Name = STREAM;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = replicas;
	js_DeleteStream(js, STREAM, NULL, NULL);   /* a leftover of an aborted run */
	/* A cluster that has just formed may not place an R3 stream yet
	 * (10005, no suitable peers): try again for up to 30 s. */
	for (int i = 0; i < 60 && !created; i++) {
		natsStatus st = js_AddStream(NULL, js, &sc, NULL, &jerr);

		if (st == NATS_OK)
			created = 1;
		else
			nanosleep(&(struct timespec){ .tv_nsec = 500000000 }, NULL);
	}
	if (!created)
		die("create stream " STREAM);
	if (js_GetStreamInfo(&si, js, STREAM, NULL, NULL) == NATS_OK) {
		char srv[256] = "";

		natsConnection_GetConnectedUrl(nc, srv, sizeof(srv));
		printf("replicas %lld\nconnected %s\nleader %s\n", (long long)replicas, srv,
		       si->Cluster != NULL && si->Cluster->Leader != NULL ? si->Cluster->Leader : "-");
		jsStreamInfo_Destroy(si);
	}
	for (int i = 1; i <= KCAP && i < n_ev; i++)
		printf("event_bytes_%d %d\n", i, ev[i].len);

	memset(s, 0, sizeof(s));
	for (int m = 0; m < N_MODES; m++)
		for (int k = (int)kmin; k <= kmax; k++)
			s[m][k].lat = xmalloc(sizeof(int64_t) * (size_t)rounds);
	/* Warm-up: connections, the stream's first blocks. */
	for (int i = 0; i < 50; i++)
		decision(&s[M_SEQ][kmin], M_SEQ, (int)kmin);
	for (long r = 0; r < rounds; r++)
		for (int k = (int)kmin; k <= kmax; k++)
			for (int m = 0; m < N_MODES; m++) {
				series *x = &s[m][k];

				x->lat[x->n++] = decision(x, m, k);
			}
	for (int m = 0; m < N_MODES; m++)
		for (int k = (int)kmin; k <= kmax; k++) {
			series *x = &s[m][k];
			double sum = 0;

			qsort(x->lat, (size_t)x->n, sizeof(int64_t), cmp_i64);
			for (int i = 0; i < x->n; i++)
				sum += (double)x->lat[i];
			printf("%s_k%d_p50_us %lld\n%s_k%d_p99_us %lld\n%s_k%d_mean_us %.1f\n"
			       "%s_k%d_refused %ld\n%s_k%d_events %ld\n",
			       mode_name[m], k, (long long)x->lat[x->n / 2], mode_name[m], k,
			       (long long)x->lat[(x->n * 99) / 100], mode_name[m], k, sum / x->n,
			       mode_name[m], k, x->refused, mode_name[m], k, (long)x->n * k);
			free(x->lat);
		}
	/* Two writers with the same expectation, in flight together: with
	 * distinct message ids (the expectation is the only guard), then with
	 * the same one (what two orchestrators send: <run_id>-<runseq>). */
	for (int same_id = 0; same_id <= 1; same_id++) {
		series tw;
		long both = 0, dup = 0;

		memset(&tw, 0, sizeof(tw));
		for (long r = 0; r < rounds; r++) {
			uint64_t a, b;
			int da, db;
			char id[160];

			if (tw.in_run == RUN_DECISIONS || tw.run == 0)
				new_run(&tw, same_id ? "twosameid" : "two", 0);
			tw.in_run++;
			snprintf(id, sizeof(id), "%s-%ld", tw.subj, tw.in_run);
			publish_id(tw.subj, ev[1 % n_ev].data, ev[1 % n_ev].len, ev[1 % n_ev].type,
			           (int64_t)tw.last, same_id ? id : NULL);
			publish_id(tw.subj, ev[2 % n_ev].data, ev[2 % n_ev].len, ev[2 % n_ev].type,
			           (int64_t)tw.last, same_id ? id : NULL);
			a = await_ack();
			da = last_duplicate;
			b = await_ack();
			db = last_duplicate;
			if (a != 0 && b != 0 && !da && !db)
				both++;
			if (da || db)
				dup++;
			tw.last = a > b ? a : b;
		}
		printf("twowriters%s_rounds %ld\ntwowriters%s_both_stored %ld\n"
		       "twowriters%s_duplicate %ld\n", same_id ? "_sameid" : "", rounds,
		       same_id ? "_sameid" : "", both, same_id ? "_sameid" : "", dup);
	}
	js_DeleteStream(js, STREAM, NULL, NULL);
	for (int i = 0; i < n_ev; i++)
		free(ev[i].data);
	free(batch_buf);
	natsSubscription_Destroy(acks);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return 0;
}
