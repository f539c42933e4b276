/*
 * fuzz_event.c - the reference run event decoder (common/rs_event.c,
 * rs_event_decode) on arbitrary bytes: what any NATS client that can
 * publish to runs.> (or a file given to `runctl replay --file`) can feed
 * every consumer.
 *
 * Properties checked on every accepted event: it encodes (the decoder only
 * accepts what the contract allows, and encode refuses only what breaks
 * it), both encoders give the same bytes, and decode -> encode -> decode
 * -> encode is a fixed point. And the command `runctl replay --check`
 * rebuilds from an event that opens a decision (common/rs_replay.c) is one
 * the orchestrator would accept: it encodes and decodes back.
 */
#include "fuzz.h"
#include "rs_cmd.h"
#include "rs_event.h"
#include "rs_replay.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

static void
replayed_command(const rs_event *ev)
{
	char err[256] = "", *buf = NULL;
	size_t len = 0;
	rs_cmd c, back;
	int is_cmd = 0;
	rs_status st;

	FUZZ_CHECK(rs_replay_cmd_from_event(ev, &c, &is_cmd) == RS_OK);
	FUZZ_CHECK(is_cmd == rs_replay_opens_group(ev));
	if (!is_cmd)
		return;
	st = rs_cmd_encode(&c, &buf, &len);
	if (st != RS_OK)
		fprintf(stderr, "command rebuilt from a %s does not encode (%d)\n",
		        rs_event_type_name(ev->type), (int)st);
	FUZZ_CHECK(st == RS_OK);
	st = rs_cmd_decode(buf, len, &back, err, sizeof(err));
	if (st != RS_OK)
		fprintf(stderr, "rebuilt command does not decode: %s\n%.*s\n", err, (int)len, buf);
	FUZZ_CHECK(st == RS_OK && back.type == c.type);
	rs_cmd_free(&back);
	rs_cmd_free(&c);
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "", *a = NULL, *t = NULL, *b = NULL;
	size_t alen = 0, tlen = 0, blen = 0;
	rs_event ev, ev2;
	rs_status st;

	st = rs_event_decode((const char *)data, size, &ev, err, sizeof(err));
	if (st == RS_ENOTFOUND) {
		/* a valid envelope of an unknown type: nothing to free but
		 * what the decoder documents; freeing must be harmless */
		FUZZ_CHECK(ev.type == RS_EV__COUNT);
		rs_event_free(&ev);
		return 0;
	}
	if (st != RS_OK) {
		FUZZ_CHECK(err[0] != '\0');
		return 0;
	}
	FUZZ_CHECK(ev.type < RS_EV__COUNT && ev.runseq >= 1);
	FUZZ_CHECK(rs_event_encode(&ev, &a, &alen) == RS_OK);
	FUZZ_CHECK(strlen(a) == alen);
	FUZZ_CHECK(rs_event_encode_tree(&ev, &t, &tlen) == RS_OK);
	FUZZ_CHECK(tlen == alen && memcmp(a, t, alen) == 0);
	st = rs_event_decode(a, alen, &ev2, err, sizeof(err));
	if (st != RS_OK)
		fprintf(stderr, "re-decode: %s\n%.*s\n", err, (int)alen, a);
	FUZZ_CHECK(st == RS_OK);
	FUZZ_CHECK(ev2.type == ev.type && ev2.runseq == ev.runseq && ev2.time_ms == ev.time_ms);
	FUZZ_CHECK(rs_event_encode(&ev2, &b, &blen) == RS_OK);
	FUZZ_CHECK(blen == alen && memcmp(a, b, alen) == 0);
	replayed_command(&ev);
	rs_event_free(&ev2);
	rs_event_free(&ev);
	free(a);
	free(t);
	free(b);
	return 0;
}
