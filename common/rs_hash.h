/*
 * rs_hash.h - the two hashes of the tree. The one string hash of the
 * services' small hash tables (caches, pending maps, worker choice by
 * key): 64-bit FNV-1a, not for anything an attacker could aim at a single
 * bucket to slow us down beyond a longer chain. And SHA-256 as hex, for
 * what must not collide.
 */
#ifndef RS_HASH_H
#define RS_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a of the NUL-terminated s; s must not be NULL. */
uint64_t rs_hash_str(const char *s);

/* SHA-256 of data as 64 lowercase hex chars + NUL into out[65] (content
 * ids, key hashes, idempotency hashes: anything that must not collide). */
void rs_sha256_hex(const void *data, size_t len, char out[65]);

/* The value of one hex digit (either case), or -1. */
int rs_hex_digit(char c);

#endif
