/*
 * rs_natsgc.c - free nats.c messages in the thread that destroys them.
 *
 * nats.c 3.x does not free a message in natsMsg_Destroy(): it hands it to
 * natsGC_collect(), which queues it for the library's one garbage-collector
 * thread and wakes that thread whenever it sleeps. Under load that is a
 * futex wake and two context switches per message. The orchestrator
 * creates one message per publish and receives one per pub ack, so this
 * was a third of its CPU (bench/orchestrator, per appended event: 14-15 µs
 * with the collector, 9-10 µs without; docs/benchmarks.md). Destroying in
 * batches does not help: the collector runs on the other core and empties
 * the queue as fast as it fills, so it sleeps and is woken again.
 *
 * libnats exports natsGC_collect and calls it through its PLT, so this
 * definition, linked into our executables, is the one it calls (ELF symbol
 * interposition, as with a malloc replacement). nats.c's own contract for
 * it (src/gc.h): "Returns 'true' if the GC takes ownership, 'false'
 * otherwise (in this case, the caller is responsible for freeing the
 * object)". Returning false makes natsMsg_Destroy() call natsMsg_free() at
 * once; that takes no lock. Messages are the only objects nats.c gives to
 * its collector.
 *
 * If a libnats ever binds the call internally (-Bsymbolic, hidden
 * visibility), this is simply not called and messages go through the
 * collector as before: rs_natsgc_active() tells which (rs_nats_connect logs
 * it once; tests/unit/test_natsgc.c holds it for the libnats we build on).
 */
#include <stdatomic.h>
#include <stdbool.h>

#include "rs_nats.h"

/* nats.c's prototype takes a natsGCItem *, a private type: same ABI. */
bool natsGC_collect(void *item);

static atomic_int called;

bool
natsGC_collect(void *item)
{
	(void)item;
	if (!atomic_load_explicit(&called, memory_order_relaxed))
		atomic_store_explicit(&called, 1, memory_order_relaxed);
	return false;   /* natsMsg_Destroy frees it now */
}

int
rs_natsgc_active(void)
{
	natsMsg *m = NULL;

	if (atomic_load(&called))
		return 1;
	if (natsMsg_Create(&m, "rs.natsgc.probe", NULL, "", 0) != NATS_OK)
		return 0;
	natsMsg_Destroy(m);
	return atomic_load(&called);
}
