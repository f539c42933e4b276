/*
 * cuts.c - the crash-consistency harness of the state-machine tests: a
 * script of commands (s_step) run on a world, and check_cuts, which cuts
 * every decision of a script at every event and checks the next decision
 * finishes exactly what the cut one owed (see cuts.h). Shared by test_run
 * (single-thread agents) and test_run_children (child runs).
 */
#include "cuts.h"
#include "rs_event.h"
#include "rs_json.h"
#include "rs_replay.h"

#include <stdlib.h>
#include <string.h>

const char *const A_INC3 =
	"{\"name\":\"inc3\",\"steps\":["
	"{\"id\":\"s1\",\"kind\":\"tool\",\"tool\":\"inc\",\"args\":{\"n\":\"{{input.n}}\"}},"
	"{\"id\":\"s2\",\"kind\":\"tool\",\"tool\":\"inc\",\"args\":{\"n\":\"{{steps.s1.output.n}}\"}},"
	"{\"id\":\"s3\",\"kind\":\"tool\",\"tool\":\"inc\",\"args\":{\"n\":\"{{steps.s2.output.n}}\"}}],"
	"\"output\":{\"n\":\"{{steps.s3.output.n}}\"}}";

rs_cmd
script_cmd(world *w, const s_step *s)
{
	switch (s->k) {
	case S_START: return c_start(s->a);
	case S_DELIVER: return c_delivered(w->call_id);
	case S_RESULT: return c_result(w->call_id, s->a);
	case S_ERROR: return c_tool_error(w->call_id, s->a, RS_ERRCLASS_TRANSIENT);
	case S_FIRE: return c_fire(w->timer[s->purpose]);
	case S_SIGNAL: return c_signal("sig-1", "go", s->a);
	case S_CANCEL: return c_cancel();
	case S_CHILD: return c_child(w->child[s->purpose], "completed", s->a);
	case S_CHILD_FAIL: return c_child(w->child[s->purpose], "failed", s->a);
	default: abort();
	}
}

/* An event as the contract compares decisions: everything but its time. */
static char *
comparable_text(const rs_event *e)
{
	char *txt = NULL, *out;
	size_t len;
	json_t *o;

	if (rs_event_encode(e, &txt, &len) != RS_OK)
		return strdup("?");
	o = json_loadb(txt, len, 0, NULL);
	free(txt);
	json_object_del(o, "time");
	/* run.started names the instance that started the run: whoever
	 * finished the cut decision (replay --check reads it from the log) */
	if (e->type == RS_EV_RUN_STARTED)
		json_object_del(json_object_get(o, "data"), "instance");
	out = dump(o);
	json_decref(o);
	return out;
}

/* Run script[0..upto) on a fresh world, each decision applied whole. */
void
script_run(world *w, const char *agent, const s_step *script, int upto)
{
	world_init(w, agent);
	for (int i = 0; i < upto; i++) {
		w->now = script[i].at;
		step(w, script_cmd(w, &script[i]));
	}
}

static char *
final_outcome(world *w)
{
	json_t *v = rs_run_view(w->r), *o = json_pack("{s:O, s:O, s:O, s:O}", "status",
	            json_object_get(v, "status"), "output", json_object_get(v, "output"),
	            "error", json_object_get(v, "error"), "last_seq", json_object_get(v, "last_seq"));
	char *t = dump(o);

	json_decref(o);
	json_decref(v);
	return t;
}

enum { V_REDELIVER, V_CONTINUE, V_TIMER, V__COUNT };

/*
 * For every decision of the script with two or more events and every cut
 * k (the first k events appended, then a crash): the next decision for the
 * run (the command redelivered, a run.continue, or the run's earliest
 * pending timer firing late) begins with exactly the events the cut
 * decision still owed, data equal; the run is then not at rest before and
 * at rest after; and the rest of the script ends the run exactly as the
 * uninterrupted one.
 */
void
check_cuts(const char *agent, const s_step *script)
{
	world ref;
	int n = 0, cuts = 0;
	char **want[32];
	size_t wantn[32];
	char *ref_end;

	while (script[n].k != S_END)
		n++;
	world_init(&ref, agent);
	for (int i = 0; i < n; i++) {
		ref.now = script[i].at;
		step(&ref, script_cmd(&ref, &script[i]));
		wantn[i] = ref.last.nevents;
		want[i] = calloc(wantn[i] + 1, sizeof(char *));
		for (size_t e = 0; e < wantn[i]; e++)
			want[i][e] = comparable_text(&ref.last.events[e]);
	}
	ref_end = final_outcome(&ref);
	finish(&ref);

	for (int i = 0; i < n; i++) {
		for (size_t k = 1; k < wantn[i]; k++) {
			for (int v = 0; v < V__COUNT; v++) {
				world w, saved;
				rs_cmd c;
				rs_decision d;
				char err[256] = "";
				json_t *view;
				const char *tid = NULL;
				int64_t due = 0;

				script_run(&w, agent, script, i);
				w.now = script[i].at;
				rs_decision_free(&w.last);
				memcpy(&saved, &w, sizeof(saved));   /* ids the command was built from */
				c = script_cmd(&w, &script[i]);
				CHECK(rs_run_decide(w.r, w.agent, &c, w.now, "orch-1", &w.last, err,
				                    sizeof(err)) == RS_OK);
				rs_cmd_free(&c);
				apply(&w, k);       /* the crash: events k.. never appended */
				CHECK(!rs_run_at_rest(w.r, w.agent));
				/* the crash is noticed before the script's next command: a
				 * later redelivery would move every later decision (and
				 * so the timers they set) along with it */
				w.now = script[i].at + 1;
				if (v == V_REDELIVER) {
					c = script_cmd(&saved, &script[i]);
				} else if (v == V_CONTINUE) {
					c = mk(RS_CMD_RUN_CONTINUE);
					c.after_seq = (int64_t)rs_run_last_seq(w.r);
				} else {
					view = rs_run_view(w.r);
					tid = json_string_value(rs_json_path(view, "pending_timers.0.timer_id"));
					due = json_integer_value(rs_json_path(view, "pending_timers.0.due_at"));
					c = c_fire(tid ? tid : "none");
					json_decref(view);
					if (tid == NULL) {
						rs_cmd_free(&c);
						c = mk(RS_CMD_RUN_CONTINUE);
					} else if (due + 1 > w.now) {
						w.now = due + 1;
					}
				}
				CHECK(rs_run_decide(w.r, w.agent, &c, w.now, "orch-2", &d, err,
				                    sizeof(err)) == RS_OK);
				for (size_t e = k; e < wantn[i]; e++) {
					size_t at = e - k;
					char *got = at < d.nevents ? comparable_text(&d.events[at]) : NULL;
					if (got == NULL || strcmp(got, want[i][e]) != 0) {
						fprintf(stderr, "cut: command %d (%s) cut after %zu of %zu, variant %d:"
						        " event %zu\n   got: %s\n  want: %s\n", i,
						        rs_cmd_type_name(c.type), k, wantn[i], v, e,
						        got ? got : "(none)", want[i][e]);
						CHECK(0);
						free(got);
						break;
					}
					free(got);
				}
				if (v != V_TIMER)
					CHECK_INT(d.nevents, wantn[i] - k);
				rs_decision_free(&d);
				/* carry on: the orchestrator's way (decide, apply all) */
				rs_decision_free(&w.last);
				step(&w, c);
				CHECK(rs_run_at_rest(w.r, w.agent));
				if (v != V_TIMER) {
					char *end;
					for (int j = i + 1; j < n; j++) {
						if (script[j].at > w.now)
							w.now = script[j].at;
						step(&w, script_cmd(&w, &script[j]));
					}
					end = final_outcome(&w);
					CHECK_STR(end, ref_end);
					free(end);
				}
				finish(&w);
				cuts++;
			}
		}
	}
	CHECK(cuts > 0);
	for (int i = 0; i < n; i++) {
		for (size_t e = 0; e < wantn[i]; e++)
			free(want[i][e]);
		free(want[i]);
	}
	free(ref_end);
}

