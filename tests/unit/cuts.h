/*
 * cuts.h - the crash-consistency harness of the state-machine tests
 * (cuts.c): scripts of commands run on a world (world.h), every decision
 * cut at every event.
 */
#ifndef RS_TEST_CUTS_H
#define RS_TEST_CUTS_H

#include "world.h"

typedef enum { S_START, S_DELIVER, S_RESULT, S_ERROR, S_FIRE, S_SIGNAL, S_CANCEL,
               S_CHILD, S_CHILD_FAIL, S_END } s_kind;

typedef struct {
	s_kind k;
	const char *a;          /* input / output / error code / signal payload */
	int purpose;            /* S_FIRE; S_CHILD*: the child (child.started order) */
	int64_t at;             /* clock for this command */
} s_step;

/* The three-tool-step agent of the crash report (issue: runs damaged by a
 * kill -9 under load): s1 -> s2 -> s3 on tool `inc`, output from s3. */
extern const char *const A_INC3;

/* The command of one script step, on w's current ids. */
rs_cmd script_cmd(world *w, const s_step *s);

/* Run script[0..upto) on a fresh world of agent, each decision whole. */
void script_run(world *w, const char *agent, const s_step *script, int upto);

/*
 * For every decision of the script (ended by S_END) with two or more
 * events and every cut k (the first k events appended, then a crash): the
 * next decision for the run (the command redelivered, a run.continue, or
 * the run's earliest pending timer firing late) begins with exactly the
 * events the cut decision still owed, data equal; the run is then not at
 * rest before and at rest after; and the rest of the script ends the run
 * exactly as the uninterrupted one.
 */
void check_cuts(const char *agent, const s_step *script);

#endif
