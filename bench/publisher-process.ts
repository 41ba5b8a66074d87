// The orchestrator's side of the publisher process: fork it once per system run, send it publish commands.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { track, terminate } from './child-processes.ts';
import type { PublishCommand, PublishReport } from './publisher.ts';

const PUBLISHER = fileURLToPath(new URL('./publisher.ts', import.meta.url));

export class PublisherProcess {
  readonly child: ChildProcess;

  constructor() {
    this.child = track(fork(PUBLISHER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  publish(command: Omit<PublishCommand, 'type'>): Promise<PublishReport> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`publisher exited with code ${code}`));
      this.child.once('exit', onExit);
      this.child.once('message', (report: PublishReport) => {
        this.child.removeListener('exit', onExit);
        resolve(report);
      });
      this.child.send({ type: 'publish', ...command } satisfies PublishCommand);
    });
  }

  close(): Promise<void> {
    return terminate(this.child);
  }
}
