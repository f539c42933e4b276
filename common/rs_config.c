/* rs_config.c - environment configuration (see rs_config.h). */
#include "rs_config.h"
#include "rs_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *
rs_env_str(const char *name, const char *def)
{
	const char *v = getenv(name);

	return (v == NULL || *v == '\0') ? def : v;
}

rs_status
rs_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end = NULL;
	long long v;

	if (s == NULL || *s == '\0')
		return RS_EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return RS_EINVAL;
	*out = (int64_t)v;
	return RS_OK;
}

rs_status
rs_env_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0') {
		*out = def;
		return RS_OK;
	}
	if (rs_parse_int(v, min, max, out) != RS_OK) {
		rs_error("config: %s=\"%s\" is not an integer in [%lld, %lld]", name, v,
		         (long long)min, (long long)max);
		return RS_EINVAL;
	}
	return RS_OK;
}

rs_status
rs_env_ints(const rs_env_spec *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rs_env_int(v[i].name, v[i].def, v[i].min, v[i].max, v[i].out) != RS_OK)
			return RS_EINVAL;
	return RS_OK;
}

rs_status
rs_config_load(rs_config *cfg, const char *svc, const char *ops_port_var,
               int64_t ops_port_def)
{
	static char instance[128];
	rs_status st;

	memset(cfg, 0, sizeof(*cfg));
	cfg->nats_url = rs_env_str("RS_NATS_URL", "nats://127.0.0.1:4222");
	cfg->pg_url = rs_env_str("RS_PG_URL", "postgresql://127.0.0.1:5432/runstream");
	cfg->listen_addr = rs_env_str("RS_LISTEN_ADDR", "127.0.0.1");
	snprintf(instance, sizeof(instance), "%s-%d", svc, (int)getpid());
	cfg->instance_id = rs_env_str("RS_INSTANCE_ID", instance);
	if (ops_port_var != NULL) {
		st = rs_env_int(ops_port_var, ops_port_def, 0, 65535, &cfg->ops_port);
		if (st != RS_OK)
			return st;
	}
	return rs_env_int("RS_SHUTDOWN_GRACE_MS", 10000, 0, 600000, &cfg->shutdown_grace_ms);
}
