// The end of a turn: what other threads wait for leaves before the sockets' flush, whatever was scheduled first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { MESSAGES, SOCKETS, atTurnEnd } from '../workers/turn-end.ts';

test('messages to other threads run before the sockets\' flush scheduled earlier in the same turn', async () => {
  const ran: string[] = [];
  atTurnEnd(SOCKETS, () => ran.push('flush'));
  atTurnEnd(MESSAGES, () => ran.push('acks'));
  atTurnEnd(MESSAGES, () => ran.push('parts'));
  await nextTurn();
  assert.deepEqual(ran, ['acks', 'parts', 'flush']);
});

test('a task scheduled while the tasks run waits for the end of the next turn', async () => {
  const ran: string[] = [];
  atTurnEnd(SOCKETS, () => {
    ran.push('first slice');
    atTurnEnd(SOCKETS, () => ran.push('second slice'));
    atTurnEnd(MESSAGES, () => ran.push('message'));
  });
  await nextTurn();
  assert.deepEqual(ran, ['first slice']);
  await nextTurn();
  assert.deepEqual(ran, ['first slice', 'message', 'second slice']);
});
