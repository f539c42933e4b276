/*
 * fuzz_exec_sse.c - libFuzzer harness for the executor's model-stream
 * parser (services/executor/sse.c): whatever bytes a hostile model server
 * sends, in whatever pieces, the parser must stay within its limits and
 * never crash, leak or read out of bounds.
 *
 * The first input byte picks how the rest is cut into feeds (curl hands
 * the write callback arbitrary pieces); small limits make the caps reachable.
 * Each step then checks the parser's contract: pending text never exceeds
 * the message cap, an error is sticky, a bounded take never splits a UTF-8
 * character (the piece is valid JSON string material).
 *
 * Build (standalone; tests/fuzz is wired into meson separately):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -Icommon -Iservices/executor tests/fuzz/fuzz_exec_sse.c \
 *     services/executor/sse.c common/rs_json.c \
 *     $(pkg-config --cflags --libs jansson libcrypto) -o fuzz_exec_sse
 *   ./fuzz_exec_sse tests/fuzz/corpus/exec_sse
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const sse_limits lim = { 4096, 2048, 8 };
	size_t step, off = 1, n, len;
	sse_acc *a;
	json_t *m, *u;
	char *t;
	int rc = SSE_OK, prev = SSE_OK;

	if (size == 0)
		return 0;
	step = (size_t)(data[0] % 64) + 1;
	a = rs_exec_sse_acc_new(&lim);
	while (off < size) {
		n = size - off < step ? size - off : step;
		rc = rs_exec_sse_acc_feed(a, (const char *)data + off, n);
		if (prev < 0 && rc != prev)
			abort();                      /* errors are sticky */
		prev = rc;
		off += n;
		if (rs_exec_sse_acc_pending_text(a) > lim.max_message)
			abort();
		t = rs_exec_sse_acc_take_text(a, (size_t)(data[0] % 7) + 1, &len);
		if (t != NULL) {
			json_t *s = json_stringn(t, len);
			if (s == NULL)                /* split a UTF-8 character */
				abort();
			json_decref(s);
			free(t);
		}
		if (rc == SSE_DONE)
			break;
	}
	m = rs_exec_sse_acc_message(a);
	if (m == NULL)
		abort();
	u = rs_exec_sse_acc_usage(a);
	json_decref(u);
	json_decref(m);
	(void)rs_exec_sse_acc_finish(a);
	(void)rs_exec_sse_acc_done(a);
	(void)rs_exec_sse_acc_error(a);
	rs_exec_sse_acc_free(a);
	return 0;
}
