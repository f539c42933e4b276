/*
 * cmd_tail.c - `runctl tail [--tenant T] [--type TYPE] [--run ID]`:
 * follow run events live, like tail -f. Opens a JetStream ordered consumer
 * on stream RUNS filtered on runs.<tenant|*>.<run|*>, from the moment tail
 * starts (rs_js_follow): ephemeral and memory-only, deleted when tail exits,
 * and gap-free across reconnects (nats.c re-creates it where it left off).
 * Filtering by tenant and run is done by the subject, by type with the
 * Runstream-Type header. --json prints each CloudEvent as received
 * (ndjson).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_config.h"
#include "rs_id.h"
#include "rs_time.h"
#include "timeline.h"
#include "runctl.h"

static const char *const tail_flags[] = { "tenant", "type", "run", "count", "for", NULL };

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int
print_event(natsMsg *m, int64_t *start)
{
	char err[256], line[600];
	rs_event ev;
	tl_row row;

	if (rs_ctl_out_json()) {
		fwrite(natsMsg_GetData(m), 1, (size_t)natsMsg_GetDataLength(m), stdout);
		fputc('\n', stdout);
		fflush(stdout);
		return 1;
	}
	if (rs_event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev, err,
	                    sizeof(err)) != RS_OK) {
		fprintf(stderr, "runctl tail: skipping a message on %s: %s\n", natsMsg_GetSubject(m), err);
		return 0;
	}
	if (*start == 0)
		*start = ev.time_ms;
	rs_ctl_tl_row_of(&ev, *start, &row);
	rs_ctl_tl_format_row(&row, rs_ctl_out_on(row.mark == TL_FAIL ? OUT_RED : row.mark == TL_DONE ? OUT_GREEN :
	              row.mark == TL_RETRY ? OUT_MAGENTA : OUT_YELLOW), rs_ctl_out_off(), line, sizeof(line));
	printf("%s %s %s\n", ev.tenant, ev.run_id, line);
	fflush(stdout);
	rs_event_free(&ev);
	return 1;
}

int
rs_ctl_cmd_tail(int argc, char **argv)
{
	const char *cmd = "tail", *tenant = rs_ctl_flag(argc, argv, "tenant", NULL);
	const char *run = rs_ctl_flag(argc, argv, "run", NULL), *type = rs_ctl_flag(argc, argv, "type", NULL);
	natsSubscription *sub = NULL;
	char subject[200];
	int64_t count = 0, secs = 0, seen = 0, start = 0, deadline;
	uint64_t floor = 0;
	rs_event_type t;
	rs_status st;
	rs_nats n;
	int rc;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, tail_flags)) != RC_OK)
		return rc;
	if (tenant != NULL && !rs_id_is_token(tenant, 64))
		return rs_ctl_out_err(RC_USAGE, cmd, "--tenant must match [a-z0-9_-]{1,64}");
	if (run != NULL && !rs_id_is_uuid(run))
		return rs_ctl_out_err(RC_USAGE, cmd, "--run must be a run id (a UUID)");
	if (type != NULL && rs_event_type_parse(type, &t) != RS_OK)
		return rs_ctl_out_err(RC_USAGE, cmd, "--type %s is not an event type (e.g. run.completed, tool.failed)", type);
	if (rs_parse_int(rs_ctl_flag(argc, argv, "count", "0"), 0, INT64_MAX, &count) != RS_OK ||
	    rs_parse_int(rs_ctl_flag(argc, argv, "for", "0"), 0, 86400 * 365, &secs) != RS_OK)
		return rs_ctl_out_err(RC_USAGE, cmd, "--count and --for take whole numbers (events, seconds)");
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK)
		return rc;
	snprintf(subject, sizeof(subject), "runs.%s.%s", tenant ? tenant : "*", run ? run : "*");
	if ((st = rs_js_follow(&sub, n.js, "RUNS", subject, 0, NULL, NULL, &floor)) != RS_OK) {
		rc = st == RS_ENOTFOUND ? rs_ctl_out_err(RC_NOTFOUND, cmd, "no stream RUNS (run: runctl streams apply)")
		   : rs_ctl_out_err(st == RS_EUNAVAIL || st == RS_ETIMEOUT ? RC_DOWN : RC_FAIL, cmd,
		             "cannot follow %s on stream RUNS: %s", subject,
		             nats_GetLastError(NULL) ? nats_GetLastError(NULL) : rs_status_str(st));
		goto cleanup;
	}
	/* Large pending limits: a busy system must not drop events on us
	 * (each drop would make nats.c re-create the consumer). */
	natsSubscription_SetPendingLimits(sub, 1000000, 256 * 1024 * 1024);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* Always said once subscribed (stderr): scripts wait for it. */
	fprintf(stderr, "following %s%s%s (Ctrl-C to stop)\n", subject, type ? " type " : "", type ? type : "");
	deadline = secs > 0 ? rs_mono_ms() + secs * 1000 : 0;
	while (!stop && (count == 0 || seen < count) && (deadline == 0 || rs_mono_ms() < deadline)) {
		natsMsg *m = NULL;
		const char *mt = NULL;
		natsStatus s = natsSubscription_NextMsg(&m, sub, 200);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			if (!rs_nats_connected(&n))
				continue;   /* reconnecting: keep following */
			rc = rs_ctl_out_err(RC_FAIL, cmd, "subscription failed: %s", natsStatus_GetText(s));
			break;
		}
		/* fresh: not from before we started (see rs_js_follow) */
		if (rs_js_follow_fresh(m, floor) &&
		    (type == NULL || (natsMsgHeader_Get(m, "Runstream-Type", &mt) == NATS_OK && mt != NULL &&
		     (strcmp(mt, type) == 0 || strcmp(mt, type + (strncmp(type, "runstream.", 10) ? 0 : 10)) == 0))))
			seen += print_event(m, &start);
		natsMsg_Destroy(m);
	}
	if (rc == RC_OK && count > 0 && seen < count)
		rc = rs_ctl_out_err(RC_FAIL, cmd, "only %" PRId64 " of %" PRId64 " events arrived within %" PRId64 "s",
		             seen, count, secs);
cleanup:
	rs_js_follow_stop(&sub);
	rs_nats_close(&n, 1000);
	return rc;
}
