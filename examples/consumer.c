/*
 * consumer.c - how another team consumes Runstream's events (docs/quickstart.md).
 *
 * A durable pull consumer on runs.<tenant>.> of stream RUNS: survives
 * restarts, resumes where it stopped, sees every event at least once. It
 * skips event types it does not care about from the Runstream-Type header
 * (no JSON parsing), decodes the CloudEvent of the others with plain jansson,
 * de-duplicates by CloudEvent id, and acks.
 *
 *   rs-example-consumer <nats-url> <tenant> <durable-name> [max-events]
 *
 * Prints one line per event: "<runseq> <type> <run_id>". Exits after
 * max-events (default: run forever). Uses only nats.c and jansson: nothing
 * of Runstream's own code, as a consumer in another team would.
 */
#include <jansson.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
handle(natsMsg *m)
{
	const char *type = NULL;
	json_error_t jerr;
	json_t *ev;

	/* Cheap filter first: the type is a header. */
	if (natsMsgHeader_Get(m, "Runstream-Type", &type) != NATS_OK)
		return 0;
	ev = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &jerr);
	if (ev == NULL) {
		fprintf(stderr, "undecodable event: %s\n", jerr.text);
		return 0;
	}
	printf("%lld %s %s\n",
	       (long long)json_integer_value(json_object_get(ev, "runseq")), type,
	       json_string_value(json_object_get(ev, "subject")));
	fflush(stdout);
	json_decref(ev);
	return 1;
}

int
main(int argc, char **argv)
{
	natsOptions *opts = NULL;
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	const char *user = getenv("RS_NATS_USER"), *pass = getenv("RS_NATS_PASSWORD");
	char inbox[128];
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsMsgList list;
	char filter[128];
	long max = argc > 4 ? atol(argv[4]) : -1, seen = 0;
	int rc = 1;

	if (argc < 4) {
		fprintf(stderr, "usage: %s <nats-url> <tenant> <durable> [max-events]\n"
		        "(credentials, if any: RS_NATS_USER, RS_NATS_PASSWORD)\n", argv[0]);
		return 2;
	}
	snprintf(filter, sizeof(filter), "runs.%s.>", argv[2]);
	/* Credentials from `runctl consumers grant`: a user may subscribe only
	 * to its own inbox prefix, _INBOX_<user> (docs/quickstart.md). */
	if (natsOptions_Create(&opts) != NATS_OK || natsOptions_SetURL(opts, argv[1]) != NATS_OK)
		goto cleanup;
	if (user != NULL && pass != NULL) {
		snprintf(inbox, sizeof(inbox), "_INBOX_%s", user);
		natsOptions_SetUserInfo(opts, user, pass);
		natsOptions_SetCustomInboxPrefix(opts, inbox);
	}
	if (natsConnection_Connect(&nc, opts) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
		fprintf(stderr, "cannot connect to %s\n", argv[1]);
		goto cleanup;
	}
	jsSubOptions_Init(&so);
	so.Stream = "RUNS";
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.DeliverPolicy = js_DeliverAll;
	if (js_PullSubscribe(&sub, js, filter, argv[3], NULL, &so, &jerr) != NATS_OK) {
		fprintf(stderr, "cannot create consumer %s: %s (%d)\n", argv[3],
		        nats_GetLastError(NULL), (int)jerr);
		goto cleanup;
	}
	while (max < 0 || seen < max) {
		natsStatus s = natsSubscription_Fetch(&list, sub, 64, 5000, &jerr);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			fprintf(stderr, "fetch: %s\n", natsStatus_GetText(s));
			goto cleanup;
		}
		for (int i = 0; i < list.Count; i++) {
			seen += handle(list.Msgs[i]);
			/* Ack after handling: a crash before this redelivers the event,
			 * which is why consumers de-duplicate by CloudEvent id. */
			natsMsg_Ack(list.Msgs[i], NULL);
		}
		natsMsgList_Destroy(&list);
	}
	rc = 0;
cleanup:
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(opts);
	nats_Close();
	return rc;
}
