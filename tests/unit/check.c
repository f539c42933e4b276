/*
 * check.c - the counters and the report of check.h, one copy for a whole
 * test program (its own file plus any shared harness such as world.c).
 */
#include "check.h"

int checks, failures;

int
check_report(const char *name)
{
	printf("%s: %d checks, %d failures\n", name, checks, failures);
	return failures ? 1 : 0;
}
