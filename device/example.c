/*
 * example.c - rs-device-example: a device with three tools, used by the
 * demo, the tests and the benchmark.
 *   echo      returns its args unchanged
 *   sleep_ms  sleeps args.ms milliseconds (cancellable), returns {slept_ms}
 *   fail      fails with args.code / args.message / args.retryable
 * Environment: RS_ROUTER_URL (ws://127.0.0.1:8081/v1/devices/connect),
 * RS_DEVICE_ID, RS_DEVICE_TOKEN, RS_DEVICE_WORKERS (4),
 * RS_DEVICE_SHUTDOWN_GRACE_MS (30000: SIGTERM lets running calls finish).
 * Exit codes: 0 stopped by a signal, 2 configuration, 3 token refused
 * (close 4401), 4 replaced by another connection of the device (4409).
 * It logs "start|end|cancelled <tool> <call_id>" per handler run, as the
 * Node and Python examples do (the SDK conformance test counts them).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rs_config.h"
#include "rs_device.h"
#include "rs_log.h"

static rs_device *dev;

static void
on_signal(int sig)
{
	(void)sig;
	if (dev != NULL)
		rs_device_stop(dev);
}

static int
tool_echo(void *arg, const rs_device_call *call, json_t **output, rs_device_error *err)
{
	rs_info("start echo %s", call->call_id);
	*output = json_deep_copy(call->args);
	return 0;
}

static int
tool_sleep_ms(void *arg, const rs_device_call *call, json_t **output, rs_device_error *err)
{
	json_int_t ms = json_integer_value(json_object_get(call->args, "ms")), slept = 0;
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	rs_info("start sleep_ms %s", call->call_id);
	/* In 10 ms steps so a cancel or shutdown stops it promptly. */
	while (slept < ms && !rs_device_cancelled(call)) {
		nanosleep(&ts, NULL);
		slept += 10;
	}
	if (rs_device_cancelled(call)) {
		rs_info("cancelled sleep_ms %s", call->call_id);
		snprintf(err->code, sizeof(err->code), "cancelled");
		snprintf(err->message, sizeof(err->message), "cancelled after %lld ms", (long long)slept);
		return -1;
	}
	rs_info("end sleep_ms %s", call->call_id);
	*output = json_pack("{s:I}", "slept_ms", ms);
	return 0;
}

static int
tool_fail(void *arg, const rs_device_call *call, json_t **output, rs_device_error *err)
{
	const char *code = json_string_value(json_object_get(call->args, "code"));
	const char *msg = json_string_value(json_object_get(call->args, "message"));

	snprintf(err->code, sizeof(err->code), "%s", code ? code : "tool_error");
	snprintf(err->message, sizeof(err->message), "%s", msg ? msg : "the fail tool always fails");
	err->retryable = json_is_true(json_object_get(call->args, "retryable"));
	return -1;
}

int
main(void)
{
	rs_device_config cfg = { 0 };
	int64_t workers, grace;
	rs_status st;
	struct sigaction sa;

	rs_log_init("device");
	json_object_seed(0);
	cfg.url = rs_env_str("RS_ROUTER_URL", "ws://127.0.0.1:8081/v1/devices/connect");
	cfg.device_id = rs_env_str("RS_DEVICE_ID", NULL);
	cfg.token = rs_env_str("RS_DEVICE_TOKEN", NULL);
	if (cfg.device_id == NULL || cfg.token == NULL) {
		fprintf(stderr, "rs-device-example: set RS_DEVICE_ID and RS_DEVICE_TOKEN\n");
		return 2;
	}
	if (rs_env_int("RS_DEVICE_WORKERS", 4, 1, 256, &workers) != RS_OK)
		return 2;
	cfg.workers = (int)workers;
	if (rs_env_int("RS_DEVICE_SHUTDOWN_GRACE_MS", 30000, 1, 3600000, &grace) != RS_OK)
		return 2;
	cfg.shutdown_grace_ms = (int)grace;
	if (rs_device_new(&dev, &cfg) != RS_OK)
		return 2;
	rs_device_add_tool(dev, "echo", "Returns its arguments unchanged", "{\"type\":\"object\"}",
	                   tool_echo, NULL);
	rs_device_add_tool(dev, "sleep_ms", "Sleeps args.ms milliseconds",
	                   "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\",\"minimum\":0}},\"required\":[\"ms\"]}",
	                   tool_sleep_ms, NULL);
	rs_device_add_tool(dev, "fail", "Always fails with args.code/message/retryable",
	                   "{\"type\":\"object\"}", tool_fail, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	st = rs_device_run(dev);
	rs_device_free(dev);
	dev = NULL;
	return st == RS_OK ? 0 : st == RS_EINVAL ? 3 : st == RS_ECONFLICT ? 4 : 1;
}
