/*
 * cmd_export.c - `runctl export <run_id> > run.ndjson`: a run's history as
 * one self-contained file for a bug report. Line 1 is a header carrying
 * the agent definition the run is pinned to, so `runctl replay --file
 * run.ndjson --check` needs no server; every other line is a CloudEvent
 * exactly as stored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "rs_json.h"
#include "runctl.h"

static const char *const export_flags[] = { "file", "from-pg", "pg", "tenant", "agent-file", NULL };

typedef struct {
	int argc;
	char **argv;
	rs_nats *n;
	FILE *out;
	json_t *embedded;   /* agent from an export file being re-exported */
	size_t events;
	int terminal;       /* the last event written is terminal */
	int rc;
} export_ctx;

/* The definition for the header; NULL (with a warning) if unavailable. */
static json_t *
header_agent(export_ctx *x, const rs_event *ev)
{
	const char *file = rs_ctl_flag(x->argc, x->argv, "agent-file", NULL);
	json_t *def = NULL;
	char err[512];
	rs_nats local;
	int own;

	if (file == NULL && x->embedded != NULL)
		return json_incref(x->embedded);
	if (file != NULL) {
		json_error_t je;
		if ((def = json_load_file(file, JSON_REJECT_DUPLICATES, &je)) == NULL)
			fprintf(stderr, "runctl export: --agent-file %s: %s\n", file, je.text);
		return def;
	}
	if (ev->type != RS_EV_RUN_CREATED) {
		fprintf(stderr, "runctl export: warning: the history does not start with run.created; "
		        "no agent definition embedded\n");
		return NULL;
	}
	own = x->n->nc == NULL;
	if (own && rs_ctl_nats(&local, x->argc, x->argv) != RC_OK) {
		fprintf(stderr, "runctl export: warning: agent definition not embedded (give --agent-file)\n");
		return NULL;
	}
	if (rs_ctl_agents_fetch(own ? &local : x->n, ev->tenant, ev->d.run_created.agent,
	                 ev->d.run_created.version, &def, err, sizeof(err)) != RC_OK)
		fprintf(stderr, "runctl export: warning: %s; the file cannot be checked offline "
		        "without --agent-file\n", err);
	if (own)
		rs_nats_close(&local, 1000);
	return def;
}

static int
export_event(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	export_ctx *x = ctx;

	if (x->events++ == 0) {
		json_t *def = header_agent(x, ev);
		json_t *h = json_pack("{s:i,s:s,s:s,s:o}", "runstream_export", 1, "run_id", ev->run_id,
		                      "tenant", ev->tenant, "agent", def ? def : json_null());
		char *txt = rs_json_dump(h);
		fprintf(x->out, "%s\n", txt);
		free(txt);
		json_decref(h);
	}
	fwrite(raw, 1, len, x->out);
	fputc('\n', x->out);
	x->terminal = rs_event_type_terminal(ev->type);
	return ferror(x->out) ? RC_FAIL : RC_OK;
}

int
rs_ctl_export_run(rs_nats *n, const hist_src *src, FILE *out, size_t *events, int *terminal,
                  char *err, size_t cap)
{
	static char *noargs[] = { "archive", NULL };
	export_ctx x;
	int rc;

	memset(&x, 0, sizeof(x));
	x.argc = 1;
	x.argv = noargs;
	x.n = n;
	x.out = out;
	rc = rs_ctl_hist_read(src, export_event, &x, &x.embedded, err, cap);
	json_decref(x.embedded);
	*events = x.events;
	*terminal = x.terminal;
	return rc;
}

int
rs_ctl_cmd_export(int argc, char **argv)
{
	const char *cmd = "export";
	export_ctx x;
	hist_src src;
	char err[512];
	rs_nats n;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, export_flags)) != RC_OK)
		return rc;
	if ((rc = rs_ctl_hist_src_from_args(argc, argv, cmd, rs_ctl_arg(argc, argv, 0), &src, &n)) != RC_OK)
		return rc;
	memset(&x, 0, sizeof(x));
	x.argc = argc;
	x.argv = argv;
	x.n = &n;
	x.out = stdout;
	rc = rs_ctl_hist_read(&src, export_event, &x, &x.embedded, err, sizeof(err));
	if (rc != RC_OK)
		rs_ctl_out_err(rc, cmd, "%s", err[0] ? err : "cannot write the output");
	else if (fflush(stdout) != 0)
		rc = rs_ctl_out_err(RC_FAIL, cmd, "cannot write the output");
	else
		fprintf(stderr, "runctl export: %zu events\n", x.events);
	json_decref(x.embedded);
	rs_nats_close(&n, 1000);
	return rc;
}
