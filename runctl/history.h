/*
 * history.h - where runctl reads a run's events from: an export file
 * (ndjson), JetStream (stream RUNS) or Postgres (run_events). Every source
 * decodes each event once and hands it to a callback, so `replay` can
 * stream a million events without holding them, while `--check`, `diff`
 * and `export` collect them in an hist_buf.
 */
#ifndef RUNCTL_HISTORY_H
#define RUNCTL_HISTORY_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "rs_event.h"
#include "rs_nats.h"

/* The first line of an export file carries the agent definition:
 * {"runstream_export":1,"run_id":...,"tenant":...,"agent":{...}}. */
#define HIST_EXPORT_KEY "runstream_export"

typedef struct {
	const char *file;       /* --file: read this ndjson ("-" = stdin) */
	const char *pg_url;     /* --from-pg: read Postgres run_events */
	const char *run_id;     /* JetStream / Postgres */
	const char *tenant;     /* optional: literal subject instead of runs.*.<id> */
	rs_nats *nats;          /* JetStream: a connected client */
} hist_src;

/* Called once per event, in order. raw/len is the CloudEvent text. ev is
 * freed by the caller after the callback returns (the callback may steal
 * its contents by zeroing *ev). A non-zero return stops the scan and
 * becomes its result. */
typedef int (*hist_fn)(void *ctx, rs_event *ev, const char *raw, size_t len);

/* Read the history. Returns an RC_* code: RC_NOTFOUND if the run has no
 * events, RC_DOWN if a server is unreachable, RC_FAIL for bad data (err
 * says which line/event and why). *agent (optional) receives the agent
 * definition embedded in an export file (new reference) or NULL. */
int rs_ctl_hist_read(const hist_src *src, hist_fn fn, void *ctx, json_t **agent,
              char *err, size_t cap);

/* The same over a buffer in memory (the file path uses it after one big
 * read; the benchmark and the unit tests call it directly). name labels
 * errors ("run.ndjson:12: ..."). */
int rs_ctl_hist_scan(const char *buf, size_t len, const char *name, hist_fn fn, void *ctx,
              json_t **agent, char *err, size_t cap);

/* A whole history in memory. */
typedef struct {
	rs_event *ev;
	char **raw;         /* the CloudEvent texts, NUL-terminated */
	size_t n, cap;
} hist_buf;

/* hist_fn that appends to a hist_buf (ctx), stealing the event. */
int rs_ctl_hist_collect(void *ctx, rs_event *ev, const char *raw, size_t len);
void rs_ctl_hist_buf_free(hist_buf *b);



/* Fill src from a command line: --file F, --from-pg [--pg URL], else
 * JetStream (connects *n; the caller closes it with rs_nats_close).
 * run_id may be NULL with --file. Returns an RC_* code, having printed
 * what to do on failure. */
int rs_ctl_hist_src_from_args(int argc, char **argv, const char *cmd, const char *run_id,
                       hist_src *src, rs_nats *n);
/* cmd_export.c: write src's history to out in the `runctl export` format
 * (header line with the agent definition, then every event as stored).
 * *events counts them; *terminal says whether the last one is terminal.
 * Returns an RC_* code as rs_ctl_hist_read does. */
int rs_ctl_export_run(rs_nats *n, const hist_src *src, FILE *out, size_t *events, int *terminal,
                      char *err, size_t cap);

#endif
