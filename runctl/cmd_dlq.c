/*
 * cmd_dlq.c - `runctl dlq ls|show|retry`: inspect and re-drive dead
 * letters. Stream DLQ holds the original payload of a message a service
 * gave up on, on dlq.<source>, with headers Runstream-Dlq-Reason,
 * -Subject (where it came from), -Seq and -Source (rs_dlq_publish).
 * retry publishes the payload back to its original subject and deletes
 * the dead letter only once the stream has acknowledged the republish, so
 * a crash in between can duplicate (commands carry de-duplication ids
 * downstream) but never lose a message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_config.h"
#include "rs_json.h"
#include "rs_time.h"
#include "runctl.h"

static const char *const dlq_flags[] = { "source", "limit", "all", NULL };

static const char *
hdr(natsMsg *m, const char *k)
{
	const char *v = NULL;

	return natsMsgHeader_Get(m, k, &v) == NATS_OK && v != NULL ? v : "";
}

/* A message by stream sequence: RC_NOTFOUND if deleted or never there. */
static int
get_msg(rs_nats *n, uint64_t seq, natsMsg **m, const char *cmd)
{
	jsErrCode jerr = 0;
	natsStatus s = js_GetMsg(m, n->js, "DLQ", seq, NULL, &jerr);

	if (s == NATS_OK)
		return RC_OK;
	if (rs_nats_status(s, jerr) == RS_ENOTFOUND)
		return jerr == JSStreamNotFoundErr
		       ? rs_ctl_out_err(RC_FAIL, cmd, "stream DLQ missing: run `runctl streams apply`")
		       : RC_NOTFOUND;
	return rs_ctl_out_err(rs_nats_status(s, jerr) == RS_EUNAVAIL ? RC_DOWN : RC_FAIL, cmd,
	               "reading DLQ seq %" PRIu64 ": %s", seq, natsStatus_GetText(s));
}

static json_t *
msg_json(natsMsg *m, int with_data)
{
	char when[40];
	json_t *o;

	rs_time_rfc3339(natsMsg_GetTime(m) / 1000000, when, sizeof(when));
	o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:i}", "seq", (json_int_t)natsMsg_GetSequence(m),
	              "time", when, "subject", natsMsg_GetSubject(m),
	              "source", hdr(m, "Runstream-Dlq-Source"), "reason", hdr(m, "Runstream-Dlq-Reason"),
	              "orig_subject", hdr(m, "Runstream-Dlq-Subject"), "size", natsMsg_GetDataLength(m));
	if (with_data) {
		json_t *d = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
		json_object_set_new(o, "orig_seq", json_string(hdr(m, "Runstream-Dlq-Seq")));
		json_object_set_new(o, "data", d ? d : json_stringn(natsMsg_GetData(m),
		                                                     (size_t)natsMsg_GetDataLength(m)));
	}
	return o;
}

static int
stream_range(rs_nats *n, uint64_t *first, uint64_t *last, const char *cmd)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, n->js, "DLQ", NULL, &jerr);

	if (s != NATS_OK) {
		if (rs_nats_status(s, jerr) == RS_ENOTFOUND)
			return rs_ctl_out_err(RC_FAIL, cmd, "stream DLQ missing: run `runctl streams apply`");
		return rs_ctl_out_err(RC_DOWN, cmd, "cannot read stream DLQ: %s", natsStatus_GetText(s));
	}
	*first = si->State.FirstSeq;
	*last = si->State.Msgs ? si->State.LastSeq : 0;
	jsStreamInfo_Destroy(si);
	return RC_OK;
}

int
rs_ctl_cmd_dlq_ls(int argc, char **argv)
{
	const char *cmd = "dlq ls", *source = rs_ctl_flag(argc, argv, "source", NULL);
	json_t *list = json_array();
	uint64_t first = 0, last = 0;
	int64_t limit = 100;
	size_t shown = 0;
	rs_nats n;
	int rc;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, dlq_flags)) != RC_OK)
		goto cleanup;
	if (rs_parse_int(rs_ctl_flag(argc, argv, "limit", "100"), 1, 100000, &limit) != RS_OK) {
		rc = rs_ctl_out_err(RC_USAGE, cmd, "--limit must be a number between 1 and 100000");
		goto cleanup;
	}
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK || (rc = stream_range(&n, &first, &last, cmd)) != RC_OK)
		goto cleanup;
	for (uint64_t seq = first; last > 0 && seq <= last && (int64_t)shown < limit; seq++) {
		natsMsg *m = NULL;
		if ((rc = get_msg(&n, seq, &m, cmd)) == RC_NOTFOUND)
			continue;
		if (rc != RC_OK)
			goto cleanup;
		if (source == NULL || strcmp(source, hdr(m, "Runstream-Dlq-Source")) == 0) {
			json_array_append_new(list, msg_json(m, 0));
			shown++;
		}
		natsMsg_Destroy(m);
	}
	rc = RC_OK;
	if (rs_ctl_out_json()) {
		rs_ctl_out_json_value(stdout, list, 0);
	} else if (shown == 0) {
		printf("the dead-letter queue is empty%s%s\n", source ? " for source " : "", source ? source : "");
	} else {
		size_t i;
		json_t *v;
		printf("%6s  %-24s  %-12s  %-40s  %s\n", "SEQ", "TIME", "SOURCE", "ORIGINAL SUBJECT", "REASON");
		json_array_foreach(list, i, v)
			printf("%6" JSON_INTEGER_FORMAT "  %-24s  %-12s  %-40s  %s\n",
			       json_integer_value(json_object_get(v, "seq")),
			       json_string_value(json_object_get(v, "time")),
			       json_string_value(json_object_get(v, "source")),
			       json_string_value(json_object_get(v, "orig_subject")),
			       json_string_value(json_object_get(v, "reason")));
	}
cleanup:
	json_decref(list);
	rs_nats_close(&n, 1000);
	return rc;
}

static int
parse_seq(int argc, char **argv, const char *cmd, uint64_t *seq)
{
	const char *a = rs_ctl_arg(argc, argv, 0);
	int64_t v;

	if (a == NULL || rs_parse_int(a, 1, INT64_MAX, &v) != RS_OK)
		return rs_ctl_out_err(RC_USAGE, cmd, "give the DLQ sequence number shown by `runctl dlq ls`");
	*seq = (uint64_t)v;
	return RC_OK;
}

int
rs_ctl_cmd_dlq_show(int argc, char **argv)
{
	const char *cmd = "dlq show";
	natsMsg *m = NULL;
	uint64_t seq = 0;
	json_t *o;
	rs_nats n;
	int rc;

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, NULL)) != RC_OK ||
	    (rc = parse_seq(argc, argv, cmd, &seq)) != RC_OK)
		return rc;
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK)
		return rc;
	if ((rc = get_msg(&n, seq, &m, cmd)) == RC_NOTFOUND)
		rc = rs_ctl_out_err(RC_NOTFOUND, cmd, "no dead letter with seq %" PRIu64 " (see `runctl dlq ls`)", seq);
	if (rc == RC_OK) {
		o = msg_json(m, 1);
		rs_ctl_out_json_value(stdout, o, !rs_ctl_out_json());
		json_decref(o);
	}
	natsMsg_Destroy(m);
	rs_nats_close(&n, 1000);
	return rc;
}

/* Republish one dead letter to where it came from, then delete it. */
static int
retry_one(rs_nats *n, uint64_t seq, const char *cmd, json_t *done)
{
	const char *orig, **keys = NULL;
	natsMsg *m = NULL, *out = NULL;
	jsErrCode jerr = 0;
	int nkeys = 0, rc;
	natsStatus s;

	if ((rc = get_msg(n, seq, &m, cmd)) == RC_NOTFOUND)
		return rs_ctl_out_err(RC_NOTFOUND, cmd, "no dead letter with seq %" PRIu64 " (see `runctl dlq ls`)", seq);
	if (rc != RC_OK)
		return rc;
	orig = hdr(m, "Runstream-Dlq-Subject");
	if (orig[0] == '\0') {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "dead letter %" PRIu64 " has no Runstream-Dlq-Subject header: "
		             "cannot tell where to send it", seq);
		goto cleanup;
	}
	if (natsMsg_Create(&out, orig, NULL, natsMsg_GetData(m), natsMsg_GetDataLength(m)) != NATS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "out of memory");
		goto cleanup;
	}
	/* Keep the original's own headers (e.g. Runstream-Type), not ours or
	 * the server's. */
	if (natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK) {
		for (int i = 0; i < nkeys; i++) {
			if (strncmp(keys[i], "Runstream-Dlq-", 14) == 0 || strncmp(keys[i], "Nats-", 5) == 0)
				continue;
			natsMsgHeader_Set(out, keys[i], hdr(m, keys[i]));
		}
		free((void *)keys);
	}
	if (rs_js_publish(n->js, out, NULL, -1, 5000, NULL, NULL) != RS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "republishing dead letter %" PRIu64 " to %s failed: no stream "
		             "takes that subject, or the server is down; the dead letter is kept", seq, orig);
		goto cleanup;
	}
	s = js_DeleteMsg(n->js, "DLQ", seq, NULL, &jerr);
	if (s != NATS_OK) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "republished %" PRIu64 " to %s but could not delete it from DLQ: %s",
		             seq, orig, natsStatus_GetText(s));
		goto cleanup;
	}
	json_array_append_new(done, json_pack("{s:I,s:s}", "seq", (json_int_t)seq, "subject", orig));
	if (!rs_ctl_out_json())
		printf("retried %" PRIu64 " -> %s\n", seq, orig);
cleanup:
	natsMsg_Destroy(out);
	natsMsg_Destroy(m);
	return rc;
}

int
rs_ctl_cmd_dlq_retry(int argc, char **argv)
{
	const char *cmd = "dlq retry";
	json_t *done = json_array();
	uint64_t seq = 0, first = 0, last = 0;
	rs_nats n;
	int rc, all = rs_ctl_has(argc, argv, "all");

	memset(&n, 0, sizeof(n));
	if ((rc = rs_ctl_check_flags(argc, argv, cmd, dlq_flags)) != RC_OK)
		goto cleanup;
	if (!all && (rc = parse_seq(argc, argv, cmd, &seq)) != RC_OK)
		goto cleanup;
	if ((rc = rs_ctl_nats(&n, argc, argv)) != RC_OK)
		goto cleanup;
	if (!all) {
		rc = retry_one(&n, seq, cmd, done);
	} else if ((rc = stream_range(&n, &first, &last, cmd)) == RC_OK) {
		const char *source = rs_ctl_flag(argc, argv, "source", NULL);
		for (seq = first; last > 0 && seq <= last && rc == RC_OK; seq++) {
			natsMsg *m = NULL;
			int g = get_msg(&n, seq, &m, cmd);
			int skip = g == RC_NOTFOUND ||
			           (g == RC_OK && source && strcmp(source, hdr(m, "Runstream-Dlq-Source")) != 0);
			natsMsg_Destroy(m);
			if (g != RC_OK && g != RC_NOTFOUND)
				rc = g;
			else if (!skip)
				rc = retry_one(&n, seq, cmd, done);
		}
	}
	if (rs_ctl_out_json())
		rs_ctl_out_json_value(stdout, done, 0);
	else if (all && json_array_size(done) == 0 && rc == RC_OK)
		printf("nothing to retry\n");
cleanup:
	json_decref(done);
	rs_nats_close(&n, 1000);
	return rc;
}
