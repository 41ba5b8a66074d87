// Scenarios 2-4 and the rate curve: subscribers on one channel or one address each, messages published flat out or
// at a rate; the runs of one or several phases (rates) on one server start and one set of subscribers, each measured afresh.
import { PublisherProcess } from '../publisher-process.ts';
import { SubscriberPool, type Http2Subscribers } from '../subscriber-pool.ts';
import type { Address, RunningSystem } from '../systems/system.ts';
import { measureDeliveries, warmUp, type DeliveryRun, type PublishPlan } from './delivery-run.ts';
import { medianOf } from '../stats.ts';
import { pin, type Pinning } from '../pinning.ts';

export interface SystemSpec {
  label: string;
  start(): Promise<RunningSystem>;
}

export interface DeliveryScenario {
  subscribers: number;
  subscriberProcesses: number;
  /** One channel for all, or an address per subscriber (a channel each; muxgate: its token). */
  isAddressEach: boolean;
  /** Messages per run; with isAddressEach, one per subscriber and this is ignored. */
  messages: number;
  /** Messages per second; 0: flat out. */
  rate: number;
  concurrency: number;
  runs: number;
  /** WebSocket subscribers (the system's `webSocketRequest`) instead of streams. */
  isWebSocket?: boolean;
  /** Subscribers over TLS and HTTP/2 (bench/subscriber-h2.c on the system's `http2Path`) instead of HTTP/1.1. */
  http2?: Http2Subscribers;
  /** Cores for the server and for the subscribers and the publisher (`taskset` lists), when the host has enough. */
  pinning?: Pinning;
}

export interface DeliveryResult {
  label: string;
  scenario: DeliveryScenario;
  median: DeliveryRun;
  runs: DeliveryRun[];
  notes: string[];
}

const CHANNEL = 'bench';

export async function runDeliveryScenario(spec: SystemSpec, scenario: DeliveryScenario): Promise<DeliveryResult> {
  return (await runDeliveryPhases(spec, [scenario]))[0];
}

/**
 * The phases share the first one's subscribers (count, processes, addressing) and pinning; each phase is its own
 * rate, messages and runs, and gives its own result.
 */
export async function runDeliveryPhases(spec: SystemSpec, phases: DeliveryScenario[]): Promise<DeliveryResult[]> {
  const [scenario] = phases;
  const system = await spec.start();
  const pool = new SubscriberPool(scenario.subscriberProcesses, scenario.http2);
  const publisher = new PublisherProcess();
  const notes: string[] = [];
  try {
    if (scenario.pinning !== undefined) {
      pin(system.serverPids(), scenario.pinning.server);
      pin([...pool.pids, publisher.pid], scenario.pinning.clients);
    }
    const isWebSocket = scenario.isWebSocket ?? false;
    const byToken = scenario.isAddressEach && system.tokenStreamRequest !== undefined && !isWebSocket;
    const tokens: string[] = [];
    const failedOpens = new Map<string, number>();
    const ports = system.ports ?? [system.port];
    for (let i = 0; i < ports.length; i++) {
      // Several nodes: an even share of the subscribers on each.
      const share = Math.floor(scenario.subscribers / ports.length) + (i < scenario.subscribers % ports.length ? 1 : 0);
      const opened = await pool.open(ports[i], share, {
        request: scenario.http2 !== undefined ? system.http2Path : isWebSocket ? system.webSocketRequest : byToken ? system.tokenStreamRequest : system.subscribeRequest,
        channel: CHANNEL,
        isChannelEach: scenario.isAddressEach, isWebSocket,
      });
      tokens.push(...opened.tokens);
      for (const [status, times] of opened.failedOpens) failedOpens.set(status, (failedOpens.get(status) ?? 0) + times);
    }
    for (const [status, times] of failedOpens) notes.push(`opening streams: ${times}× "${status}", retried`);
    const addresses: Address[] = !scenario.isAddressEach ? [{ channel: CHANNEL }]
      : byToken ? tokens.map((token) => ({ token }))
      : tokens.map((_, i) => ({ channel: `${CHANNEL}-${i}` }));
    const planOf = (phase: DeliveryScenario): PublishPlan => {
      const count = phase.isAddressEach ? phase.subscribers : phase.messages;
      return { addresses, count, concurrency: phase.concurrency, rate: phase.rate, expected: phase.isAddressEach ? count : count * phase.subscribers, isWebSocket };
    };
    const warmedUp = await warmUp(system, pool, publisher, planOf(scenario));
    if (warmedUp < scenario.subscribers) notes.push(`warm-up: ${warmedUp} of ${scenario.subscribers} subscribers got the first message within 10 s`);
    const results: DeliveryResult[] = [];
    // The subscribers count closed streams since they opened: a run's own are the increase.
    let closedBefore = 0;
    for (const phase of phases) {
      const runs: DeliveryRun[] = [];
      const where = phases.length > 1 ? `${phase.subscribers} subscribers at ${phase.rate} msg/s, ` : '';
      for (let i = 0; i < phase.runs; i++) {
        const run = await measureDeliveries(system, pool, publisher, planOf(phase));
        for (const [what, n] of run.failures) notes.push(`${where}run ${i + 1}: ${n} publish(es) failed: ${what}`);
        if (run.closed > closedBefore) notes.push(`${where}run ${i + 1}: ${run.closed - closedBefore} streams closed by the server (their later messages count as missing)`);
        closedBefore = run.closed;
        runs.push(run);
      }
      // The phases share one server and one set of subscribers: their notes go with the first.
      results.push({ label: system.label, scenario: phase, median: medianOf(runs), runs, notes: results.length === 0 ? notes : [] });
    }
    return results;
  } finally {
    await pool.close();
    await publisher.close();
    await system.stop();
    for (const warning of system.warnings().slice(0, 5)) notes.push(`server log: ${warning}`);
  }
}
