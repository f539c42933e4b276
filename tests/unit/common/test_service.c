/*
 * test_service.c - the server-free parts of the service lifecycle and the
 * out-of-memory policy: settings tables (rs_env_ints), /readyz turning
 * false before anything else once a stop signal came (rs_service_ready),
 * and rs_mem's wrappers - which never return NULL and abort on failure.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../check.h"
#include "rs_config.h"
#include "rs_mem.h"
#include "rs_service.h"

static int hook_calls;

static int
hook_ready(void *arg, char *why, size_t cap)
{
	(void)arg;
	hook_calls++;
	snprintf(why, cap, "hook");
	return 0;
}

static void
test_env_ints(void)
{
	int64_t a = 0, b = 0, c = 0;
	rs_env_spec v[] = {
		{ "RS_TEST_SVC_A", 7, 0, 100, &a },
		{ "RS_TEST_SVC_B", 8, 0, 100, &b },
		{ "RS_TEST_SVC_C", 9, 0, 100, &c },
	};

	unsetenv("RS_TEST_SVC_A");
	setenv("RS_TEST_SVC_B", "42", 1);
	unsetenv("RS_TEST_SVC_C");
	CHECK_INT(rs_env_ints(v, 3), RS_OK);
	CHECK_INT(a, 7);    /* default when unset */
	CHECK_INT(b, 42);
	CHECK_INT(c, 9);
	/* A bad value is an error naming it, and the table stops there. */
	a = b = c = -1;
	setenv("RS_TEST_SVC_B", "101", 1);
	CHECK_INT(rs_env_ints(v, 3), RS_EINVAL);
	CHECK_INT(a, 7);
	CHECK_INT(c, -1);
	setenv("RS_TEST_SVC_B", "4x", 1);
	CHECK_INT(rs_env_ints(v, 3), RS_EINVAL);
	unsetenv("RS_TEST_SVC_B");
}

static void
test_ready(void)
{
	static rs_nats nats;   /* never connected */
	rs_service_def def = { .name = "test", .nats = &nats, .ready = hook_ready };
	rs_service s = { .def = &def, .nats = &nats };
	char why[128];

	/* Not connected: not ready, and the service's hook is not asked. */
	CHECK_INT(rs_service_ready(&s, why, sizeof(why)), 0);
	CHECK_STR(why, "NATS not connected");
	/* A stop signal: "shutting down" comes before every other reason. */
	atomic_store(&s.checked, 1);
	atomic_store(&s.started, 1);
	atomic_store(&s.stopping, 1);
	CHECK_INT(rs_service_ready(&s, why, sizeof(why)), 0);
	CHECK_STR(why, "shutting down");
	CHECK_INT(hook_calls, 0);
}

/* Run fn in a child; return the signal that ended it (0: it exited). */
static int
dies_by(void (*fn)(void))
{
	int st = 0;
	pid_t pid = fork();

	if (pid == 0) {
		fn();
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static void
overflowing_calloc(void)
{
	volatile size_t n = SIZE_MAX / 2 + 1;

	free(rs_xcalloc(n, 2));
}

static void
small_calloc(void)
{
	free(rs_xcalloc(4, 8));
}

static void
test_mem(void)
{
	char *p = rs_xmalloc(0), *d = rs_xstrdup("runstream");
	int *z = rs_xcalloc(0, sizeof(int));

	CHECK(p != NULL);
	CHECK(z != NULL);
	CHECK_STR(d, "runstream");
	CHECK(rs_xstrdup(NULL) == NULL);
	d = rs_xrealloc(d, 64);
	CHECK_STR(d, "runstream");
	free(p);
	free(z);
	free(d);
	/* The policy: a size that cannot be allocated aborts, never NULL. */
	CHECK_INT(dies_by(overflowing_calloc), SIGABRT);
	CHECK_INT(dies_by(small_calloc), 0);
}

int
main(void)
{
	test_env_ints();
	test_ready();
	test_mem();
	return check_report("service");
}
