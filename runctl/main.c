/*
 * runctl - the Runstream command-line tool.
 *
 * One CLI for operators and developers: `runctl <group> <command> [args]`.
 * main() only dispatches; the commands are the table in commands.c and
 * each group lives in its own cmd_<group>.c.
 * Exit codes: 0 ok, 1 failure, 2 usage error, 3 not found, 4 server down.
 */
#include "runctl.h"
#include "runctl_version.h"

int
main(int argc, char **argv)
{
	return rs_ctl_dispatch(rs_ctl_commands, RUNCTL_VERSION, argc, argv);
}
