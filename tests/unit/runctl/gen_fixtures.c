/*
 * gen_fixtures.c - writes the recorded histories in tests/fixtures/ by
 * driving the real state machine (sim.h) with fixed clocks and ids:
 *   gen_fixtures DIR
 * The fixtures are then committed: they are "what an orchestrator
 * recorded", so `replay --check` on them tells whether today's decide
 * still agrees. Regenerate only on a deliberate contract change.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sim.h"

#define T0 1767323045000LL  /* 2026-01-02T03:04:05.000Z */

static const char order_def[] =
	"{\"name\":\"order-check\",\"description\":\"fetch an order, wait, branch on it\","
	"\"steps\":["
	"{\"id\":\"fetch\",\"kind\":\"tool\",\"tool\":\"http.get\",\"device\":\"laptop-1\","
	"\"args\":{\"url\":\"https://shop.example/orders/{{input.order_id}}\"},\"timeout_s\":30},"
	"{\"id\":\"cool-off\",\"kind\":\"sleep\",\"duration_ms\":5000},"
	"{\"id\":\"route\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"steps.fetch.output.paid\","
	"\"equals\":true},\"goto\":\"ship\"}],\"else\":\"hold\"},"
	"{\"id\":\"hold\",\"kind\":\"transform\",\"value\":{\"action\":\"hold\"},\"next\":\"end\"},"
	"{\"id\":\"ship\",\"kind\":\"transform\",\"value\":{\"action\":\"ship\",\"order\":\"{{input.order_id}}\"}}"
	"]}";

static const char flaky_def[] =
	"{\"name\":\"flaky-sync\",\"steps\":["
	"{\"id\":\"sync\",\"kind\":\"tool\",\"tool\":\"crm.sync\",\"capability\":true,"
	"\"args\":{\"account\":\"{{input.account}}\"},\"timeout_s\":20,"
	"\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":1000,\"multiplier\":2}}]}";

static const char approval_def[] =
	"{\"name\":\"approval\",\"steps\":["
	"{\"id\":\"ask\",\"kind\":\"signal\",\"signal\":\"approve\",\"timeout_s\":3600},"
	"{\"id\":\"record\",\"kind\":\"transform\",\"value\":{\"approved\":\"{{steps.ask.output.ok}}\","
	"\"by\":\"{{steps.ask.output.by}}\"}}]}";

static const char slow_def[] =
	"{\"name\":\"slow-report\",\"timeout_s\":60,\"steps\":["
	"{\"id\":\"render\",\"kind\":\"tool\",\"tool\":\"report.render\",\"device\":\"printer-7\","
	"\"args\":{},\"timeout_s\":300}]}";

static FILE *
open_out(const char *dir, const char *name)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL) {
		perror(path);
		exit(1);
	}
	return f;
}

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	FILE *f;
	sim s;

	/* completed: tool + sleep + branch + transform */
	f = open_out(dir, "completed.ndjson");
	sim_init(&s, order_def, "0190f5e4-7a3b-7c1d-8e2f-000000000001", "acme", T0, f, 1);
	sim_start(&s, "{\"order_id\":\"A-1001\"}", "orch-1");
	sim_delivered(&s, 12);
	sim_result_ok(&s, 431, "{\"paid\":true,\"total\":129.5}");
	sim_fire(&s, RS_TIMER_SLEEP, 7);
	sim_free(&s);
	fclose(f);

	/* same agent, other path: not paid -> hold (for diff) */
	f = open_out(dir, "completed-hold.ndjson");
	sim_init(&s, order_def, "0190f5e4-7a3b-7c1d-8e2f-000000000002", "acme", T0 + 60000, f, 1);
	sim_start(&s, "{\"order_id\":\"A-1002\"}", "orch-1");
	sim_delivered(&s, 9);
	sim_result_ok(&s, 388, "{\"paid\":false,\"total\":80}");
	sim_fire(&s, RS_TIMER_SLEEP, 3);
	sim_free(&s);
	fclose(f);

	/* failed after retries */
	f = open_out(dir, "failed-retries.ndjson");
	sim_init(&s, flaky_def, "0190f5e4-7a3b-7c1d-8e2f-000000000003", "acme", T0, f, 1);
	sim_start(&s, "{\"account\":\"ac-77\"}", "orch-2");
	sim_delivered(&s, 20);
	sim_result_err(&s, 250, "upstream_503", "CRM answered 503 Service Unavailable", 1);
	sim_fire(&s, RS_TIMER_RETRY, 4);
	sim_delivered(&s, 15);
	sim_result_err(&s, 240, "upstream_503", "CRM answered 503 Service Unavailable", 1);
	sim_fire(&s, RS_TIMER_RETRY, 2);
	sim_delivered(&s, 11);
	sim_result_err(&s, 260, "upstream_503", "CRM answered 503 Service Unavailable", 1);
	sim_free(&s);
	fclose(f);

	/* cancelled while waiting for a signal */
	f = open_out(dir, "cancelled.ndjson");
	sim_init(&s, approval_def, "0190f5e4-7a3b-7c1d-8e2f-000000000004", "acme", T0, f, 1);
	sim_start(&s, "{\"request\":\"refund 40 EUR\"}", "orch-1");
	sim_cancel(&s, 95000, "customer withdrew the request");
	sim_free(&s);
	fclose(f);

	/* timed out: the device never answers, the run timeout fires */
	f = open_out(dir, "timed-out.ndjson");
	sim_init(&s, slow_def, "0190f5e4-7a3b-7c1d-8e2f-000000000005", "globex", T0, f, 1);
	sim_start(&s, "{}", "orch-1");
	sim_delivered(&s, 30);
	sim_fire(&s, RS_TIMER_RUN_TIMEOUT, 12);
	sim_free(&s);
	fclose(f);

	/* signal: waits for approval, gets it */
	f = open_out(dir, "signal.ndjson");
	sim_init(&s, approval_def, "0190f5e4-7a3b-7c1d-8e2f-000000000006", "acme", T0, f, 1);
	sim_start(&s, "{\"request\":\"refund 15 EUR\"}", "orch-1");
	sim_signal(&s, 42000, "sig-0001", "approve", "{\"ok\":true,\"by\":\"dana\"}");
	sim_free(&s);
	fclose(f);
	return 0;
}
