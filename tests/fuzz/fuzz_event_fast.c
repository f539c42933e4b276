/*
 * fuzz_event_fast.c - the fast run event decoder (common/rs_event_fast.c)
 * against the reference one, differentially: rs_event_fast.h promises the
 * same accepted inputs, the same status, the same error text and the same
 * event. tests/unit/test_event_fast.c checks that on fixtures and
 * mutations of them; here libFuzzer looks for the input where they part.
 */
#include "fuzz.h"
#include "rs_event.h"
#include "rs_event_fast.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	char e1[256] = "", e2[256] = "", *a = NULL, *b = NULL;
	rs_event s, f;
	rs_status ss, fs;

	ss = rs_event_decode(buf, size, &s, e1, sizeof(e1));
	fs = rs_event_decode_fast(buf, size, &f, e2, sizeof(e2));
	if (ss != fs || (ss != RS_OK && strcmp(e1, e2) != 0))
		fprintf(stderr, "decoders disagree: reference %d \"%s\", fast %d \"%s\"\n", (int)ss,
		        e1, (int)fs, e2);
	FUZZ_CHECK(ss == fs);
	FUZZ_CHECK(ss == RS_OK || strcmp(e1, e2) == 0);
	if (ss == RS_OK || ss == RS_ENOTFOUND) {
		FUZZ_CHECK(s.type == f.type && s.runseq == f.runseq && s.time_ms == f.time_ms);
		FUZZ_CHECK(strcmp(s.run_id, f.run_id) == 0 && strcmp(s.tenant, f.tenant) == 0);
		FUZZ_CHECK(strcmp(s.traceparent, f.traceparent) == 0);
	}
	if (ss == RS_OK) {
		FUZZ_CHECK(s.source != NULL && f.source != NULL && strcmp(s.source, f.source) == 0);
		FUZZ_CHECK(rs_event_encode(&s, &a, NULL) == RS_OK);
		FUZZ_CHECK(rs_event_encode(&f, &b, NULL) == RS_OK);
		if (strcmp(a, b) != 0)
			fprintf(stderr, "reference: %s\nfast:      %s\n", a, b);
		FUZZ_CHECK(strcmp(a, b) == 0);
	}
	if (ss == RS_OK || ss == RS_ENOTFOUND)
		rs_event_free(&s);
	if (fs == RS_OK || fs == RS_ENOTFOUND)
		rs_event_free(&f);
	free(a);
	free(b);
	return 0;
}
