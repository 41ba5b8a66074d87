// A worker thread that imports one module (workerData: its URL) and answers with the CommonJS files the thread loaded
// meanwhile: what a thread running that module pays for in memory.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';

await import(workerData as string);
parentPort!.postMessage(Object.keys(createRequire(import.meta.url).cache));
