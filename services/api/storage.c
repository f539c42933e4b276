/*
 * storage.c - refuse new runs the event log could not record.
 *
 * RUNS and CMDS are bounded (RS_STREAM_RUNS_MAX_MSGS, ..._CMDS_...) with
 * discard "new": when full, JetStream refuses appends instead of deleting
 * old events, so no run in flight is ever cut (docs/operations.md "Storage
 * bounds"). A refused append would leave an accepted run unable to
 * progress, so the API stops accepting runs before that: above
 * RS_API_STORAGE_HIGH_WATER_PCT of either stream's max_msgs, POST /v1/runs
 * answers 507 with a problem body saying which stream and what to do; the
 * rest is headroom for the runs already in flight. A publish the server
 * refuses as full (the high-water check is up to 100 ms old) is also
 * 507, never 202.
 *
 * The streams' fill is read with STREAM.INFO at most every 100 ms per
 * stream (at most 20 requests a second, whatever the request rate) and
 * shared by the workers (one mutex). Between two reads the API may accept
 * a few more runs than the mark: the headroom above it must cover them
 * and the runs in flight. If the info cannot be
 * read (a leader election), the last answer stands: the publish acks
 * still catch a full stream.
 */
#include "api.h"
#include "rs_log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define STORAGE_REFRESH_MS 100

typedef struct {
	const char *name;
	int64_t msgs, max_msgs, bytes;
	int64_t checked_ms;
	int refreshing;     /* one worker asks; the others use the last answer */
} fill;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static fill streams[] = { { "RUNS", 0, -1, 0, 0, 0 }, { "CMDS", 0, -1, 0, 0, 0 } };

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Refresh f from the server if it is older than STORAGE_REFRESH_MS.
 * Called with mu held; the request is made without it, by one worker at a
 * time: while a stream has no leader (an election) STREAM.INFO waits its
 * full second, and holding mu across it made every POST queue behind it,
 * one per second (seen on a cluster with the RUNS leader paused:
 * tests/integration/cluster_reads.test.mjs). */
static void
refresh(rs_api *app, fill *f)
{
	jsStreamInfo *si = NULL;
	jsOptions o;
	jsErrCode jerr = 0;
	natsStatus s;
	int64_t t = now_ms();

	if (f->refreshing || t - f->checked_ms < STORAGE_REFRESH_MS)
		return;
	f->checked_ms = t;
	f->refreshing = 1;
	pthread_mutex_unlock(&mu);
	jsOptions_Init(&o);
	o.Wait = 1000;
	s = js_GetStreamInfo(&si, app->nats.js, f->name, &o, &jerr);
	pthread_mutex_lock(&mu);
	f->refreshing = 0;
	if (s != NATS_OK) {
		rs_warn("api: storage: no info on stream %s: %s (%d); keeping the last", f->name,
		        natsStatus_GetText(s), (int)jerr);
		return;
	}
	f->msgs = (int64_t)si->State.Msgs;
	f->bytes = (int64_t)si->State.Bytes;
	f->max_msgs = si->Config->MaxMsgs;
	jsStreamInfo_Destroy(si);
}

int
rs_api_storage_full(rs_api *app, char *detail, size_t cap)
{
	int full = 0;

	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]) && !full; i++) {
		fill *f = &streams[i];
		refresh(app, f);
		if (f->max_msgs > 0 && f->msgs * 100 >= f->max_msgs * app->storage_high_water_pct) {
			full = 1;
			snprintf(detail, cap, "the event log cannot take more runs: stream %s holds %lld of "
			         "its %lld messages (%lld bytes; new runs are refused above %d%%, the rest "
			         "is kept for the runs in flight); archive and purge finished runs "
			         "(runctl archive --purge) or raise RS_STREAM_%s_MAX_MSGS", f->name,
			         (long long)f->msgs, (long long)f->max_msgs, (long long)f->bytes,
			         app->storage_high_water_pct, f->name);
		}
	}
	pthread_mutex_unlock(&mu);
	return full;
}

int
rs_api_storage_refused(const jsPubAckErr *pae)
{
	/* nats-server 2.9: a full discard-new stream answers error 10077
	 * (stream store failed) with "maximum messages exceeded" (or bytes);
	 * 10047 is the server's own storage limit. */
	if (pae == NULL)
		return 0;
	if (pae->ErrCode == 10077 || pae->ErrCode == 10047)
		return 1;
	return pae->ErrText != NULL && strstr(pae->ErrText, "maximum") != NULL;
}
