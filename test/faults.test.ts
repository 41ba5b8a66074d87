// Faults: php-fpm killed in the middle of responses, down, and back on the same port; a shard thread
// killed under load; a shard thread stalled. What the clients see, what the push API answers, what leaks.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { PHP_ROOT, openStream, phpBackend, sendPush, type OpenStream, type PushReply } from './helpers/fixtures.ts';
import { startPhpFpm, type PhpFpm } from './helpers/php-fpm.ts';
import { freePort } from './helpers/ports.ts';
import { startMuxgate, metricValue, type Muxgate } from './helpers/muxgate.ts';
import { RawHttp, decodeChunked } from './helpers/raw-http.ts';
import { waitUntil } from './helpers/wait.ts';

const FPM_CHILDREN = 8;

function shardOf(token: string): number {
  return Number(token.split('.')[1]);
}

/** Lines `part N` or `line N` numbered 0, 1, 2, ... with nothing else: none lost, none repeated. */
function assertNumbered(body: string, word: string): number {
  const lines = body.split('\n');
  assert.equal(lines.pop(), '', `body ends mid-line: ${JSON.stringify(body.slice(-40))}`);
  lines.forEach((line, i) => assert.equal(line, `${word} ${i}`));
  return lines.length;
}

// --- php-fpm on a port of our choosing, so that it can be killed and started again where muxgate looks.

/** php-fpm on a port of the test's choosing, so that it can come back on the same one after being killed. */
async function launchPhpFpm(port: number): Promise<PhpFpm> {
  const fpm = await startPhpFpm({ documentRoot: PHP_ROOT, maxChildren: FPM_CHILDREN, port });
  // pm = static: every child is up before the test relies on them (and kills them).
  await waitUntil(() => fpm.workerPids().length === FPM_CHILDREN, 5000, 'php-fpm children');
  return fpm;
}

/** SIGKILL to the master and every child at once, as the OOM killer or a crash would leave it. */
async function killPhpFpm(fpm: PhpFpm): Promise<void> {
  assert.equal(fpm.workerPids().length, FPM_CHILDREN);
  await fpm.kill();
}

/**
 * muxgate's own TCP sockets to the backend's port, in any state (ESTABLISHED, or CLOSE_WAIT when php-fpm
 * closed and muxgate did not): the sockets of /proc/<pid>/net/tcp whose inode is one of the process's fds.
 */
function backendSockets(pid: number, port: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match !== null) inodes.add(match[1]);
    } catch {
      // Closed meanwhile.
    }
  }
  const states: string[] = [];
  for (const row of readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1)) {
    const fields = row.trim().split(/\s+/);
    if (fields.length < 10) continue;
    if (parseInt(fields[2].split(':')[1], 16) === port && inodes.has(fields[9])) states.push(TCP_STATES[fields[3]] ?? fields[3]);
  }
  return states;
}

const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED', '02': 'SYN_SENT', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2', '06': 'TIME_WAIT', '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0B': 'CLOSING',
};

describe('php-fpm killed in the middle of responses, down, and back on the same port', () => {
  let port: number;
  let fpm: PhpFpm;
  let mux: Muxgate;
  const clients: RawHttp[] = [];
  let held: OpenStream[] = [];

  const connections = () => backendSockets(mux.child.pid!, port);
  const untilIdle = (timeoutMs = 3000) => waitUntil(() => connections().length === 0, timeoutMs, () => `muxgate's FastCGI connections closed (now: ${connections().join(', ')})`);

  before(async () => {
    port = await freePort();
    fpm = await launchPhpFpm(port);
    mux = await startMuxgate({
      MUX_FASTCGI: `127.0.0.1:${port}`, MUX_DOCUMENT_ROOT: PHP_ROOT, MUX_SHARDS: '2', MUX_FASTCGI_TIMEOUT: '20', MUX_LOG_LEVEL: 'info',
    });
  });

  after(async () => {
    for (const client of clients) client.close();
    await mux?.stop();
    if (fpm !== undefined) await fpm.stop();
  });

  // The scripts below run 10 s: a connection that lives on for seconds after the client left or the 504 is a leak.
  test('a client that leaves in the middle of an ordinary response frees its FastCGI connection', async () => {
    // 100 lines, 100 ms apart: the script would hold its connection for 10 s.
    const client = await RawHttp.get(`${mux.url}/slow-body.php?kind=plain&count=100`);
    try {
      await client.waitFor((t) => decodeChunked(t).body.includes('line 2\n'));
      assert.deepEqual(connections(), ['ESTABLISHED']);
      client.close();
      // nginx closes the upstream connection when its client leaves (fastcgi_ignore_client_abort off): well before the
      // script would have ended.
      await untilIdle(5000);
    } finally {
      client.close();
      await untilIdle(5000).catch(() => {});
    }
  });

  test('a backend that misses MUX_FASTCGI_TIMEOUT: 504, and its FastCGI connection is closed', async () => {
    const impatient = await startMuxgate({ MUX_FASTCGI: `127.0.0.1:${port}`, MUX_DOCUMENT_ROOT: PHP_ROOT, MUX_SHARDS: '1', MUX_FASTCGI_TIMEOUT: '0.5', MUX_LOG_LEVEL: 'info' });
    const sockets = () => backendSockets(impatient.child.pid!, port);
    try {
      const started = Date.now();
      // The script answers after 10 s: the 504 and the close must come well before.
      const response = await fetch(`${impatient.url}/slow-body.php?kind=silent&count=100`);
      assert.equal(response.status, 504);
      assert.ok(Date.now() - started < 5000, `504 after ${Date.now() - started} ms`);
      await waitUntil(() => sockets().length === 0, 4000, () => `the timed-out request's FastCGI connection closed (now: ${sockets()})`);
    } finally {
      await waitUntil(() => sockets().length === 0, 5000, 'FastCGI connections closed').catch(() => {});
      await impatient.stop();
    }
  });

  test('killed mid-response: 502 before a head, the parts before stand, held streams keep working, no connection leaks', async () => {
    held = await Promise.all([0, 1, 2, 3].map(() => openStream(mux.url, 'hold=stream&silent=1')));
    clients.push(...held.map((h) => h.client));
    assert.deepEqual(new Set(held.map((h) => shardOf(h.token))), new Set([0, 1]));
    // Their backend bodies have ended: no FastCGI connection stays behind for a held stream.
    await untilIdle();

    const silent = await RawHttp.get(`${mux.url}/slow-body.php?kind=silent`);
    const multiplexed = await RawHttp.get(`${mux.url}/slow-body.php?kind=multiplex`);
    clients.push(silent, multiplexed);
    const { client: multiplexedHeld, token: heldToken } = await openStream(mux.url, 'kind=multiplex&hold=stream', { script: 'slow-body.php' });
    clients.push(multiplexedHeld);
    for (const client of [multiplexed, multiplexedHeld]) await client.waitFor((t) => decodeChunked(t).body.includes('part 2\n'));
    // One FastCGI connection per request in flight: proof that the count below sees muxgate's connections.
    await waitUntil(() => connections().length === 3, 5000, '3 FastCGI connections in flight');
    assert.deepEqual(connections(), ['ESTABLISHED', 'ESTABLISHED', 'ESTABLISHED']);

    const killedAt = Date.now();
    await killPhpFpm(fpm);

    // No head yet: a 502.
    const silentText = await silent.waitForClose(3000);
    assert.match(silentText, /^HTTP\/1\.1 502 /);
    await mux.waitForLog((l) => l.msg === 'backend ended without a response head');
    // A multiplexed body cut short: the parts before stand and the response ends cleanly, at once.
    await multiplexed.waitFor((t) => decodeChunked(t).isComplete, 3000, 'a clean end');
    assert.ok(assertNumbered(decodeChunked(multiplexed.text).body, 'part') >= 3);
    await mux.waitForLog((l) => l.msg === 'backend multiplexed body rejected; the parts before it stand' && /^truncated multiplex body/.test(String(l.err)));
    const endedAfter = Date.now() - killedAt;
    assert.ok(endedAfter < 3000, `clients answered ${endedAfter} ms after the kill`);

    // Held streams, including the one whose body was cut (Multiplex-Hold: stream holds it), keep working.
    const pushAgent = new http.Agent({ keepAlive: true });
    try {
      const tokens = [...held.map((h) => h.token), heldToken];
      const { status, answer } = await sendPush(mux.pushUrl, [{ tokens, body: 'after the crash\n' }], { agent: pushAgent });
      assert.equal(status, 200);
      assert.deepEqual(answer, { parts: 1, deliveries: 5, gone: [] });
      for (const h of held) await h.client.waitFor((t) => decodeChunked(t).body === 'after the crash\n');
      await multiplexedHeld.waitFor((t) => decodeChunked(t).body.endsWith('\nafter the crash\n'));
      assert.equal(multiplexedHeld.hasClosed, false);
    } finally {
      pushAgent.destroy();
    }
    await untilIdle();
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_shard_restarts_total'), 0);
  });

  test('while php-fpm is down: 502 promptly, logged and counted; held streams unaffected', async () => {
    const before = await metricValue(mux.metricsUrl, 'muxgate_fastcgi_errors_total{kind="connect"}') ?? 0;
    for (let i = 0; i < 4; i++) {
      const started = Date.now();
      const response = await fetch(`${mux.url}/stream.php?hold=stream`);
      assert.equal(response.status, 502);
      assert.equal(await response.text(), '502 Bad Gateway\n');
      assert.ok(Date.now() - started < 2000, `502 after ${Date.now() - started} ms`);
    }
    await mux.waitForLog((l) => l.msg === 'backend unavailable');
    assert.equal(await metricValue(mux.metricsUrl, 'muxgate_fastcgi_errors_total{kind="connect"}'), before + 4);
    for (const h of held) assert.equal(h.client.hasClosed, false);
    assert.deepEqual(connections(), []);
  });

  test('php-fpm started again on the same port: requests are served again; no FastCGI connection leaks', async () => {
    fpm = await launchPhpFpm(port);
    const response = await fetch(`${mux.url}/stream.php`);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /^token=/);
    const fresh = await openStream(mux.url, 'hold=stream&silent=1');
    clients.push(fresh.client);
    const pushAgent = new http.Agent({ keepAlive: true });
    try {
      const { answer } = await sendPush(mux.pushUrl, [{ tokens: [fresh.token, ...held.map((h) => h.token)], body: 'back\n' }], { agent: pushAgent });
      assert.deepEqual(answer, { parts: 1, deliveries: 5, gone: [] });
      await fresh.client.waitFor((t) => decodeChunked(t).body === 'back\n');
    } finally {
      pushAgent.destroy();
    }
    // A burst of requests, then idle: every FastCGI connection is closed again.
    const burst = await Promise.all(Array.from({ length: 40 }, () => fetch(`${mux.url}/stream.php`).then((r) => r.status)));
    assert.deepEqual(new Set(burst), new Set([200]));
    await untilIdle();
  });
});

test('an ordinary response cut by the backend\'s death is not passed off as complete', async () => {
  const port = await freePort();
  const fpm = await launchPhpFpm(port);
  const mux = await startMuxgate({ MUX_FASTCGI: `127.0.0.1:${port}`, MUX_DOCUMENT_ROOT: PHP_ROOT, MUX_SHARDS: '1', MUX_LOG_LEVEL: 'info' });
  const plain = await RawHttp.get(`${mux.url}/slow-body.php?kind=plain`);
  try {
    await plain.waitFor((t) => decodeChunked(t).body.includes('line 2\n'));
    assert.match(plain.text, /^HTTP\/1\.1 200 /);
    await killPhpFpm(fpm);
    // The head (200, chunked) is out: the only way left to tell the client the body is incomplete
    // is to close the connection without the last chunk, as nginx does.
    await waitUntil(() => plain.hasClosed || decodeChunked(plain.text).isComplete, 3000, 'the response ended');
    assert.ok(assertNumbered(decodeChunked(plain.text).body, 'line') >= 3);
    assert.equal(decodeChunked(plain.text).isComplete, false, `the truncated body ended with a last chunk, as if complete: ${JSON.stringify(plain.text)}`);
    await plain.waitForClose(1000);
  } finally {
    plain.close();
    await mux.stop();
    await fpm.stop();
  }
});

describe('shard threads', () => {
  let fpm: PhpFpm;
  before(async () => {
    fpm = await startPhpFpm({ documentRoot: PHP_ROOT });
  });
  after(async () => {
    await fpm?.stop();
  });

  async function startShards(shards: number): Promise<RunningServer> {
    const config = loadConfig({
      ...phpBackend(fpm), MUX_SHARDS: String(shards),
      MUX_LISTEN: '127.0.0.1:0', MUX_PUSH_LISTEN: '127.0.0.1:0', MUX_METRICS_LISTEN: '127.0.0.1:0', MUX_SHUTDOWN_GRACE: '1',
    });
    return startServer(config, createLogger('silent'));
  }

  /** The shard holding the push agent's one connection: the one with a connection more than its streams. */
  async function shardOfPusher(metricsUrl: string, streams: { token: string }[], shards: number): Promise<number> {
    const text = await (await fetch(metricsUrl)).text();
    const extra: number[] = [];
    for (let shard = 0; shard < shards; shard++) {
      const open = Number(new RegExp(`^muxgate_open_connections\\{shard="${shard}"\\} (\\d+)$`, 'm').exec(text)![1]);
      extra.push(open - streams.filter((s) => shardOf(s.token) === shard).length);
    }
    assert.equal(extra.filter((n) => n === 1).length, 1, `connections beyond streams per shard: ${extra}`);
    return extra.indexOf(1);
  }

  test('a shard killed under load: the others lose nothing, push answers stay exact and prompt, it comes back', async (t) => {
    const server = await startShards(3);
    const base = `http://127.0.0.1:${server.public.port}`;
    const pushUrl = `http://127.0.0.1:${server.push.port}/push`;
    const metricsUrl = `http://127.0.0.1:${server.metrics.port}/metrics`;
    const pushAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const probeAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const streams = await Promise.all(Array.from({ length: 30 }, () => openStream(base, 'hold=stream&silent=1')));
    try {
      const tokens = streams.map((s) => s.token);
      assert.equal((await sendPush(pushUrl, [{ tokens: [], body: 'warm-up' }], { agent: pushAgent })).status, 200);
      const pusherShard = await shardOfPusher(metricsUrl, streams, 3);
      // The victim is not the pusher's shard: its push connection would die with it. Its survivors are
      // on the pusher's shard (local writes) and on the third one (across the router mesh).
      const victim = (pusherShard + 1) % 3;
      const victims = streams.filter((s) => shardOf(s.token) === victim);
      const survivors = streams.filter((s) => shardOf(s.token) !== victim);
      const victimTokens = new Set(victims.map((v) => v.token));
      assert.ok(victims.length > 0 && new Set(survivors.map((s) => shardOf(s.token))).size === 2);
      const undeliverableBefore = await metricValue(metricsUrl, 'muxgate_undeliverable_total') ?? 0;

      type Answered = PushReply & { body: string; isBeforeKill: boolean; isAfterBack: boolean };
      const answers: Answered[] = [];
      const killedThread = server.shards.threadOf(victim)!.threadId;
      const isBack = () => server.shards.isUp(victim) && server.shards.threadOf(victim)?.threadId !== killedThread;
      let killed: Promise<void> | null = null;
      // A second pusher, on a connection of its own, starts the moment the thread is gone: while the
      // shard is away its parts for the victim's tokens are refused at once (shard_down).
      const probe = async () => {
        await server.shards.threadOf(victim)!.terminate();
        await waitUntil(() => !server.shards.isUp(victim) || isBack(), 5000, 'the supervisor saw the shard die');
        for (let i = 0; i < 5; i++) answers.push({ ...await sendPush(pushUrl, [{ tokens, body: `q${i}\n` }], { agent: probeAgent }), body: `q${i}\n`, isBeforeKill: false, isAfterBack: false });
      };
      let backAt = -1;
      const deadline = Date.now() + 15_000;
      for (let seq = 0; backAt < 0 || seq < backAt + 30; seq++) {
        assert.ok(Date.now() < deadline, `the shard did not come back (${seq} pushes)`);
        const isBeforeKill = killed === null;
        const isAfterBack = backAt >= 0;
        answers.push({ ...await sendPush(pushUrl, [{ tokens, body: `p${seq}\n` }], { agent: pushAgent }), body: `p${seq}\n`, isBeforeKill, isAfterBack });
        if (seq === 40) killed = probe();
        if (killed !== null && backAt < 0 && isBack()) backAt = seq + 1;
      }
      await killed;

      let gone = 0;
      for (const { body, status, answer, ms, isBeforeKill, isAfterBack } of answers) {
        const where = `push of ${JSON.stringify(body)}: ${JSON.stringify(answer)}`;
        assert.equal(status, 200, where);
        assert.ok(ms < 3000, `${where} took ${ms} ms`);
        assert.equal(answer.parts, 1, where);
        for (const token of answer.gone) assert.ok(victimTokens.has(token), `${where}: a survivor reported gone`);
        assert.equal(new Set(answer.gone).size, answer.gone.length, where);
        gone += answer.gone.length;
        // Every survivor is counted, whatever happens to the victim's shard; the victim's tokens are
        // delivered, gone, or (sent into the dying thread) unconfirmed.
        assert.ok(answer.deliveries >= survivors.length, where);
        if (answer.unconfirmed === undefined) assert.equal(answer.deliveries + answer.gone.length, tokens.length, where);
        else assert.ok(answer.unconfirmed > 0 && answer.deliveries + answer.gone.length < tokens.length, where);
        if (isBeforeKill) assert.deepEqual([answer.deliveries, answer.gone], [tokens.length, []], where);
        if (isAfterBack) assert.deepEqual([answer.deliveries, answer.gone.sort()], [survivors.length, [...victimTokens].sort()], where);
      }
      assert.ok(answers.some((a) => a.isAfterBack));

      // Every part reached every survivor, once, in the order of its pusher.
      const expected = (prefix: string) => answers.filter((a) => a.body.startsWith(prefix)).map((a) => a.body).join('');
      const bodyOf = (client: RawHttp, prefix: string) => decodeChunked(client.text).body.split(/(?<=\n)/).filter((l) => l.startsWith(prefix)).join('');
      for (const survivor of survivors) {
        await survivor.client.waitFor(() => bodyOf(survivor.client, 'p') === expected('p') && bodyOf(survivor.client, 'q') === expected('q'), 3000, 'every part');
        assert.equal(decodeChunked(survivor.client.text).body.length, expected('p').length + expected('q').length, 'no duplicates');
        assert.equal(survivor.client.hasClosed, false);
      }
      // The victim's clients were disconnected, after a gapless prefix of the parts.
      for (const v of victims) {
        await v.client.waitForClose(3000);
        assert.ok(expected('p').startsWith(decodeChunked(v.client.text).body));
      }

      // Every token reported gone was counted undeliverable: shard_down while the shard was away,
      // gone once its successor, which never knew them, was up.
      assert.equal(await metricValue(metricsUrl, 'muxgate_undeliverable_total'), undeliverableBefore + gone);
      const shardDown = await metricValue(metricsUrl, 'muxgate_undeliverable_total{reason="shard_down"}') ?? 0;
      assert.ok(shardDown > 0, 'no part was refused while the shard was down');
      assert.equal(await metricValue(metricsUrl, 'muxgate_shard_restarts_total'), 1);
      assert.equal(await metricValue(metricsUrl, `muxgate_shard_up{shard="${victim}"}`), 1);
      const unconfirmed = answers.filter((a) => a.answer.unconfirmed !== undefined).length;
      t.diagnostic(`${answers.length} pushes; ${gone} tokens gone (${shardDown} while the shard was down); ${unconfirmed} answers unconfirmed; `
        + `slowest answer ${Math.max(...answers.map((a) => a.ms))} ms`);

      // The restarted shard takes the next client (it has the fewest) and is back in the mesh.
      const fresh = await openStream(base, 'hold=stream&silent=1');
      assert.equal(shardOf(fresh.token), victim);
      const { answer } = await sendPush(pushUrl, [{ tokens: [fresh.token, survivors[0].token], body: 'welcome back\n' }], { agent: pushAgent });
      assert.deepEqual(answer, { parts: 1, deliveries: 2, gone: [] });
      await fresh.client.waitFor((text) => decodeChunked(text).body === 'welcome back\n');
      fresh.client.close();
    } finally {
      for (const s of streams) s.client.close();
      pushAgent.destroy();
      probeAgent.destroy();
      await server.stop();
    }
  });

  test('a shard stalled for 2 s: the other shards\' clients keep their latency', async () => {
    const server = await startShards(3);
    const base = `http://127.0.0.1:${server.public.port}`;
    const pushUrl = `http://127.0.0.1:${server.push.port}/push`;
    const metricsUrl = `http://127.0.0.1:${server.metrics.port}/metrics`;
    const pushAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const lateAgent = new http.Agent({ keepAlive: false });
    const streams = await Promise.all(Array.from({ length: 15 }, () => openStream(base, 'hold=stream&silent=1')));
    try {
      assert.equal((await sendPush(pushUrl, [{ tokens: [], body: 'warm-up' }], { agent: pushAgent })).status, 200);
      const pusherShard = await shardOfPusher(metricsUrl, streams, 3);
      const stalledShard = (pusherShard + 1) % 3;
      const stalled = streams.filter((s) => shardOf(s.token) === stalledShard);
      // Local to the pusher's shard, and across the router mesh to the third one.
      const others = streams.filter((s) => shardOf(s.token) !== stalledShard);
      const otherTokens = others.map((s) => s.token);

      const STALL_MS = 2000;
      const stalledAt = Date.now();
      server.shards.stall(stalledShard, STALL_MS);
      // A part for the stalled shard waits for it; its arrival time proves the stall.
      const late = sendPush(pushUrl, [{ tokens: [stalled[0].token], body: 'late\n' }], { agent: lateAgent });
      const lateArrived = stalled[0].client.waitFor((t) => decodeChunked(t).body === 'late\n', STALL_MS + 3000).then(() => Date.now() - stalledAt);

      const latencies: number[] = [];
      for (let i = 0; Date.now() - stalledAt < STALL_MS - 300; i++) {
        const sentAt = Date.now();
        const { status, answer, ms } = await sendPush(pushUrl, [{ tokens: otherTokens, body: `s${i}\n` }], { agent: pushAgent });
        assert.equal(status, 200);
        assert.deepEqual(answer, { parts: 1, deliveries: others.length, gone: [] });
        // Well under the 2 s stall a push would wait if it waited for the stalled shard (room for a busy machine).
        assert.ok(ms < 1000, `push ${i} answered after ${ms} ms during the stall`);
        await Promise.all(others.map((o) => o.client.waitFor((t) => decodeChunked(t).body.endsWith(`s${i}\n`), 5000, `s${i}`)));
        latencies.push(Date.now() - sentAt);
        // Pacing, not synchronisation: about ten pushes spread over the stall.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const lateMs = await lateArrived;
      assert.ok(lateMs >= STALL_MS - 300, `the stalled shard wrote after ${lateMs} ms: it was not stalled`);
      assert.ok(lateMs < STALL_MS + 2000, `the stalled shard wrote after ${lateMs} ms`);
      assert.equal((await late).status, 200);
      // About ten fit in the stall when none waits for the stalled shard; one or two if they did.
      assert.ok(latencies.length >= 5, `${latencies.length} pushes during the stall`);
      assert.ok(Math.max(...latencies) < 1000, `delivery latencies during the stall: ${latencies.join(', ')} ms`);

      // After the stall every stream is reached again, promptly.
      const { answer, ms } = await sendPush(pushUrl, [{ tokens: streams.map((s) => s.token), body: 'after\n' }], { agent: pushAgent });
      assert.deepEqual(answer, { parts: 1, deliveries: streams.length, gone: [] });
      assert.ok(ms < 1000, `answered after ${ms} ms`);
      for (const s of streams) await s.client.waitFor((t) => decodeChunked(t).body.endsWith('after\n'));
      assert.equal(await metricValue(metricsUrl, 'muxgate_shard_restarts_total'), 0);
    } finally {
      for (const s of streams) s.client.close();
      pushAgent.destroy();
      lateAgent.destroy();
      await server.stop();
    }
  });
});
