/*
 * check.h - the tiny assertion kit of every C unit test. A failed CHECK
 * prints where and why, counts, and lets the test go on; main() returns
 * check_report(). The counters live in check.c (linked into every unit
 * test through `check_dep`), so shared harnesses such as world.c count
 * into the same totals as the test that uses them.
 */
#ifndef RS_TEST_CHECK_H
#define RS_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

extern int checks, failures;

#define CHECK(cond) do { \
	checks++; \
	if (!(cond)) { \
		failures++; \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

/* CHECK with a printf-style explanation printed when it fails. */
#define CHECKF(cond, ...) do { \
	checks++; \
	if (!(cond)) { \
		failures++; \
		fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
	} \
} while (0)

#define CHECK_STR(got, want) do { \
	const char *g_ = (got), *w_ = (want); \
	checks++; \
	if (g_ == NULL || w_ == NULL ? g_ != w_ : strcmp(g_, w_) != 0) { \
		failures++; \
		fprintf(stderr, "%s:%d: %s\n   got: %s\n  want: %s\n", __FILE__, __LINE__, \
		        #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
	} \
} while (0)

#define CHECK_INT(got, want) do { \
	long long g_ = (long long)(got), w_ = (long long)(want); \
	checks++; \
	if (g_ != w_) { \
		failures++; \
		fprintf(stderr, "%s:%d: %s: got %lld, want %lld\n", __FILE__, __LINE__, \
		        #got, g_, w_); \
	} \
} while (0)

/* Print "<name>: N checks, M failures"; the exit status main() returns. */
int check_report(const char *name);

#endif
