/*
 * rs_id.h - identifiers.
 *
 * Run ids are UUIDv7 (RFC 9562): 48-bit Unix ms timestamp first, so the
 * lexical order of the canonical text form is creation order. Within one
 * millisecond a process keeps them increasing with a counter in rand_a.
 */
#ifndef RS_ID_H
#define RS_ID_H

#include <stddef.h>
#include <stdint.h>
#include "rs_status.h"

#define RS_UUID_LEN 36 /* canonical text, without the NUL */

/* Write a new UUIDv7 (lowercase, 36 chars + NUL) into out[37]. Thread-safe. */
void rs_id_uuidv7(char out[RS_UUID_LEN + 1]);

/* Same, with an explicit timestamp (for tests). */
void rs_id_uuidv7_at(int64_t ms, char out[RS_UUID_LEN + 1]);

/* The Unix ms embedded in a UUIDv7, or -1 if s is not a UUIDv7. */
int64_t rs_id_uuidv7_ms(const char *s);

/* 1 if s is a canonical lowercase UUID (any version). */
int rs_id_is_uuid(const char *s);

/* Fill out with n random bytes as 2n lowercase hex chars + NUL. */
rs_status rs_id_random_hex(char *out, size_t n);

/* 1 if s is a valid NATS subject token for tenant/device/agent names:
 * [a-z0-9_-]{1,max}. */
int rs_id_is_token(const char *s, size_t max);

/* 1 if s can stand as one token of a NATS subject built from outside input
 * (a call id in toolcalls.<tenant>.<call_id>): non-empty, no '.', '*',
 * '>', whitespace, control characters or DEL. */
int rs_id_is_subject_token(const char *s);

#endif
