// A worker thread that imports one module (workerData: its URL) and answers with the CommonJS files and Node's own
// modules the thread loaded meanwhile: what a thread running that module pays for in memory.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';

await import(workerData as string);
// process.moduleLoadList is Node's, undocumented and untyped.
const { moduleLoadList } = process as unknown as { moduleLoadList: string[] };
parentPort!.postMessage({ files: Object.keys(createRequire(import.meta.url).cache), builtins: moduleLoadList });
