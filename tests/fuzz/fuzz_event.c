/*
 * fuzz_event.c - the reference run event decoder (common/rs_event.c,
 * rs_event_decode) on arbitrary bytes: what any NATS client that can
 * publish to runs.> (or a file given to `runctl replay --file`) can feed
 * every consumer.
 *
 * Properties checked on every accepted event: it encodes (the decoder only
 * accepts what the contract allows, and encode refuses only what breaks
 * it), both encoders give the same bytes, and decode -> encode -> decode
 * -> encode is a fixed point.
 */
#include "fuzz.h"
#include "rs_event.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
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
	rs_event_free(&ev2);
	rs_event_free(&ev);
	free(a);
	free(t);
	free(b);
	return 0;
}
