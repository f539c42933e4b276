/*
 * event_samples.c - prints sample events for the JSON Schema check
 * (tests/schema/check_schemas.mjs): for every event type, one encoded
 * CloudEvent with all optional members set and one with the required ones
 * only, one per line. With --types it prints the type names instead, one
 * per line, so the check can compare them with the schema files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_fixtures.h"
#include "rs_event.h"

static int
print_sample(rs_event_type t, int full)
{
	rs_event ev;
	char *out = NULL;
	rs_status st;

	fx_event(t, full, &ev);
	st = rs_event_encode(&ev, &out, NULL);
	if (st == RS_OK)
		printf("%s\n", out);
	else
		fprintf(stderr, "event_samples: encode %s: %s\n", rs_event_type_name(t),
		        rs_status_str(st));
	free(out);
	rs_event_free(&ev);
	return st == RS_OK ? 0 : 1;
}

int
main(int argc, char **argv)
{
	int bad = 0;

	for (int t = 0; t < RS_EV__COUNT; t++) {
		if (argc > 1 && strcmp(argv[1], "--types") == 0) {
			printf("%s\n", rs_event_type_name((rs_event_type)t));
			continue;
		}
		bad |= print_sample((rs_event_type)t, 1);
		bad |= print_sample((rs_event_type)t, 0);
	}
	return bad;
}
