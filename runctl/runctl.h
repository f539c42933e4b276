/*
 * runctl.h - shared declarations of the runctl subcommands.
 */
#ifndef RUNCTL_H
#define RUNCTL_H

#include "rs_nats.h"

enum { RC_OK = 0, RC_FAIL = 1, RC_USAGE = 2, RC_NOTFOUND = 3, RC_DOWN = 4 };

typedef int (*runctl_fn)(int argc, char **argv);

typedef struct {
	const char *group, *name, *help;
	runctl_fn fn;
} runctl_cmd;

/* Find and run the command named by argv[1] (and argv[2]); prints help. */
int runctl_dispatch(const runctl_cmd *cmds, int argc, char **argv);

/* Value of --name in argv (also --name=value), else def. */
const char *runctl_flag(int argc, char **argv, const char *name, const char *def);
/* 1 if the bare flag --name is present. */
int runctl_has(int argc, char **argv, const char *name);

/* Connect to NATS from RS_NATS_URL / --nats; prints a clear error. */
int runctl_nats(rs_nats *n, int argc, char **argv);

int cmd_streams_apply(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_keys_create(int argc, char **argv);
int cmd_devices_token(int argc, char **argv);

#endif
