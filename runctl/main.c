/*
 * runctl - the Runstream command-line tool.
 *
 * One CLI for operators and developers: `runctl <group> <command> [args]`.
 * main() only dispatches; each group lives in its own cmd_<group>.c.
 * Exit codes: 0 ok, 1 failure, 2 usage error, 3 not found, 4 server down.
 */
#include <stdio.h>
#include <string.h>

#include "runctl.h"

static const runctl_cmd commands[] = {
	{ "streams", "apply", "create or update every stream, consumer and KV bucket", cmd_streams_apply },
	{ "migrate", NULL, "apply pending Postgres migrations", cmd_migrate },
	{ "keys", "create", "create an API key for a tenant: --tenant T", cmd_keys_create },
	{ "devices", "token", "issue a device token: --tenant T --device D", cmd_devices_token },
	{ NULL, NULL, NULL, NULL }
};

int
main(int argc, char **argv)
{
	return runctl_dispatch(commands, argc, argv);
}
