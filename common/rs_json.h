/*
 * rs_json.h - strict JSON in, deterministic JSON out (jansson).
 *
 * Input from outside is parsed with duplicate keys rejected and a nesting
 * depth cap; errors carry line/column/position. Output is compact with
 * sorted keys so the same value always yields the same bytes (hashing of
 * agent definitions, golden files).
 */
#ifndef RS_JSON_H
#define RS_JSON_H

#include <jansson.h>
#include <stddef.h>
#include "rs_status.h"

#define RS_JSON_MAX_DEPTH 64

/* Parse buf[0..len). On success *out is a new reference (caller decrefs).
 * On failure writes a human message such as
 * "invalid JSON at line 1, column 7 (position 6): ..." into err. */
rs_status rs_json_parse(const char *buf, size_t len, json_t **out,
                        char *err, size_t errcap);

/* Make s (NUL-terminated, in place) valid UTF-8 by replacing every byte
 * that does not belong to a well-formed sequence (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF) with '?'. For text that
 * quotes a client's bytes (a parse error, a path) and is about to become a
 * JSON string: jansson refuses invalid UTF-8, and the answer would be lost. */
void rs_json_scrub_utf8(char *s);

/* Nesting depth of v (a scalar is 0, [] is 1). */
int rs_json_depth(const json_t *v);

/* Canonical encoding: compact, sorted keys. Caller frees with free(). */
char *rs_json_dump(const json_t *v);

/* Look up a dotted path ("a.b.0.c": numeric tokens index arrays) in v.
 * Borrowed reference or NULL. */
json_t *rs_json_path(json_t *v, const char *path);

/* rs_sha256_hex lives in rs_hash.h; included here for the callers that
 * found it in this header. */
#include "rs_hash.h"

#endif
