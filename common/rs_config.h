/*
 * rs_config.h - configuration from environment variables.
 *
 * Every setting has a documented default (docs/operations.md). Parsing is
 * strict: "RS_API_PORT=80x" is an error naming the variable, not a silent 80.
 */
#ifndef RS_CONFIG_H
#define RS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "rs_status.h"

/* Value of name, or def when unset or empty. Never NULL if def is not. */
const char *rs_env_str(const char *name, const char *def);

/* Parse name as a decimal integer in [min, max]; def when unset.
 * RS_EINVAL (and a log line naming the variable) when malformed. */
rs_status rs_env_int(const char *name, int64_t def, int64_t min, int64_t max,
                     int64_t *out);

/* One integer setting of a table read by rs_env_ints. */
typedef struct {
	const char *name;
	int64_t def, min, max;
	int64_t *out;
} rs_env_spec;

/* rs_env_int for each of the n entries; stops at the first bad one. */
rs_status rs_env_ints(const rs_env_spec *v, size_t n);

/* Parse a decimal integer string strictly. Used by rs_env_int and tests. */
rs_status rs_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Settings common to every service. */
typedef struct {
	const char *nats_url;      /* RS_NATS_URL, comma-separated, default nats://127.0.0.1:4222 */
	const char *pg_url;        /* RS_PG_URL, default postgresql://127.0.0.1:5432/runstream */
	const char *instance_id;   /* RS_INSTANCE_ID, default <service>-<pid> */
	const char *listen_addr;   /* RS_LISTEN_ADDR, default 127.0.0.1 */
	int64_t ops_port;          /* RS_<SERVICE>_OPS_PORT for services without their own HTTP */
	int64_t shutdown_grace_ms; /* RS_SHUTDOWN_GRACE_MS, default 10000 */
} rs_config;

/* Fill cfg for service svc (e.g. "orchestrator"); ops_port_var/def name the
 * health/metrics port variable. Strings point into the environment or static
 * storage and live as long as the process. */
rs_status rs_config_load(rs_config *cfg, const char *svc,
                         const char *ops_port_var, int64_t ops_port_def);

#endif
