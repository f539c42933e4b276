/*
 * probe.c - rs-consume-probe: common/rs_consume.c driven from outside, for
 * tests/integration/consume.test.mjs (the real nats-server, no mocks).
 *
 * Usage: rs-consume-probe STREAM DURABLE FILTER (RS_NATS_URL and the
 * RS_NATS_USER/PASSWORD of rs_nats_connect; RS_CONSUME_EXPIRES_MS and
 * RS_CONSUME_HEARTBEAT_MS as in production; RS_PROBE_OVERLAP=N: the
 * overlapping mode with N requests, as the tool-router's intake).
 * Prints one JSON line per event on stdout:
 *   {"ready":true}
 *   {"msg":"<body>","seq":S,"dc":D,"lat_ms":L}   L = now - the server's store time
 *   {"requests":R,"delivered":N}                 every 500 ms
 *   {"stopped":true,"stop_ms":T}                 after SIGTERM, T = stop + join time
 * The body says what to do with the message: "ack", "nak", "delay:<ms>",
 * "term", "taken" (kept, acked 200 ms later by another thread), "drop",
 * "progress"; anything else is acked.
 */
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rs_consume.h"
#include "rs_log.h"
#include "rs_metrics.h"
#include "rs_nats.h"
#include "rs_time.h"

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static rs_consume *_Atomic probe_c;   /* set before any "taken" message is acked */
static int probe_overlap;

static void
say(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_mu);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
}

static void *
ack_later(void *arg)
{
	natsMsg *m = arg;

	usleep(200 * 1000);
	if (probe_overlap) {
		/* Not bound to a nats.c JetStream subscription: by its ack subject. */
		rs_consume_settle_reply(probe_c, natsMsg_GetReply(m), RS_CONSUME_ACK, 0);
		natsMsg_Destroy(m);
	} else {
		rs_consume_settle(m, RS_CONSUME_ACK, 0);
	}
	return NULL;
}

static void
on_batch(void *arg, natsMsg **msgs, int n, rs_consume_out *out)
{
	(void)arg;
	for (int i = 0; i < n; i++) {
		char body[64];
		int len = natsMsg_GetDataLength(msgs[i]);
		rs_consume_meta md;
		long long seq = 0, dc = 0, lat = -1;

		snprintf(body, sizeof(body), "%.*s", len < 63 ? len : 63,
		         natsMsg_GetData(msgs[i]) ? natsMsg_GetData(msgs[i]) : "");
		if (rs_consume_reply_meta(natsMsg_GetReply(msgs[i]), &md) == RS_OK) {
			seq = (long long)md.stream_seq;
			dc = (long long)md.delivered;
			lat = (long long)(rs_now_ms() - md.stored_ns / 1000000);
		}
		say("{\"msg\":\"%s\",\"seq\":%lld,\"dc\":%lld,\"lat_ms\":%lld}", body, seq, dc, lat);
		if (strcmp(body, "nak") == 0) {
			out[i].disp = RS_CONSUME_NAK;
		} else if (strncmp(body, "delay:", 6) == 0) {
			out[i].disp = RS_CONSUME_NAK_DELAY;
			out[i].delay_ms = atoll(body + 6);
		} else if (strcmp(body, "term") == 0) {
			out[i].disp = RS_CONSUME_TERM;
		} else if (strcmp(body, "drop") == 0) {
			out[i].disp = RS_CONSUME_DROP;
		} else if (strcmp(body, "progress") == 0) {
			out[i].disp = RS_CONSUME_PROGRESS;
		} else if (strcmp(body, "taken") == 0) {
			pthread_t t;
			out[i].disp = RS_CONSUME_TAKEN;
			if (pthread_create(&t, NULL, ack_later, msgs[i]) == 0)
				pthread_detach(t);
			else
				out[i].disp = RS_CONSUME_DROP;
		}
	}
}

static double
metric(const char *name)
{
	size_t len;
	char *text = rs_metrics_render(&len), *p;
	double v = -1;

	if (text != NULL && (p = strstr(text, name)) != NULL && (p = strchr(p, ' ')) != NULL)
		v = atof(p + 1);
	free(text);
	return v;
}

int
main(int argc, char **argv)
{
	rs_consume_cfg cfg = { .name = "probe", .on_batch = on_batch, .batch = 16 };
	rs_consume *c = NULL;
	rs_nats n;
	char inbox[128];
	sigset_t sigs;
	struct timespec ts = { 0, 500 * 1000000L };
	int sig = 0;
	int64_t t0;

	if (argc != 4) {
		fprintf(stderr, "usage: rs-consume-probe STREAM DURABLE FILTER\n");
		return 2;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	rs_log_init("consume-probe");
	cfg.stream = argv[1];
	cfg.durable = argv[2];
	cfg.filter = argv[3];
	memset(&n, 0, sizeof(n));
	if (rs_nats_connect(&n, getenv("RS_NATS_URL") ? getenv("RS_NATS_URL") : "nats://127.0.0.1:4222",
	                    "consume-probe", NULL, 5000) != RS_OK)
		return 1;
	if (getenv("RS_PROBE_OVERLAP") != NULL) {
		probe_overlap = atoi(getenv("RS_PROBE_OVERLAP"));
		cfg.overlap = probe_overlap;
		cfg.inbox = inbox;
		if (rs_nats_new_inbox(&n, inbox, sizeof(inbox)) != RS_OK)
			return 1;
	}
	if (rs_consume_start(&c, n.nc, n.js, &cfg) != RS_OK) {
		/* one exit path that frees what it made: LeakSanitizer checks it */
		rs_nats_close(&n, 0);
		nats_Close();
		return 1;
	}
	probe_c = c;
	say("{\"ready\":true}");
	while (sigtimedwait(&sigs, NULL, &ts) < 0)
		say("{\"requests\":%.0f,\"delivered\":%llu}",
		    metric("rs_consume_pull_requests_total{consumer=\"probe\"}"),
		    (unsigned long long)rs_consume_delivered(c));
	(void)sig;
	t0 = rs_mono_ms();
	rs_consume_stop(c);
	rs_consume_join(c);
	say("{\"stopped\":true,\"stop_ms\":%lld}", (long long)(rs_mono_ms() - t0));
	usleep(300 * 1000);   /* "taken" messages still being acked */
	if (!probe_overlap)
		rs_consume_free(c);
	rs_nats_close(&n, 1000);
	if (probe_overlap)
		rs_consume_free(c);   /* its subscription's thread is done now */
	nats_Close();
	return 0;
}
