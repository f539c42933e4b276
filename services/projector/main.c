/*
 * main.c - rs-projector: the table of what makes this service different.
 * The leader lock (one active instance, the others stand by), the three
 * projection consumers (runs, agents, presence) and the lag that decides
 * readiness are service.c; the lifecycle (signals, ops endpoints, NATS,
 * drain, exit codes) is common/rs_service.c. `rs-projector --rebuild`
 * rebuilds the run tables instead (rebuild.c). Settings: docs/operations.md,
 * "Projector" (RS_PROJECTOR_OPS_PORT 9102).
 */
#include "service.h"
#include "rs_log.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static rs_proj_service P;

static rs_status
configure(rs_service *s)
{
	const rs_env_spec v[] = {
		{ "RS_PROJECTOR_BATCH", 20000, 1, 100000, &P.batch },
		{ "RS_PROJECTOR_MAX_LAG_S", 30, 1, 86400, &P.max_lag_s },
		{ "RS_PROJECTOR_PRESENCE_TTL_S", 45, 0, 86400, &P.presence_ttl_s },
	};

	(void)s;
	return rs_env_ints(v, sizeof(v) / sizeof(v[0]));
}

static const rs_service_def def = {
	.name = "projector", .port_var = "RS_PROJECTOR_OPS_PORT", .port_def = 9102,
	.app = &P, .cfg = &P.base, .nats = &P.nats, .configure = configure,
	.start = rs_proj_service_start, .ready = rs_proj_service_ready,
	.drain = rs_proj_service_drain,
};

int
main(int argc, char **argv)
{
	char report[512];
	rs_status st;

	if (argc == 1)
		return rs_service_main(&def);
	if (strcmp(argv[1], "--rebuild") != 0) {
		fprintf(stderr, "usage: rs-projector [--rebuild]\n");
		return 2;
	}
	rs_log_init("projector");
	json_object_seed(0);
	if (rs_config_load(&P.base, "projector", def.port_var, def.port_def) != RS_OK ||
	    configure(NULL) != RS_OK)
		return 2;
	st = rs_projector_rebuild(P.base.nats_url, P.base.pg_url, report, sizeof(report));
	nats_Close();
	if (st != RS_OK) {
		fprintf(stderr, "rebuild failed: %s\n", rs_status_str(st));
		return 1;
	}
	printf("%s\n", report);
	return 0;
}
