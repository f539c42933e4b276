/*
 * cmd_replay.c - `runctl replay`: a run's timeline, its state after any
 * event (--at), and a check of the recorded history against today's state
 * machine (--check).
 *
 * --at adds to rs_run_view the run's http requests and model turns
 * (rs_effects.h), when it has any.
 *
 * --check is how an orchestrator upgrade is proven safe for runs in
 * flight: every group of events in the log was appended by one decision
 * of the orchestrator, caused by one command. We rebuild that command
 * from the group's first event (rs_replay.h: the same mapping the state
 * machine tests check), ask today's rs_run_decide (the same code the
 * orchestrator links) what it would append in the state before the
 * group, and compare. Times are ignored: decide is given the recorded
 * time as "now", so deadlines and due times must match exactly.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_effects.h"
#include "rs_mem.h"
#include "history.h"
#include "rs_agent.h"
#include "rs_config.h"
#include "rs_json.h"
#include "rs_replay.h"
#include "rs_run.h"
#include "timeline.h"
#include "runctl.h"

static const char *const replay_flags[] = {
	"file", "from-pg", "pg", "tenant", "at", "check", "agent-file", NULL
};

/* ---- timeline ---- */

/* A child run seen in a history (child.started, child.finished). */
typedef struct {
	char id[40], key[72], status[16];
} tl_child;

#define TREE_MAX_CHILDREN 256   /* shown per run; the rest is counted */
#define TREE_MAX_DEPTH    4     /* RS_AGENT_MAX_DEPTH levels below the root */

typedef struct {
	tl_child kids[TREE_MAX_CHILDREN];
	size_t n, more;
	char status[16];     /* the run's own terminal status, "" while running */
} tl_kids;

typedef struct {
	tl_summary sum;
	json_t *rows;        /* --json: collected rows */
	int64_t start_ms;
	tl_kids *kids;
} tl_ctx;

static void
kids_add(tl_kids *k, const rs_event *ev)
{
	if (ev->type == RS_EV_CHILD_STARTED) {
		if (k->n == TREE_MAX_CHILDREN) {
			k->more++;
			return;
		}
		snprintf(k->kids[k->n].id, sizeof(k->kids[0].id), "%s", ev->d.child_started.child_run_id);
		snprintf(k->kids[k->n].key, sizeof(k->kids[0].key), "%s", ev->d.child_started.key);
		snprintf(k->kids[k->n].status, sizeof(k->kids[0].status), "running");
		k->n++;
	} else if (ev->type == RS_EV_CHILD_FINISHED) {
		for (size_t i = 0; i < k->n; i++)
			if (strcmp(k->kids[i].id, ev->d.child_finished.child_run_id) == 0)
				snprintf(k->kids[i].status, sizeof(k->kids[0].status), "%s",
				         ev->d.child_finished.status);
	} else if (rs_event_type_terminal(ev->type)) {
		snprintf(k->status, sizeof(k->status), "%s", rs_event_type_name(ev->type) + 4);
	}
}

static int
kids_event(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	kids_add(ctx, ev);
	return RC_OK;
}

/* The tree of child runs below a run: each child with its key and status,
 * its own children read from the same source (not from a --file export,
 * which holds one run). JSON: [{run_id, key, status, children}]. */
static json_t *
tree(const hist_src *src, const tl_kids *k, int depth, int print)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < k->n; i++) {
		const tl_child *c = &k->kids[i];
		tl_kids *sub = calloc(1, sizeof(*sub));
		hist_src s2 = *src;
		char err[256];
		json_t *o;

		if (sub == NULL)
			break;
		if (print)
			printf("%*s%s %s  %s\n", 2 * depth, "", c->key, c->id, c->status);
		o = json_pack("{s:s, s:s, s:s}", "run_id", c->id, "key", c->key, "status", c->status);
		s2.run_id = c->id;
		if (src->file == NULL && depth < TREE_MAX_DEPTH &&
		    rs_ctl_hist_read(&s2, kids_event, sub, NULL, err, sizeof(err)) == RC_OK && sub->n > 0)
			json_object_set_new(o, "children", tree(src, sub, depth + 1, print));
		json_array_append_new(arr, o);
		free(sub);
	}
	if (k->more > 0 && print)
		printf("%*s... and %zu more\n", 2 * depth, "", k->more);
	return arr;
}

static int
timeline_event(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	tl_ctx *t = ctx;
	char line[512];
	tl_row row;

	if (t->sum.events == 0) {
		t->start_ms = ev->time_ms;
		if (!rs_ctl_out_json()) {
			printf("%srun %s  tenant %s%s\n", rs_ctl_out_on(OUT_BOLD), ev->run_id, ev->tenant, rs_ctl_out_off());
			printf("%s\n", rs_ctl_tl_header());
		}
	}
	rs_ctl_tl_summary_add(&t->sum, ev);
	kids_add(t->kids, ev);
	rs_ctl_tl_row_of(ev, t->start_ms, &row);
	if (rs_ctl_out_json()) {
		json_array_append_new(t->rows, rs_ctl_tl_row_json(&row));
		return RC_OK;
	}
	static const out_color colors[] = {
		[TL_NONE] = OUT_PLAIN, [TL_WAIT] = OUT_YELLOW, [TL_RETRY] = OUT_MAGENTA,
		[TL_FAIL] = OUT_RED, [TL_DONE] = OUT_GREEN,
	};
	rs_ctl_tl_format_row(&row, rs_ctl_out_on(colors[row.mark]), rs_ctl_out_off(), line, sizeof(line));
	puts(line);
	return RC_OK;
}

static int
replay_timeline(const hist_src *src, const char *cmd)
{
	char err[512], sum[256];
	tl_ctx t;
	int rc;

	memset(&t, 0, sizeof(t));
	rs_ctl_tl_summary_init(&t.sum);
	t.rows = json_array();
	if ((t.kids = calloc(1, sizeof(*t.kids))) == NULL)
		rs_oom(0);
	rc = rs_ctl_hist_read(src, timeline_event, &t, NULL, err, sizeof(err));
	if (rc != RC_OK) {
		json_decref(t.rows);
		free(t.kids);
		return rs_ctl_out_err(rc, cmd, "%s", err);
	}
	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:o,s:O}", "summary", rs_ctl_tl_summary_json(&t.sum), "events", t.rows);
		if (t.kids->n > 0)
			json_object_set_new(doc, "children", tree(src, t.kids, 1, 0));
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else {
		rs_ctl_tl_summary_format(&t.sum, sum, sizeof(sum));
		printf("%s%s (agent %s@%s)%s\n", rs_ctl_out_on(OUT_BOLD), sum, t.sum.agent, t.sum.version,
		       rs_ctl_out_off());
		if (t.kids->n > 0) {
			printf("children (key, run, status):\n");
			json_decref(tree(src, t.kids, 1, 1));
		}
	}
	json_decref(t.rows);
	free(t.kids);
	return RC_OK;
}

/* ---- --at SEQ ---- */

typedef struct {
	rs_run *run;
	rs_eff_track effects;   /* http requests and model turns (rs_effects.h) */
	uint64_t at;
	int reached;
	char err[300];
} at_ctx;

static int
at_event(void *ctx, rs_event *ev, const char *raw, size_t len)
{
	at_ctx *a = ctx;

	if (a->reached)
		return RC_OK;   /* keep reading: a stream source ends by itself */
	if (rs_run_evolve(a->run, ev, a->err, sizeof(a->err)) != RS_OK)
		return RC_FAIL;
	rs_eff_add(&a->effects, ev);
	if (ev->runseq == a->at)
		a->reached = 1;
	return RC_OK;
}

static int
replay_at(const hist_src *src, const char *cmd, const char *at_s)
{
	char err[512];
	int64_t at;
	at_ctx a;
	json_t *view;
	int rc;

	if (rs_parse_int(at_s, 1, INT64_MAX, &at) != RS_OK)
		return rs_ctl_out_err(RC_USAGE, cmd, "--at needs an event sequence number >= 1, not '%s'", at_s);
	memset(&a, 0, sizeof(a));
	a.run = rs_run_new();
	rs_eff_init(&a.effects);
	a.at = (uint64_t)at;
	rc = rs_ctl_hist_read(src, at_event, &a, NULL, err, sizeof(err));
	if (rc == RC_FAIL && a.err[0] != '\0') {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "the state machine rejects the history: %s", a.err);
		goto cleanup;
	}
	if (rc != RC_OK) {
		rc = rs_ctl_out_err(rc, cmd, "%s", err);
		goto cleanup;
	}
	if (!a.reached) {
		rc = rs_ctl_out_err(RC_NOTFOUND, cmd, "the run has only %" PRIu64 " events; --at %" PRId64
		             " is past its end", rs_run_last_seq(a.run), at);
		goto cleanup;
	}
	view = rs_run_view(a.run);
	/* Only a run with http/llm steps has them: other views stay as is. */
	if (json_array_size(rs_eff_list(&a.effects)) > 0)
		json_object_set(view, "effects", rs_eff_list(&a.effects));
	if (!rs_ctl_out_json())
		printf("%sstate after event %" PRId64 " (%s)%s\n", rs_ctl_out_on(OUT_BOLD), at,
		       rs_run_status_name(rs_run_get_status(a.run)), rs_ctl_out_off());
	rs_ctl_out_json_value(stdout, view, !rs_ctl_out_json());
	json_decref(view);
cleanup:
	rs_eff_free(&a.effects);
	rs_run_free(a.run);
	return rc;
}

/* ---- --check (the check itself: rs_replay_check, common/rs_replay.c) ---- */

/* v's canonical text as a JSON string value (new reference). */
static json_t *
text_of(json_t *v)
{
	char *t = rs_json_dump(v);
	json_t *s = json_string(t ? t : "?");

	free(t);
	return s;
}

/* Flatten {type, runseq, traceparent, data{...}} to "field" -> text. */
static json_t *
flatten(json_t *o)
{
	json_t *f = json_object(), *v;
	const char *k;
	char key[160];

	if (o == NULL)
		return f;
	json_object_foreach(o, k, v) {
		if (strcmp(k, "data") == 0 && json_is_object(v)) {
			const char *dk;
			json_t *dv;
			json_object_foreach(v, dk, dv) {
				snprintf(key, sizeof(key), "data.%s", dk);
				json_object_set_new(f, key, text_of(dv));
			}
			continue;
		}
		json_object_set_new(f, k, text_of(v));
	}
	return f;
}

static void
print_side_by_side(json_t *rec, json_t *dec)
{
	json_t *fr = flatten(rec), *fd = flatten(dec), *keys = json_object(), *v, *sorted;
	const char *k;
	char *dump;

	json_object_foreach(fr, k, v)
		json_object_set(keys, k, json_true());
	json_object_foreach(fd, k, v)
		json_object_set(keys, k, json_true());
	/* Objects iterate in hash order: go through sorted text for a stable
	 * (golden) report. */
	dump = json_dumps(keys, JSON_SORT_KEYS | JSON_COMPACT);
	sorted = dump ? json_loads(dump, JSON_PRESERVE_ORDER, NULL) : NULL;
	free(dump);
	printf("  %-22s %-44s %s\n", "FIELD", "RECORDED", "TODAY'S DECIDE");
	json_object_foreach(sorted, k, v) {
		const char *a = json_string_value(json_object_get(fr, k));
		const char *b = json_string_value(json_object_get(fd, k));
		int same = a && b && strcmp(a, b) == 0;
		printf("%s%c %-22s %-44.44s %.60s%s\n", same ? "" : rs_ctl_out_on(OUT_RED), same ? ' ' : '!', k,
		       a ? a : "(absent)", b ? b : "(absent)", same ? "" : rs_ctl_out_off());
	}
	json_decref(sorted);
	json_decref(keys);
	json_decref(fr);
	json_decref(fd);
}

/* Report the first divergence of rep. */
static int
divergence(const rs_replay_report *rep)
{
	json_t *r = rep->recorded, *d = rep->decided;

	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:b,s:I,s:I,s:s,s:s,s:O,s:O}", "ok", 0, "seq",
		                        (json_int_t)rep->seq, "group_seq", (json_int_t)rep->group_seq,
		                        "command", rep->command, "reason", rep->reason,
		                        "recorded", r ? r : json_null(), "decided", d ? d : json_null());
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else {
		printf("%sDIVERGENCE at event %" PRIu64 "%s: %s\n", rs_ctl_out_on(OUT_RED), rep->seq, rs_ctl_out_off(),
		       rep->reason);
		printf("  the %s command rebuilt from event %" PRIu64 " (%s) decides differently today\n",
		       rep->command, rep->group_seq, rs_event_type_name(rep->group_type));
		print_side_by_side(r, d);
	}
	return RC_FAIL;
}

static int
check_history(const hist_buf *h, const rs_agent *agent, const char *cmd)
{
	rs_replay_report rep;
	char err[600];
	int rc;

	if (rs_replay_check(h->ev, h->n, agent, &rep, err, sizeof(err)) != RS_OK)
		return rs_ctl_out_err(RC_FAIL, cmd, "%s", err);
	if (!rep.ok) {
		rc = divergence(&rep);
		rs_replay_report_free(&rep);
		return rc;
	}
	if (rs_ctl_out_json()) {
		json_t *doc = json_pack("{s:b,s:I,s:I,s:s}", "ok", 1, "events", (json_int_t)rep.events,
		                        "groups", (json_int_t)rep.groups, "status", rep.status);
		rs_ctl_out_json_value(stdout, doc, 0);
		json_decref(doc);
	} else {
		printf("%scheck ok%s: %zu events in %zu decisions are what this build decides "
		       "(agent %s@%s, run %s)\n", rs_ctl_out_on(OUT_GREEN), rs_ctl_out_off(), rep.events, rep.groups,
		       rs_agent_name(agent), rs_agent_version(agent), rep.status);
	}
	rs_replay_report_free(&rep);
	return RC_OK;
}

static int
read_json_file(const char *path, json_t **out, char *err, size_t cap)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, capb = 0;
	int rc = RC_OK;

	if (f == NULL) {
		snprintf(err, cap, "cannot open %s", path);
		return RC_NOTFOUND;
	}
	for (;;) {
		if (n + 4096 > capb) {
			char *nb = realloc(buf, capb = capb * 2 + 8192);
			if (nb == NULL) {
				rc = RC_FAIL;
				goto cleanup;
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, capb - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (rs_json_parse(buf, n, out, err, cap) != RS_OK)
		rc = RC_FAIL;
cleanup:
	free(buf);
	fclose(f);
	return rc;
}

/* The agent the run is pinned to: --agent-file, the export header, or
 * KV agents <tenant>.<agent>.<version>. */
static int
resolve_agent(int argc, char **argv, const char *cmd, const hist_buf *h, json_t *embedded,
              rs_nats *n, rs_agent **out)
{
	const char *file = rs_ctl_flag(argc, argv, "agent-file", NULL);
	const rs_ev_run_created *rc0;
	json_t *def = NULL;
	char err[512];
	int rc;

	*out = NULL;
	if (h->n == 0 || h->ev[0].type != RS_EV_RUN_CREATED)
		return rs_ctl_out_err(RC_FAIL, cmd, "the history does not start with run.created: cannot check it");
	rc0 = &h->ev[0].d.run_created;
	if (file != NULL) {
		if ((rc = read_json_file(file, &def, err, sizeof(err))) != RC_OK)
			return rs_ctl_out_err(rc, cmd, "--agent-file: %s", err);
	} else if (embedded != NULL) {
		def = json_incref(embedded);
	} else {
		rs_nats local;
		int own = n->nc == NULL;
		if (own && (rc = rs_ctl_nats(&local, argc, argv)) != RC_OK)
			return rc;
		rc = rs_ctl_agents_fetch(own ? &local : n, h->ev[0].tenant, rc0->agent, rc0->version, &def,
		                  err, sizeof(err));
		if (own)
			rs_nats_close(&local, 1000);
		if (rc != RC_OK)
			return rs_ctl_out_err(rc, cmd, "%s (offline: give --agent-file def.json)", err);
	}
	if (rs_agent_parse(def, out, err, sizeof(err)) != RS_OK) {
		json_decref(def);
		return rs_ctl_out_err(RC_FAIL, cmd, "the agent definition is not valid today: %s", err);
	}
	json_decref(def);
	if (strcmp(rs_agent_version(*out), rc0->version) != 0) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "the agent definition is version %s but the run is pinned to "
		             "%s@%s: give the definition the run was created with", rs_agent_version(*out),
		             rc0->agent, rc0->version);
		rs_agent_free(*out);
		*out = NULL;
		return rc;
	}
	return RC_OK;
}

static int
replay_check(int argc, char **argv, const hist_src *src, rs_nats *n, const char *cmd)
{
	hist_buf h = { 0 };
	json_t *embedded = NULL;
	rs_agent *agent = NULL;
	const rs_agent *scoped = NULL;
	const char *scope;
	char err[512];
	int rc;

	rc = rs_ctl_hist_read(src, rs_ctl_hist_collect, &h, &embedded, err, sizeof(err));
	if (rc != RC_OK) {
		rc = rs_ctl_out_err(rc, cmd, "%s", err);
		goto cleanup;
	}
	if ((rc = resolve_agent(argc, argv, cmd, &h, embedded, n, &agent)) != RC_OK)
		goto cleanup;
	/* A child run of a parallel or foreach step walks one of the agent's
	 * step lists (run.created.scope). */
	scope = h.ev[0].d.run_created.scope;
	if (scope != NULL && (scoped = rs_agent_scope(agent, scope)) == NULL) {
		rc = rs_ctl_out_err(RC_FAIL, cmd, "the agent has no step list \"%s\" (run.created.scope)",
		             scope);
		goto cleanup;
	}
	rc = check_history(&h, scoped ? scoped : agent, cmd);
cleanup:
	rs_agent_free(agent);
	json_decref(embedded);
	rs_ctl_hist_buf_free(&h);
	return rc;
}

int
rs_ctl_cmd_replay(int argc, char **argv)
{
	const char *cmd = "replay", *at = rs_ctl_flag(argc, argv, "at", NULL);
	hist_src src;
	rs_nats n;
	int rc;

	if ((rc = rs_ctl_check_flags(argc, argv, cmd, replay_flags)) != RC_OK)
		return rc;
	if (rs_ctl_nargs(argc, argv) > 1)
		return rs_ctl_out_err(RC_USAGE, cmd, "one run id at a time (see --help)");
	if (at != NULL && rs_ctl_has(argc, argv, "check"))
		return rs_ctl_out_err(RC_USAGE, cmd, "--at and --check do not go together");
	if ((rc = rs_ctl_hist_src_from_args(argc, argv, cmd, rs_ctl_arg(argc, argv, 0), &src, &n)) != RC_OK)
		return rc;
	if (rs_ctl_has(argc, argv, "check"))
		rc = replay_check(argc, argv, &src, &n, cmd);
	else if (at != NULL)
		rc = replay_at(&src, cmd, at);
	else
		rc = replay_timeline(&src, cmd);
	rs_nats_close(&n, 1000);
	return rc;
}
