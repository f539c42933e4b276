/*
 * gen_history.c - writes a replay benchmark history: N events (default
 * 1,000,000) of realistic runs (tool call, sleep timer, branch,
 * transform; one in four runs fails its tool call and retries), produced
 * by the real state machine through the test simulator.
 *   gen_history OUT.ndjson [EVENTS]
 */
#include <stdio.h>
#include <stdlib.h>

#include "sim.h"

static const char def[] =
	"{\"name\":\"order-check\",\"steps\":["
	"{\"id\":\"fetch\",\"kind\":\"tool\",\"tool\":\"http.get\",\"device\":\"laptop-1\","
	"\"args\":{\"url\":\"https://shop.example/orders/{{input.order_id}}\"},\"timeout_s\":30,"
	"\"retry\":{\"max_attempts\":3,\"initial_backoff_ms\":500}},"
	"{\"id\":\"cool-off\",\"kind\":\"sleep\",\"duration_ms\":5000},"
	"{\"id\":\"route\",\"kind\":\"branch\",\"when\":[{\"if\":{\"path\":\"steps.fetch.output.paid\","
	"\"equals\":true},\"goto\":\"ship\"}],\"else\":\"hold\"},"
	"{\"id\":\"hold\",\"kind\":\"transform\",\"value\":{\"action\":\"hold\"},\"next\":\"end\"},"
	"{\"id\":\"ship\",\"kind\":\"transform\",\"value\":{\"action\":\"ship\",\"order\":\"{{input.order_id}}\"}}"
	"]}";

int
main(int argc, char **argv)
{
	unsigned long long want = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000ULL, total = 0;
	FILE *f = argc > 1 ? fopen(argv[1], "w") : NULL;
	char run_id[40], input[64];
	sim s;

	if (f == NULL) {
		fprintf(stderr, "usage: gen_history OUT.ndjson [EVENTS]\n");
		return 2;
	}
	for (unsigned long i = 1; total < want; i++) {
		snprintf(run_id, sizeof(run_id), "0190f5e4-7a3b-7c1d-8e2f-%012lx", i);
		snprintf(input, sizeof(input), "{\"order_id\":\"A-%lu\"}", i);
		sim_init(&s, def, run_id, "bench", 1767323045000LL + (long long)i * 1000, f, 0);
		sim_start(&s, input, "orch-1");
		sim_delivered(&s, 10);
		if (i % 4 == 0) {
			sim_result_err(&s, 200, "upstream_503", "service unavailable", 1);
			sim_fire(&s, RS_TIMER_RETRY, 3);
			sim_delivered(&s, 10);
		}
		sim_result_ok(&s, 300, i % 3 ? "{\"paid\":true,\"total\":12.5}" : "{\"paid\":false}");
		sim_fire(&s, RS_TIMER_SLEEP, 5);
		total += s.events;
		sim_free(&s);
	}
	fclose(f);
	fprintf(stderr, "%llu events\n", total);
	return 0;
}
