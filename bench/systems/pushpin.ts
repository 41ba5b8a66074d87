// Pushpin: subscribers GET /sub/<channel>, which its origin (peers/pushpin-origin.ts) holds as a GRIP stream, or open
// a WebSocket on /ws/<channel>, which Pushpin turns into WebSocket-over-HTTP requests to the origin (the route's
// `over_http`), whose answer to the OPEN event subscribes it; publishes go to the control API, POST /publish/ with
// http-stream or ws-message items.
import { fork, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { track, terminate } from '../child-processes.ts';
import { processTree } from '../proc-stats.ts';
import { freePort, waitForPorts } from '../../test/helpers/ports.ts';
import { renderTemplate } from './template.ts';
import { webSocketOpening } from '../subscriber-pool.ts';
import { sseEvent, type Address, type PublishRequest, type RunningSystem } from './system.ts';

const ORIGIN = fileURLToPath(new URL('../peers/pushpin-origin.ts', import.meta.url));
/** Instead of the package's 2,500 messages/s throttle (hwm 25,000). */
const MESSAGE_RATE = 10_000_000;
const MESSAGE_HWM = 100_000_000;

export function publishFormat(address: Address, marker: string, isWebSocket: boolean): PublishRequest {
  if (!('channel' in address)) throw new Error('Pushpin publishes to channels only');
  const formats = isWebSocket ? { 'ws-message': { content: marker } } : { 'http-stream': { content: sseEvent(marker) } };
  const body = JSON.stringify({ items: [{ channel: address.channel, formats }] });
  return { path: '/publish/', headers: { 'Content-Type': 'application/json' }, body };
}

/** `originPort`: where Pushpin routes every request (the request path: nginx); by default its GRIP origin, started here. */
export async function start(originPort?: number): Promise<RunningSystem> {
  const dir = mkdtempSync(join(tmpdir(), 'muxgate-bench-pushpin-'));
  mkdirSync(join(dir, 'run'));
  mkdirSync(join(dir, 'log'));
  const origin = originPort === undefined ? track(fork(ORIGIN, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })) : undefined;
  originPort ??= await new Promise<number>((resolve) => origin!.once('message', (message: { port: number }) => resolve(message.port)));
  const [port, publishPort] = [await freePort(), await freePort()];
  // over_http: a WebSocket becomes WebSocket-over-HTTP requests to the origin (plain requests are proxied as before).
  writeFileSync(join(dir, 'routes'), `* 127.0.0.1:${originPort},over_http\n`);
  const conf = join(dir, 'pushpin.conf');
  renderTemplate('pushpin.conf.template', { DIR: dir, PORT: port, PUBLISH_PORT: publishPort, MESSAGE_RATE, MESSAGE_HWM }, conf);
  const logFile = join(dir, 'pushpin.log');
  const runner = track(spawn('pushpin', ['--config', conf, '--merge-output', '--logfile', logFile], { stdio: ['ignore', 'ignore', 'inherit'] }));
  const exited = new Promise<never>((_, reject) => runner.once('exit', (code) => reject(new Error(`pushpin exited with code ${code}`))));
  exited.catch(() => {});
  await Promise.race([waitForPorts([port, publishPort], 'pushpin'), exited]);
  let warnings: string[] = [];
  return {
    label: 'Pushpin',
    kind: 'pushpin',
    port,
    subscribeRequest: 'GET /sub/{channel} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n',
    webSocketRequest: webSocketOpening('/ws/{channel}'),
    publishUrl: `http://127.0.0.1:${publishPort}`,
    // The runner and its services: condure, pushpin-proxy, pushpin-handler.
    serverPids: () => processTree(runner.pid!),
    warnings: () => warnings,
    async stop() {
      await terminate(runner);
      if (origin !== undefined) await terminate(origin);
      if (existsSync(logFile)) warnings = readFileSync(logFile, 'utf8').split('\n').filter((line) => /^\[(WARN|ERR)/.test(line) && !line.includes('while needing to exit'));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
