/*
 * sm_check.h - the tiny assertion kit of the state-machine unit tests
 * (test_agent, test_template, test_run). A failed CHECK prints where and
 * why, counts, and lets the test go on; main() returns sm_report().
 */
#ifndef SM_CHECK_H
#define SM_CHECK_H

#include <stdio.h>
#include <string.h>

static int sm_checks, sm_failures;

#define CHECK(cond) do { \
	sm_checks++; \
	if (!(cond)) { \
		sm_failures++; \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
	} \
} while (0)

#define CHECK_STR(got, want) do { \
	const char *g_ = (got), *w_ = (want); \
	sm_checks++; \
	if (g_ == NULL || w_ == NULL ? g_ != w_ : strcmp(g_, w_) != 0) { \
		sm_failures++; \
		fprintf(stderr, "%s:%d: %s\n   got: %s\n  want: %s\n", __FILE__, __LINE__, \
		        #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
	} \
} while (0)

#define CHECK_INT(got, want) do { \
	long long g_ = (long long)(got), w_ = (long long)(want); \
	sm_checks++; \
	if (g_ != w_) { \
		sm_failures++; \
		fprintf(stderr, "%s:%d: %s: got %lld, want %lld\n", __FILE__, __LINE__, \
		        #got, g_, w_); \
	} \
} while (0)

static int
sm_report(const char *name)
{
	printf("%s: %d checks, %d failures\n", name, sm_checks, sm_failures);
	return sm_failures ? 1 : 0;
}

#endif
