/*
 * rs_mem.h - the one out-of-memory policy of the tree (docs/architecture.md,
 * "Out of memory").
 *
 * A failed allocation is not an error a caller can handle: no Runstream
 * process can do useful work without memory, and a half-built structure
 * handed on is worse than a crash, because an un-acked message is simply
 * redelivered to another instance. So allocation never returns NULL: these
 * wrappers log one line naming the size and abort() - in one place, like
 * Redis' zmalloc. Code that allocates calls them instead of checking.
 *
 * Ownership: what they return belongs to the caller, freed with free().
 */
#ifndef RS_MEM_H
#define RS_MEM_H

#include <stddef.h>

/* Log "out of memory" with the size asked for, then abort(). */
_Noreturn void rs_oom(size_t size);

void *rs_xmalloc(size_t size);              /* never NULL (size 0: 1 byte) */
void *rs_xcalloc(size_t n, size_t size);    /* zeroed; n * size overflow aborts */
void *rs_xrealloc(void *p, size_t size);    /* never NULL */
char *rs_xstrdup(const char *s);            /* NULL in, NULL out */

#endif
