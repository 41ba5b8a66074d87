// The four prom-client classes a registry needs, loaded from their own files: the package's index also loads the push
// gateway (https, zlib), the cluster aggregator, Summary and the default metrics (with @opentelemetry/api), about
// 2.3 MiB of every shard's memory for code a shard never runs. The main thread, which uses those, imports the index.
// test/footprint.test.ts checks that these are the classes the index exports.
import type * as PromClient from 'prom-client';
// Built-ins by getBuiltinModule: an import would load what their lazy exports hide (docs/memory.md).
const { createRequire } = process.getBuiltinModule('node:module');

const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry;
export const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;
export const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
export const Histogram = require('prom-client/lib/histogram') as typeof PromClient.Histogram;
