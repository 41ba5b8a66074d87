// `npm run bench -- --scaling`: muxgate's fan-out (flat out) and request path per shard count, the server on cores of
// its own and the clients (subscribers and publisher; wrk and php-fpm) pinned to the others when the host has enough.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPhpFpm } from '../../test/helpers/php-fpm.ts';
import { pin, planPinning, type Pinning } from '../pinning.ts';
import { processTree } from '../proc-stats.ts';
import { medianOf } from '../stats.ts';
import * as muxgate from '../systems/muxgate.ts';
import { runDeliveryScenario, type DeliveryResult, type DeliveryScenario } from './delivery-scenario.ts';
import { wrk, type RequestPathOptions, type WrkRun } from './request-path.ts';

const SCRIPT = fileURLToPath(new URL('../peers/hello.php', import.meta.url));
/** The subscriber processes and the publisher. */
const FAN_OUT_CLIENT_CORES = 3;
/** wrk's two threads and php-fpm. */
const REQUEST_CLIENT_CORES = 4;

export interface ScalingRow {
  shards: number;
  /** Undefined: the host has too few cores, server and clients shared them. */
  fanOutPinning?: Pinning;
  fanOut: DeliveryResult;
  requestPinning?: Pinning;
  requestPath: WrkRun;
}

async function requestPath(shards: number, options: RequestPathOptions, pinning: Pinning | undefined): Promise<WrkRun> {
  const fpm = await startPhpFpm({ documentRoot: dirname(SCRIPT), maxChildren: options.phpChildren, flushEachEcho: false });
  try {
    const phpPids = processTree(fpm.pid);
    const mux = await muxgate.start(shards, { MUX_FASTCGI: `${fpm.host}:${fpm.port}`, MUX_SCRIPT_FILENAME: SCRIPT, MUX_DOCUMENT_ROOT: dirname(SCRIPT) });
    try {
      if (pinning !== undefined) {
        pin(mux.serverPids(), pinning.server);
        pin(phpPids, pinning.clients);
      }
      const runs: WrkRun[] = [];
      for (let i = 0; i < options.runs; i++) {
        runs.push(await wrk(`http://127.0.0.1:${mux.port}/hello.php`, options, mux.serverPids(), phpPids, pinning?.clients, pinning === undefined ? 1 : 2));
      }
      return medianOf(runs);
    } finally {
      await mux.stop();
    }
  } finally {
    await fpm.stop();
  }
}

export async function runScaling(shards: number, fanOut: DeliveryScenario, options: RequestPathOptions): Promise<ScalingRow> {
  const fanOutPinning = planPinning(shards, FAN_OUT_CLIENT_CORES);
  const requestPinning = planPinning(shards, REQUEST_CLIENT_CORES);
  return {
    shards,
    fanOutPinning,
    fanOut: await runDeliveryScenario({ label: `muxgate, ${shards} shards`, start: () => muxgate.start(shards) }, { ...fanOut, pinning: fanOutPinning }),
    requestPinning,
    requestPath: await requestPath(shards, options, requestPinning),
  };
}
