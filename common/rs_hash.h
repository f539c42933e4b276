/*
 * rs_hash.h - the one string hash of the services' small hash tables
 * (caches, pending maps, worker choice by key): 64-bit FNV-1a. Not for
 * anything an attacker could aim at a single bucket to slow us down
 * beyond a longer chain.
 */
#ifndef RS_HASH_H
#define RS_HASH_H

#include <stdint.h>

/* FNV-1a of the NUL-terminated s; s must not be NULL. */
uint64_t rs_hash_str(const char *s);

#endif
