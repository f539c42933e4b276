/*
 * rs_mem.c - allocation that never returns NULL: the one place the tree
 * aborts on out-of-memory (rs_mem.h says why). The log line goes through
 * rs_log, which formats on the stack and writes with write(2): it needs no
 * memory of its own.
 */
#include "rs_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rs_log.h"

void
rs_oom(size_t size)
{
	rs_error("out of memory allocating %zu bytes: aborting", size);
	abort();
}

void *
rs_xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		rs_oom(size);
	return p;
}

void *
rs_xcalloc(size_t n, size_t size)
{
	void *p;

	if (size != 0 && n > SIZE_MAX / size)
		rs_oom(SIZE_MAX);
	if ((p = calloc(n ? n : 1, size ? size : 1)) == NULL)
		rs_oom(n * size);
	return p;
}

void *
rs_xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);

	if (q == NULL)
		rs_oom(size);
	return q;
}

char *
rs_xstrdup(const char *s)
{
	size_t n;
	char *d;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	d = rs_xmalloc(n);
	memcpy(d, s, n);
	return d;
}
