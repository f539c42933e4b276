/*
 * fuzz.h - what every harness in tests/fuzz shares.
 *
 * FUZZ_CHECK turns a broken property (decode -> encode -> decode not
 * stable, the fast decoder disagreeing with the reference...) into a crash
 * libFuzzer records like any other, with the condition and the input.
 * fuzz_init() makes runs reproducible: jansson's hash seed is fixed (the
 * services seed it randomly; output order never depends on it, since
 * everything we emit is dumped with sorted keys).
 */
#ifndef RS_FUZZ_H
#define RS_FUZZ_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static inline void
fuzz_init(void)
{
	json_object_seed(0x5eed);
}

/* data[0..size) as a NUL-terminated malloc'd copy (caller frees). */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

#endif
