// Work left for the end of the event-loop turn, in a fixed order: first what other threads and nodes wait for (part
// batches, acknowledgements that let a publisher go on), then the sockets' flush, which can take milliseconds.

export const MESSAGES = 0;
export const SOCKETS = 1;
export type Stage = typeof MESSAGES | typeof SOCKETS;

const stages: Array<Array<() => void>> = [[], []];
let isScheduled = false;

/** Runs `task` at the end of this turn, after every task of an earlier stage. */
export function atTurnEnd(stage: Stage, task: () => void): void {
  stages[stage].push(task);
  if (isScheduled) return;
  isScheduled = true;
  setImmediate(runAll);
}

function runAll(): void {
  isScheduled = false;
  for (let stage = 0; stage < stages.length; stage++) {
    // What a task schedules runs at the end of the next turn.
    const tasks = stages[stage];
    stages[stage] = [];
    for (const task of tasks) task();
  }
}
