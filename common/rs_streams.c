/* rs_streams.c - apply and check JetStream definitions (see rs_streams.h). */
#include "rs_streams.h"
#include "rs_config.h"
#include "rs_json.h"
#include "rs_log.h"
#include "rs_nats.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NS_PER_S 1000000000LL
#define KEPT_REPUBLISH "harmless, nothing reads it any more; recreate the stream to drop it"

static void
say(char *report, size_t cap, const char *fmt, const char *a, const char *b)
{
	size_t n = strlen(report);

	if (n < cap)
		snprintf(report + n, cap - n, fmt, a, b);
}

static int64_t
jint(json_t *o, const char *k, int64_t def)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

/* Replicas: the definition's value, unless RS_STREAM_REPLICAS overrides it
 * (a clustered deployment runs the same definitions with 3 replicas). */
static int64_t
replicas(json_t *d)
{
	int64_t r = jint(d, "replicas", 1);

	if (rs_env_int("RS_STREAM_REPLICAS", r, 1, 5, &r) != RS_OK)
		r = jint(d, "replicas", 1);
	return r;
}

/* A stream's limits: the definition's max_msgs / max_bytes / max_age_s
 * unless RS_STREAM_<NAME>_MAX_MSGS / _MAX_BYTES / _MAX_AGE_S override them
 * (docs/operations.md "Storage bounds"). A malformed value keeps the
 * definition's and says so. */
static int64_t
limit(json_t *d, const char *name, const char *key, const char *suffix, int64_t def)
{
	char var[96];
	int64_t v = jint(d, key, def);

	snprintf(var, sizeof(var), "RS_STREAM_%s_%s", name ? name : "", suffix);
	if (rs_env_int(var, v, -1, INT64_MAX / NS_PER_S, &v) != RS_OK)
		v = jint(d, key, def);
	return v;
}

static const char *
jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int
str_differs(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") != 0;
}

static int
republish_differs(const jsRePublish *a, const jsRePublish *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return str_differs(a->Source, b->Source) || str_differs(a->Destination, b->Destination) ||
	       a->HeadersOnly != b->HeadersOnly;
}

/* Compare the fields we manage; 1 if the server's config differs. */
static int
stream_differs(const jsStreamConfig *a, const jsStreamConfig *b)
{
	if (a->SubjectsLen != b->SubjectsLen || a->MaxAge != b->MaxAge ||
	    a->MaxBytes != b->MaxBytes || a->MaxMsgs != b->MaxMsgs || a->Discard != b->Discard ||
	    a->MaxMsgSize != b->MaxMsgSize || a->Duplicates != b->Duplicates ||
	    a->AllowDirect != b->AllowDirect || republish_differs(a->RePublish, b->RePublish) ||
	    str_differs(a->Description, b->Description))
		return 1;
	for (int i = 0; i < a->SubjectsLen; i++)
		if (strcmp(a->Subjects[i], b->Subjects[i]) != 0)
			return 1;
	return 0;
}

static rs_status
apply_stream(jsCtx *js, json_t *d, char *report, size_t cap)
{
	jsStreamConfig cfg;
	jsStreamInfo *si = NULL;
	jsRePublish rp;
	const char *subjects[8];
	json_t *subj = json_object_get(d, "subjects"), *rpj = json_object_get(d, "republish");
	const char *ret = jstr(d, "retention");
	jsErrCode jerr = 0;
	natsStatus s;
	size_t i;
	json_t *v;

	jsStreamConfig_Init(&cfg);
	cfg.Name = jstr(d, "name");
	cfg.Description = jstr(d, "description");
	json_array_foreach(subj, i, v) {
		if (i < 8)
			subjects[i] = json_string_value(v);
	}
	cfg.Subjects = subjects;
	cfg.SubjectsLen = (int)(json_array_size(subj) < 8 ? json_array_size(subj) : 8);
	cfg.Retention = (ret && strcmp(ret, "workqueue") == 0) ? js_WorkQueuePolicy
	              : (ret && strcmp(ret, "interest") == 0) ? js_InterestPolicy
	              : js_LimitsPolicy;
	cfg.Storage = (jstr(d, "storage") && strcmp(jstr(d, "storage"), "memory") == 0)
	              ? js_MemoryStorage : js_FileStorage;
	cfg.MaxAge = limit(d, cfg.Name, "max_age_s", "MAX_AGE_S", 0) * NS_PER_S;
	if (cfg.MaxAge < 0)
		cfg.MaxAge = 0;
	cfg.MaxBytes = limit(d, cfg.Name, "max_bytes", "MAX_BYTES", -1);
	if (cfg.MaxBytes == 0)
		cfg.MaxBytes = -1;
	cfg.MaxMsgs = limit(d, cfg.Name, "max_msgs", "MAX_MSGS", -1);
	if (cfg.MaxMsgs == 0)
		cfg.MaxMsgs = -1;
	/* discard "new": a full stream refuses appends instead of deleting
	 * its oldest messages (RUNS: never cut a run in flight). Bounded by
	 * messages only: with max_bytes, nats-server 2.9 under-counts a new
	 * message's stored size, admits it, then deletes the oldest to get
	 * back under the limit (nats-io/nats-server#4771, seen here on
	 * 2.9.10: acked commands gone from CMDS). max_msgs is exact. */
	cfg.Discard = (jstr(d, "discard") && strcmp(jstr(d, "discard"), "new") == 0)
	              ? js_DiscardNew : js_DiscardOld;
	if (cfg.Discard == js_DiscardNew && cfg.MaxBytes > 0) {
		rs_error("streams: stream %s discards new messages: bound it by messages "
		         "(RS_STREAM_%s_MAX_MSGS), not bytes: with max_bytes nats-server 2.9 can "
		         "delete its oldest messages instead (nats-io/nats-server#4771)",
		         cfg.Name, cfg.Name);
		return RS_EINVAL;
	}
	cfg.MaxMsgSize = (int32_t)jint(d, "max_msg_size", -1);
	cfg.Duplicates = jint(d, "duplicate_window_s", 120) * NS_PER_S;
	cfg.Replicas = replicas(d);
	cfg.AllowDirect = json_is_true(json_object_get(d, "allow_direct"));
	if (json_is_object(rpj)) {
		memset(&rp, 0, sizeof(rp));
		rp.Source = jstr(rpj, "src");
		rp.Destination = jstr(rpj, "dest");
		cfg.RePublish = &rp;
	}
	s = js_GetStreamInfo(&si, js, cfg.Name, NULL, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		s = js_AddStream(NULL, js, &cfg, NULL, &jerr);
		if (s == NATS_OK)
			say(report, cap, "created stream %s%s\n", cfg.Name, "");
	} else if (s == NATS_OK) {
		/* nats-server 2.9 refuses any RePublish change on an update
		 * (error 10052). A definition that dropped its RePublish (RUNS
		 * did: live watchers use ordered consumers now) keeps the
		 * server's: harmless, and only recreating the stream removes it. */
		const jsRePublish *had = si->Config->RePublish;
		int kept = had != NULL && cfg.RePublish == NULL, differs;
		char note[320] = "";
		if (kept) {
			const char *dest = had->Destination ? had->Destination : "?";
			rp = *had;      /* strings owned by si: destroyed below */
			cfg.RePublish = &rp;
			snprintf(note, sizeof(note), " (still republishes to %s; %s)", dest, KEPT_REPUBLISH);
			rs_warn("streams: stream %s still republishes to %s; %s", cfg.Name, dest, KEPT_REPUBLISH);
		}
		differs = stream_differs(si->Config, &cfg);
		if (!differs) {
			say(report, cap, "unchanged stream %s%s\n", cfg.Name, note);
			jsStreamInfo_Destroy(si);
			return RS_OK;
		}
		s = js_UpdateStream(NULL, js, &cfg, NULL, &jerr);
		if (s == NATS_OK)
			say(report, cap, "updated stream %s%s\n", cfg.Name, note);
		jsStreamInfo_Destroy(si);
	}
	if (s != NATS_OK) {
		rs_error("streams: stream %s: %s (jetstream error %d)", cfg.Name,
		         natsStatus_GetText(s), (int)jerr);
		return rs_nats_status(s, jerr);
	}
	return RS_OK;
}

static rs_status
apply_consumer(jsCtx *js, json_t *d, char *report, size_t cap)
{
	jsConsumerConfig cfg;
	jsConsumerInfo *ci = NULL;
	const char *stream = jstr(d, "stream");
	jsErrCode jerr = 0;
	natsStatus s;
	char name[160];

	jsConsumerConfig_Init(&cfg);
	cfg.Durable = jstr(d, "durable");
	cfg.Description = jstr(d, "description");
	cfg.AckPolicy = js_AckExplicit;
	cfg.AckWait = jint(d, "ack_wait_s", 30) * NS_PER_S;
	cfg.MaxDeliver = jint(d, "max_deliver", -1);
	cfg.MaxAckPending = jint(d, "max_ack_pending", 1000);
	cfg.MaxWaiting = jint(d, "max_waiting", 512);
	cfg.FilterSubject = jstr(d, "filter_subject");
	/* headers_only: the consumer sees headers, not payloads (the executor
	 * filters RUNS by Runstream-Type and reads the few it wants). */
	cfg.HeadersOnly = json_is_true(json_object_get(d, "headers_only"));
	/* deliver_policy "new": a consumer added to a stream with history
	 * starts at its end instead of replaying it. */
	if (jstr(d, "deliver_policy") != NULL && strcmp(jstr(d, "deliver_policy"), "new") == 0)
		cfg.DeliverPolicy = js_DeliverNew;
	snprintf(name, sizeof(name), "%s/%s", stream, cfg.Durable);
	s = js_GetConsumerInfo(&ci, js, stream, cfg.Durable, NULL, &jerr);
	if (s == NATS_OK) {
		int same = ci->Config->AckWait == cfg.AckWait &&
		           ci->Config->MaxDeliver == cfg.MaxDeliver &&
		           ci->Config->MaxAckPending == cfg.MaxAckPending;
		jsConsumerInfo_Destroy(ci);
		if (same) {
			say(report, cap, "unchanged consumer %s%s\n", name, "");
			return RS_OK;
		}
		s = js_UpdateConsumer(NULL, js, stream, &cfg, NULL, &jerr);
		if (s == NATS_OK)
			say(report, cap, "updated consumer %s%s\n", name, "");
	} else {
		s = js_AddConsumer(NULL, js, stream, &cfg, NULL, &jerr);
		if (s == NATS_OK)
			say(report, cap, "created consumer %s%s\n", name, "");
	}
	if (s != NATS_OK) {
		rs_error("streams: consumer %s: %s (jetstream error %d)", name,
		         natsStatus_GetText(s), (int)jerr);
		return rs_nats_status(s, jerr);
	}
	return RS_OK;
}

/*
 * A replicated bucket is read from its leader: direct gets off. nats.c
 * creates every bucket with allow_direct, and then any replica answers a
 * kvStore_Get, one just restarted from its older store at once
 * (nats-server 2.9.10): bench/chaos saw a tool-router drop a device's
 * result as "for an unknown call" that way (the run failed on its tool
 * timeout). Without allow_direct nats.c reads with STREAM.MSG.GET, which
 * the stream leader answers. Services bind after this and see it. 1 if
 * changed, 0 if already off, -1 on error.
 */
static int
kv_no_direct(jsCtx *js, const char *bucket)
{
	char name[96];
	jsStreamInfo *si = NULL, *up = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int rc = 0;

	snprintf(name, sizeof(name), "KV_%s", bucket);
	if ((s = js_GetStreamInfo(&si, js, name, NULL, &jerr)) != NATS_OK) {
		rs_error("streams: kv %s: cannot read its stream: %s (%d)", bucket, natsStatus_GetText(s),
		         (int)jerr);
		return -1;
	}
	if (si->Config->AllowDirect) {
		si->Config->AllowDirect = false;
		if ((s = js_UpdateStream(&up, js, si->Config, NULL, &jerr)) != NATS_OK) {
			rs_error("streams: kv %s: cannot turn direct gets off: %s (%d)", bucket,
			         natsStatus_GetText(s), (int)jerr);
			rc = -1;
		} else {
			rc = 1;
		}
		jsStreamInfo_Destroy(up);
	}
	jsStreamInfo_Destroy(si);
	return rc;
}

static rs_status
apply_kv(jsCtx *js, json_t *d, char *report, size_t cap)
{
	kvConfig cfg;
	kvStore *kv = NULL;
	natsStatus s;

	kvConfig_Init(&cfg);
	cfg.Bucket = jstr(d, "bucket");
	/* nats.c 3.4.1 does not escape the KV description in its JSON
	 * request: definitions must keep quotes and backslashes out of it. */
	cfg.Description = jstr(d, "description");
	if (cfg.Description != NULL && strpbrk(cfg.Description, "\"\\") != NULL) {
		rs_error("streams: kv %s: description must not contain quotes or backslashes", cfg.Bucket);
		return RS_EINVAL;
	}
	cfg.History = (uint8_t)jint(d, "history", 1);
	cfg.TTL = jint(d, "ttl_s", 0) * NS_PER_S; /* nats.c: nanoseconds */
	cfg.Replicas = (int)replicas(d);
	cfg.StorageType = js_FileStorage;
	s = js_KeyValue(&kv, js, cfg.Bucket);
	if (s == NATS_OK) {
		kvStore_Destroy(kv);
		if (cfg.Replicas > 1 && kv_no_direct(js, cfg.Bucket) == 1) {
			say(report, cap, "updated kv %s%s\n", cfg.Bucket, " (direct gets off: replicated)");
			return RS_OK;
		}
		say(report, cap, "unchanged kv %s%s\n", cfg.Bucket, "");
		return RS_OK;
	}
	s = js_CreateKeyValue(&kv, js, &cfg);
	if (s != NATS_OK) {
		rs_error("streams: kv %s: %s (%s)", cfg.Bucket, natsStatus_GetText(s), nats_GetLastError(NULL));
		return rs_nats_status(s, 0);
	}
	kvStore_Destroy(kv);
	if (cfg.Replicas > 1 && kv_no_direct(js, cfg.Bucket) < 0)
		return RS_EUNAVAIL;
	say(report, cap, "created kv %s%s\n", cfg.Bucket, "");
	return RS_OK;
}

rs_status
rs_streams_apply(jsCtx *js, char *report, size_t cap)
{
	rs_status st = RS_OK;
	char err[256];

	report[0] = '\0';
	/* Streams and KV first, consumers after: a consumer needs its stream. */
	for (int pass = 0; pass < 2 && st == RS_OK; pass++) {
		for (int i = 0; rs_streams_defs[i] != NULL && st == RS_OK; i++) {
			json_t *d = NULL;
			const char *kind;
			st = rs_json_parse(rs_streams_defs[i], strlen(rs_streams_defs[i]), &d, err, sizeof(err));
			if (st != RS_OK) {
				rs_error("streams: %s: %s", rs_streams_defs_names[i], err);
				break;
			}
			kind = jstr(d, "kind");
			if (kind == NULL) {
				st = RS_EINVAL;
			} else if (pass == 0 && strcmp(kind, "stream") == 0) {
				st = apply_stream(js, d, report, cap);
			} else if (pass == 0 && strcmp(kind, "kv") == 0) {
				st = apply_kv(js, d, report, cap);
			} else if (pass == 1 && strcmp(kind, "consumer") == 0) {
				st = apply_consumer(js, d, report, cap);
			}
			json_decref(d);
		}
	}
	return st;
}

rs_status
rs_streams_check(jsCtx *js, const char *const *names, char *missing, size_t cap)
{
	rs_status st = RS_OK;

	missing[0] = '\0';
	for (int i = 0; names[i] != NULL; i++) {
		const char *name = names[i];
		char stream[96];
		jsStreamInfo *si = NULL;
		jsErrCode jerr = 0;
		natsStatus s;

		if (strncmp(name, "kv:", 3) == 0)
			snprintf(stream, sizeof(stream), "KV_%s", name + 3);
		else
			snprintf(stream, sizeof(stream), "%s", name);
		s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
		jsStreamInfo_Destroy(si);
		if (s == NATS_OK)
			continue;
		if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
			size_t n = strlen(missing);
			snprintf(missing + n, cap - n, "%s%s", n ? ", " : "", name);
			st = RS_ENOTFOUND;
		} else {
			return rs_nats_status(s, jerr);
		}
	}
	return st;
}
