/*
 * rs_streams.h - JetStream streams, consumers and KV buckets as data.
 *
 * The definitions live in streams/ as *.json files (one object per file, "kind" is
 * stream | consumer | kv) and are embedded in the binaries at build time.
 * rs_streams_apply() creates what is missing and updates what differs, so
 * running it twice changes nothing; rs_streams_check() is what services call
 * at start-up to say precisely what is missing.
 */
#ifndef RS_STREAMS_H
#define RS_STREAMS_H

#include <nats/nats.h>
#include <stddef.h>
#include "rs_status.h"

/* Embedded definitions (NULL-terminated), and their file names. */
extern const char *const rs_streams_defs[];
extern const char *const rs_streams_defs_names[];

/* Create or update every definition. Writes one line per object into
 * report ("created stream RUNS", "unchanged kv presence", ...). A stream
 * whose definition has no RePublish but whose server config still has one
 * keeps it (nats-server 2.9 cannot change RePublish on an update): its line
 * says so and a warning is logged; that is not an error. */
rs_status rs_streams_apply(jsCtx *js, char *report, size_t cap);

/* Check that the named streams (e.g. "RUNS") and KV buckets exist. names is
 * NULL-terminated; a bucket is written "kv:presence". On RS_ENOTFOUND,
 * missing lists them, comma-separated. */
rs_status rs_streams_check(jsCtx *js, const char *const *names, char *missing,
                           size_t cap);

#endif
