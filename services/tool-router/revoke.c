/*
 * revoke.c - device token revocation reaches live connections at once.
 *
 * `runctl devices revoke` purges a device's entries from KV devtokens. The
 * token cache (auth.c) would otherwise keep accepting the token for its TTL,
 * and a device already connected would stay connected for as long as its
 * socket lives. So one thread here watches the bucket (an ordered consumer,
 * metadata only) and posts every deletion or purge to the service thread,
 * where rs_router_auth_revoke drops the cache entry and closes the
 * connections the token authenticated (error `revoked`, close 4403).
 *
 * The watch starts with the bucket's current entries: puts are skipped,
 * and old deletion markers are revocations of tokens no connection of this
 * fresh router can hold (harmless to apply). A watch that ends (NATS gone
 * for good) is logged; the cache TTL is then the bound again.
 */
#include <stdlib.h>
#include <string.h>

#include "router.h"
#include "rs_mem.h"
#include "rs_log.h"

typedef struct {
	rs_router_job j;
	char sum[65];
} revoke_job;

/* Service thread. */
static void
revoke_apply(rs_router *r, rs_router_job *jj)
{
	revoke_job *j = (revoke_job *)jj;
	int n = rs_router_auth_revoke(r, j->sum);

	if (n > 0)
		rs_info("router: token %.12s revoked: %d connection(s) closed", j->sum, n);
	free(j);
}

static void *
revoke_main(void *arg)
{
	rs_router *r = arg;
	kvEntry *e = NULL;
	natsStatus s;

	while (!atomic_load(&r->stopping)) {
		s = kvWatcher_Next(&e, r->tok_watcher, 500);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			if (!atomic_load(&r->stopping))
				rs_error("router: KV devtokens watch ended: %s (revocations now wait for "
				         "the token cache TTL)", natsStatus_GetText(s));
			break;
		}
		if (e == NULL)
			continue;   /* end of the initial values */
		if ((kvEntry_Operation(e) == kvOp_Delete || kvEntry_Operation(e) == kvOp_Purge) &&
		    strlen(kvEntry_Key(e)) == 64) {
			revoke_job *j = calloc(1, sizeof(*j));
			if (j == NULL)
				rs_oom(0);
			memcpy(j->sum, kvEntry_Key(e), 64);
			j->j.fn = revoke_apply;
			rs_router_post(r, &j->j);
		}
		kvEntry_Destroy(e);
		e = NULL;
	}
	return NULL;
}

rs_status
rs_router_revoke_start(rs_router *r)
{
	kvWatchOptions o;
	natsStatus s;

	kvWatchOptions_Init(&o);
	o.MetaOnly = true;
	s = kvStore_WatchAll(&r->tok_watcher, r->kv_tokens, &o);
	if (s != NATS_OK) {
		rs_error("router: cannot watch KV devtokens: %s", natsStatus_GetText(s));
		return rs_nats_status(s, 0);
	}
	if (pthread_create(&r->revoke_thread, NULL, revoke_main, r) != 0)
		return RS_ERR;
	r->revoke_started = 1;
	return RS_OK;
}

void
rs_router_revoke_stop(rs_router *r)
{
	if (r->tok_watcher != NULL)
		kvWatcher_Stop(r->tok_watcher);
	if (r->revoke_started)
		pthread_join(r->revoke_thread, NULL);
	kvWatcher_Destroy(r->tok_watcher);
	r->tok_watcher = NULL;
	r->revoke_started = 0;
}
