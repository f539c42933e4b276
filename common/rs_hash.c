/*
 * rs_hash.c - 64-bit FNV-1a (see rs_hash.h).
 */
#include "rs_hash.h"

uint64_t
rs_hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}
