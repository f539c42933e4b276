/*
 * fuzz_agent.c - agent definitions (common/rs_agent.c), the JSON a tenant
 * pushes with POST /v1/agents and `runctl agents push`.
 *
 * Properties of an accepted definition: its version is 16 hex chars and
 * equals the hash of the definition it keeps; the canonical dump parses
 * again to the same version; every step reference (next, branch gotos)
 * is a step index or the end; finding a step by its id gives that step;
 * numeric fields are within the bounds docs/agents.md states.
 */
#include "fuzz.h"
#include "rs_agent.h"
#include "rs_json.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

static int
target_ok(int idx, size_t n)
{
	return idx == RS_STEP_END || (idx >= 0 && (size_t)idx < n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512] = "", ver[17], *canon;
	rs_agent *a = NULL, *b = NULL;
	size_t n;

	if (rs_agent_parse_text((const char *)data, size, &a, err, sizeof(err)) != RS_OK) {
		FUZZ_CHECK(err[0] != '\0' && a == NULL);
		return 0;
	}
	FUZZ_CHECK(strlen(rs_agent_version(a)) == 16 &&
	           strspn(rs_agent_version(a), "0123456789abcdef") == 16);
	FUZZ_CHECK(rs_agent_version_of(rs_agent_json(a), ver) == RS_OK);
	FUZZ_CHECK(strcmp(ver, rs_agent_version(a)) == 0);
	FUZZ_CHECK(rs_agent_name(a) != NULL && rs_agent_max_steps(a) >= 1 &&
	           rs_agent_timeout_s(a) >= 0);
	n = rs_agent_step_count(a);
	FUZZ_CHECK(n >= 1 && rs_agent_step(a, n) == NULL);
	for (size_t i = 0; i < n; i++) {
		const rs_step *s = rs_agent_step(a, i);
		int idx = -2;
		FUZZ_CHECK(s != NULL && s->id != NULL && s->kind <= RS_STEP_KIND_LAST);
		FUZZ_CHECK(rs_step_kind_name(s->kind) != NULL);
		FUZZ_CHECK(rs_agent_step_find(a, s->id, &idx) == s && idx == (int)i);
		FUZZ_CHECK(target_ok(s->next_idx, n));
		if (s->kind == RS_STEP_BRANCH) {
			FUZZ_CHECK(target_ok(s->else_idx, n));
			for (size_t c = 0; c < s->ncases; c++)
				FUZZ_CHECK(target_ok(s->cases[c].goto_idx, n));
		}
		FUZZ_CHECK(s->retry.max_attempts >= 0 && s->timeout_s >= 0 && s->duration_ms >= 0);
	}
	canon = rs_json_dump(rs_agent_json(a));
	FUZZ_CHECK(canon != NULL);
	if (rs_agent_parse_text(canon, strlen(canon), &b, err, sizeof(err)) != RS_OK)
		fprintf(stderr, "canonical form rejected: %s\n%s\n", err, canon);
	FUZZ_CHECK(b != NULL && strcmp(rs_agent_version(a), rs_agent_version(b)) == 0);
	rs_agent_free(b);
	rs_agent_free(a);
	free(canon);
	return 0;
}
