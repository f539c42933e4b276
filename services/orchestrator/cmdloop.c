/*
 * cmdloop.c - CMDS into the engine: the durable pull consumer
 * `orchestrator` (shared by every instance, so commands are spread across
 * them) through the common consumer loop (common/rs_consume.h), which hands
 * each delivery over the moment the server sends it. Every command is
 * TAKEN by the engine (it acks once the decision and its effects are
 * durable). The loop asks for no more than RS_ORCH_MAX_INFLIGHT un-acked
 * commands, so a slow engine never holds more than it can finish within
 * AckWait, and stops on SIGTERM. Its ticker expires lost publish acks
 * every 250 ms, traffic or not.
 */
#include <unistd.h>

#include "orch.h"
#include "rs_log.h"
#include "rs_time.h"

static int
room(void *arg, int64_t wait_ms)
{
	orch *o = arg;
	int64_t until = rs_mono_ms() + wait_ms;
	long r;

	/* The engine frees room as publish acks come back (no condition to
	 * wait on): look again every half millisecond, as long as allowed. */
	while ((r = o->cfg.max_inflight - atomic_load(&o->inflight)) <= 0) {
		if (atomic_load(&o->stopping) || rs_mono_ms() >= until)
			return 0;
		usleep(500);
	}
	return r > o->cfg.fetch_batch ? (int)o->cfg.fetch_batch : (int)r;
}

static void
on_batch(void *arg, natsMsg **msgs, int n, rs_consume_out *out)
{
	orch *o = arg;

	atomic_fetch_add(&o->inflight, n);
	rs_orch_engine_commands(o, msgs, n);
	for (int i = 0; i < n; i++)
		out[i].disp = RS_CONSUME_TAKEN;   /* the engine settles each one */
}

static void
on_tick(void *arg)
{
	rs_orch_engine_expire(arg);   /* lost pub acks */
}

rs_status
rs_orch_cmdloop_start(orch *o)
{
	rs_consume_cfg cfg = {
		.name = "orchestrator",
		.stream = "CMDS",
		.durable = "orchestrator",
		.filter = "cmd.>",
		.batch = (int)o->cfg.fetch_batch,
		.on_batch = on_batch,
		.room = room,
		.on_tick = on_tick,
		.tick_ms = 250,
		.arg = o,
	};

	return rs_consume_start(&o->cmds, o->nats.nc, o->nats.js, &cfg);
}

void
rs_orch_cmdloop_join(orch *o)
{
	rs_consume_join(o->cmds);
}

void
rs_orch_cmdloop_free(orch *o)
{
	rs_consume_free(o->cmds);
	o->cmds = NULL;
}
