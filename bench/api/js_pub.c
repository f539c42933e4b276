/*
 * js_pub.c - the raw JetStream publish rate, as the baseline for the API
 * benchmark (bench/api/run.sh): N messages shaped like run.start commands
 * (same size, Nats-Msg-Id set, subject cmd.bench.<n>) published with
 * js_PublishMsgAsync (a window of in-flight acks) or synchronously.
 *
 * usage: bench_api_jspub <nats url> <count> async|sync
 * prints: "<mode> <count> msgs in <s> s: <rate> msg/s"
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsOptions jo;
	char body[300], subj[64], id[64];
	int n, sync, rc = 1;
	double t0, dt;

	if (argc != 4) {
		fprintf(stderr, "usage: %s <nats url> <count> async|sync\n", argv[0]);
		return 2;
	}
	n = atoi(argv[2]);
	sync = strcmp(argv[3], "sync") == 0;
	memset(body, 'x', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	if (natsConnection_ConnectTo(&nc, argv[1]) != NATS_OK)
		goto cleanup;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 16384;
	if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
		goto cleanup;
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		natsMsg *m = NULL;
		jsPubOptions po;

		snprintf(subj, sizeof(subj), "cmd.bench.%d", i);
		snprintf(id, sizeof(id), "bench-%d-%d", (int)t0, i);
		natsMsg_Create(&m, subj, NULL, body, (int)strlen(body));
		jsPubOptions_Init(&po);
		po.MsgId = id;
		if (sync) {
			jsPubAck *pa = NULL;
			if (js_PublishMsg(&pa, js, m, &po, NULL) != NATS_OK)
				goto cleanup;
			jsPubAck_Destroy(pa);
			natsMsg_Destroy(m);
		} else if (js_PublishMsgAsync(js, &m, &po) != NATS_OK) {
			natsMsg_Destroy(m);
			goto cleanup;
		}
	}
	if (!sync) {
		jsPubOptions po;
		jsPubOptions_Init(&po);
		po.MaxWait = 60000;
		if (js_PublishAsyncComplete(js, &po) != NATS_OK)
			goto cleanup;
	}
	dt = now_s() - t0;
	printf("%s %d msgs in %.2f s: %.0f msg/s\n", sync ? "sync" : "async", n, dt, n / dt);
	rc = 0;
cleanup:
	if (rc != 0)
		fprintf(stderr, "js_pub: failed: %s\n", nats_GetLastError(NULL));
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_Close();
	return rc;
}
