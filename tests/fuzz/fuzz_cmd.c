/*
 * fuzz_cmd.c - the internal message decoders of common/rs_cmd.c on
 * arbitrary bytes: commands to the orchestrator (CMDS; the api, routers
 * and executor publish them, and device and model output travels inside)
 * and tool calls to the routers (TOOLCALLS). Both decoders see every input.
 *
 * Properties: an accepted command or tool call encodes, and decode ->
 * encode -> decode -> encode is a fixed point; the subject and
 * de-duplication id built from it stay within their buffers.
 */
#include "fuzz.h"
#include "rs_cmd.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

static void
command(const char *buf, size_t size)
{
	char err[256] = "", subj[256], msgid[256], *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	rs_cmd c, c2;
	rs_status st;

	st = rs_cmd_decode(buf, size, &c, err, sizeof(err));
	if (st != RS_OK) {
		FUZZ_CHECK(err[0] != '\0');
		return;
	}
	FUZZ_CHECK(c.type < RS_CMD__COUNT);
	rs_cmd_subject(c.tenant, c.run_id, subj, sizeof(subj));
	rs_cmd_msg_id(&c, msgid, sizeof(msgid));
	FUZZ_CHECK(strlen(subj) < sizeof(subj) && strlen(msgid) < sizeof(msgid));
	st = rs_cmd_encode(&c, &a, &alen);
	if (st != RS_OK)
		fprintf(stderr, "decoded command does not encode (%d)\n", (int)st);
	FUZZ_CHECK(st == RS_OK);
	st = rs_cmd_decode(a, alen, &c2, err, sizeof(err));
	if (st != RS_OK)
		fprintf(stderr, "re-decode: %s\n%.*s\n", err, (int)alen, a);
	FUZZ_CHECK(st == RS_OK && c2.type == c.type);
	FUZZ_CHECK(rs_cmd_encode(&c2, &b, &blen) == RS_OK);
	FUZZ_CHECK(blen == alen && memcmp(a, b, alen) == 0);
	rs_cmd_free(&c2);
	rs_cmd_free(&c);
	free(a);
	free(b);
}

static void
toolcall(const char *buf, size_t size)
{
	char err[256] = "", *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	rs_toolcall t, t2;
	rs_status st;

	st = rs_toolcall_decode(buf, size, &t, err, sizeof(err));
	if (st != RS_OK) {
		FUZZ_CHECK(err[0] != '\0');
		return;
	}
	st = rs_toolcall_encode(&t, &a, &alen);
	if (st != RS_OK)
		fprintf(stderr, "decoded tool call does not encode (%d)\n", (int)st);
	FUZZ_CHECK(st == RS_OK);
	st = rs_toolcall_decode(a, alen, &t2, err, sizeof(err));
	if (st != RS_OK)
		fprintf(stderr, "re-decode: %s\n%.*s\n", err, (int)alen, a);
	FUZZ_CHECK(st == RS_OK && t2.cancel == t.cancel);
	FUZZ_CHECK(rs_toolcall_encode(&t2, &b, &blen) == RS_OK);
	FUZZ_CHECK(blen == alen && memcmp(a, b, alen) == 0);
	rs_toolcall_free(&t2);
	rs_toolcall_free(&t);
	free(a);
	free(b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	command((const char *)data, size);
	toolcall((const char *)data, size);
	return 0;
}
