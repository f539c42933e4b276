/*
 * cmdloop.c - the CMDS fetcher: binds to the durable pull consumer
 * `orchestrator` (shared by every instance, so commands are spread across
 * them) and carries each batch out (engine_commands). It stops fetching when too many
 * commands are in flight, so a slow engine never holds more messages than
 * it can finish within AckWait, and on SIGTERM.
 */
#include <unistd.h>

#include "orch.h"
#include "rs_log.h"
#include "rs_time.h"

static void *
fetch_main(void *arg)
{
	orch *o = arg;
	natsMsgList list;
	jsErrCode jerr;
	natsStatus s;
	int64_t room, last_warn = 0, last_expire = 0;

	while (!atomic_load(&o->stopping)) {
		if (rs_mono_ms() - last_expire >= 250) {
			engine_expire(o);   /* lost pub acks */
			last_expire = rs_mono_ms();
		}
		room = o->cfg.max_inflight - atomic_load(&o->inflight);
		if (room <= 0) {
			usleep(500);
			continue;
		}
		if (room > o->cfg.fetch_batch)
			room = o->cfg.fetch_batch;
		jerr = 0;
		s = natsSubscription_Fetch(&list, o->cmd_sub, (int)room, 500, &jerr);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			if (rs_mono_ms() - last_warn > 5000) {
				rs_warn("fetch from CMDS failed: %s (%d)", natsStatus_GetText(s), (int)jerr);
				last_warn = rs_mono_ms();
			}
			usleep(100 * 1000);
			continue;
		}
		atomic_fetch_add(&o->inflight, list.Count);
		engine_commands(o, list.Msgs, list.Count);
		for (int i = 0; i < list.Count; i++)
			list.Msgs[i] = NULL;   /* the engine took them */
		natsMsgList_Destroy(&list);
	}
	return NULL;
}

rs_status
cmdloop_start(orch *o)
{
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	jsSubOptions_Init(&so);
	so.Stream = "CMDS";
	so.Consumer = "orchestrator";
	s = js_PullSubscribe(&o->cmd_sub, o->nats.js, "cmd.>", "orchestrator", NULL, &so, &jerr);
	if (s != NATS_OK) {
		rs_error("cannot bind to consumer CMDS/orchestrator: %s (%d)", natsStatus_GetText(s),
		         (int)jerr);
		return rs_nats_status(s, jerr);
	}
	if (pthread_create(&o->fetch_thread, NULL, fetch_main, o) != 0)
		return RS_ERR;
	return RS_OK;
}

void
cmdloop_join(orch *o)
{
	pthread_join(o->fetch_thread, NULL);
}
