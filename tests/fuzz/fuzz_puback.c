/*
 * fuzz_puback.c - JetStream publish acks (common/rs_nats.c): every append
 * of an event or command reads the server's answer with
 * rs_js_parse_puback, whose fast path rs_js_puback_fast reads nats-server's
 * success template without a JSON parser.
 *
 * Property: the fast path only accepts what a JSON parser reads the same
 * way (an object with a string "stream", the same integer "seq" >= 1, and
 * "duplicate" true exactly when it says so); the full parser never
 * reports success with seq 0.
 */
#include "fuzz.h"
#include "rs_nats.h"

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
	char err[256];
	uint64_t seq = 0, seq2 = 0;
	int dup = 0, dup2 = 0;
	jsErrCode jerr = 0;
	rs_status st;

	if (rs_js_puback_fast(buf, size, &seq, &dup)) {
		json_error_t je;
		json_t *v = json_loadb(buf, size, 0, &je), *s;
		if (v == NULL)
			fprintf(stderr, "fast path accepted what JSON rejects: %s\n", je.text);
		FUZZ_CHECK(v != NULL);
		s = json_object_get(v, "seq");
		FUZZ_CHECK(json_is_string(json_object_get(v, "stream")));
		FUZZ_CHECK(json_is_integer(s) && json_integer_value(s) >= 1 &&
		           (uint64_t)json_integer_value(s) == seq);
		FUZZ_CHECK(dup == json_is_true(json_object_get(v, "duplicate")));
		json_decref(v);
	}
	st = rs_js_parse_puback(buf, size, &seq2, &dup2, &jerr, err, sizeof(err));
	if (st == RS_OK)
		FUZZ_CHECK(seq2 >= 1 && (dup2 == 0 || dup2 == 1));
	else
		FUZZ_CHECK(err[0] != '\0' && (st == RS_EIO || st == RS_EINVAL));
	return 0;
}
