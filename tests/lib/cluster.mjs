// cluster.mjs - helpers of the tests on a 3-node JetStream cluster
// (cluster, cluster_reads): a run's whole history read from the RUNS
// leader. Starting the cluster itself is tests/lib/stack.mjs
// (startCluster, startClusterStack).

// Every event of a run, in runseq order, straight from RUNS through the
// stream leader (STREAM.MSG.GET): a follower answering a direct get may be
// behind, and these tests ask right after a leader change. A 503
// ("JetStream system temporarily unavailable": a resumed node's return can
// start another election) is asked again for up to 30 s, as any client
// would.
export async function runHistory(jsm, runId, tenant = 'acme') {
  const out = [];
  let seq = 0;
  const deadline = Date.now() + 30000;
  for (;;) {
    let m;
    try {
      m = await jsm.streams.getMessage('RUNS', { seq: seq + 1, next_by_subj: `runs.${tenant}.${runId}` });
    } catch (e) {
      if (e.code === '404' || /not found|no message/i.test(e.message)) break;
      if (e.code === '503' && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 200));
        continue;
      }
      throw e;
    }
    seq = m.seq;
    out.push(JSON.parse(new TextDecoder().decode(m.data)));
  }
  return out;
}
