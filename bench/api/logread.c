/*
 * logread.c - what a read of RUNS costs by direct get and through the
 * stream leader (STREAM.MSG.GET), both through rs_api_log_get
 * (services/api/logread.c), the one the API uses; docs/api.md has the
 * figures. On a fresh server (or one whose RUNS this may fill): creates
 * RUNS (runs.>, allow_direct) if missing, appends <runs> runs of 8 events
 * each, then times <n> reads of each kind per mode: the last event of a
 * run (last_by_subj: the read-your-writes look-up) and a history walk of
 * one run (next_by_subj, 8 reads + the not-found).
 *
 * usage: bench_api_logread <nats url> [runs] [n]
 * prints one line per mode and kind: mean and p50/p99 in microseconds.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
report(const char *what, double *t, int n)
{
	double sum = 0;

	for (int i = 0; i < n; i++)
		sum += t[i];
	qsort(t, (size_t)n, sizeof(*t), cmp_d);
	printf("%-28s n=%d mean %.0f us  p50 %.0f us  p99 %.0f us\n", what, n, sum / n, t[n / 2],
	       t[n * 99 / 100]);
}

int
main(int argc, char **argv)
{
	rs_api app;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	const char *subjects[] = { "runs.>" };
	int runs = argc > 2 ? atoi(argv[2]) : 1000, n = argc > 3 ? atoi(argv[3]) : 2000;
	double *t = calloc((size_t)n, sizeof(double));
	char subj[96];

	if (argc < 2 || runs < 1 || n < 1 || t == NULL) {
		fprintf(stderr, "usage: %s <nats url> [runs] [n]\n", argv[0]);
		return 2;
	}
	memset(&app, 0, sizeof(app));
	app.pub_timeout_ms = 5000;
	if (natsConnection_ConnectTo(&app.nats.nc, argv[1]) != NATS_OK ||
	    natsConnection_JetStream(&app.nats.js, app.nats.nc, NULL) != NATS_OK) {
		fprintf(stderr, "cannot connect to %s\n", argv[1]);
		return 1;
	}
	if (js_GetStreamInfo(&si, app.nats.js, "RUNS", NULL, NULL) != NATS_OK) {
		jsStreamConfig_Init(&sc);
		sc.Name = "RUNS";
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.AllowDirect = true;
		if (js_AddStream(&si, app.nats.js, &sc, NULL, NULL) != NATS_OK) {
			fprintf(stderr, "cannot create RUNS\n");
			return 1;
		}
	}
	jsStreamInfo_Destroy(si);
	for (int r = 0; r < runs; r++)
		for (int e = 1; e <= 8; e++) {
			char body[256];
			snprintf(subj, sizeof(subj), "runs.bench.%08d", r);
			snprintf(body, sizeof(body), "{\"runseq\":%d,\"type\":\"runstream.step.started\","
			         "\"data\":{\"pad\":\"%0150d\"}}", e, 0);
			if (js_Publish(NULL, app.nats.js, subj, body, (int)strlen(body), NULL, NULL) != NATS_OK) {
				fprintf(stderr, "publish failed\n");
				return 1;
			}
		}
	for (int mode = 0; mode < 2; mode++) {
		app.runs_leader_reads = mode;
		for (int kind = 0; kind < 2; kind++) {
			for (int i = 0; i < n; i++) {
				jsDirectGetMsgOptions o;
				natsMsg *m = NULL;
				uint64_t seq = 1;
				double t0;

				snprintf(subj, sizeof(subj), "runs.bench.%08d", rand() % runs);
				t0 = now_us();
				if (kind == 0) {
					jsDirectGetMsgOptions_Init(&o);
					o.LastBySubject = subj;
					if (rs_api_log_get(&app, &m, &o) != NATS_OK)
						return 1;
					natsMsg_Destroy(m);
				} else {
					for (;;) {
						const char *sq = NULL;
						jsDirectGetMsgOptions_Init(&o);
						o.Sequence = seq;
						o.NextBySubject = subj;
						natsStatus s = rs_api_log_get(&app, &m, &o);
						if (s == NATS_NOT_FOUND)
							break;
						if (s != NATS_OK || natsMsgHeader_Get(m, "Nats-Sequence", &sq) != NATS_OK)
							return 1;
						seq = strtoull(sq, NULL, 10) + 1;
						natsMsg_Destroy(m);
					}
				}
				t[i] = now_us() - t0;
			}
			report(mode ? (kind ? "leader: history (9 reads)" : "leader: last by subject")
			            : (kind ? "direct: history (9 reads)" : "direct: last by subject"),
			       t, n);
		}
	}
	jsCtx_Destroy(app.nats.js);
	natsConnection_Destroy(app.nats.nc);
	free(t);
	return 0;
}
