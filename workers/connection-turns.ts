// A connection's pipelined requests reach the backend one at a time, each once the response before it has ended, as
// nginx serves them: one client cannot open thousands of FastCGI requests with one write.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

type Start = (req: IncomingMessage, res: ServerResponse) => void;

interface Turn {
  current: ServerResponse;
  /** Requests parsed behind the current one: req, res, req, res, … */
  waiting: Array<IncomingMessage | ServerResponse>;
}

export class ConnectionTurns {
  readonly #start: Start;
  /** Connections with a request in progress. */
  readonly #turns = new Map<Socket, Turn>();
  readonly #onResponseClose: (this: ServerResponse) => void;

  constructor(start: Start) {
    this.#start = start;
    const turns = this;
    // Shared by every response, called with it as `this`: no closure per request.
    this.#onResponseClose = function (this: ServerResponse) {
      turns.#next(this.req.socket, this);
    };
  }

  /** Starts the request now, or after the requests before it on its connection. */
  take(req: IncomingMessage, res: ServerResponse): void {
    const turn = this.#turns.get(req.socket);
    if (turn === undefined) {
      this.#turns.set(req.socket, { current: res, waiting: [] });
      return this.#begin(req, res);
    }
    turn.waiting.push(req, res);
    // Nothing more is read from the connection until the waiting requests have had their turn: a flood of pipelined
    // requests stops at what one read held.
    req.socket.pause();
  }

  /**
   * The request in progress no longer needs its turn although its response goes on: a held stream whose connection
   * left node:http, which happens only when nothing was parsed behind it (see http-detach.ts).
   */
  release(socket: Socket): void {
    if (this.#turns.get(socket)?.waiting.length === 0) this.#turns.delete(socket);
  }

  #begin(req: IncomingMessage, res: ServerResponse): void {
    res.once('close', this.#onResponseClose);
    this.#start(req, res);
  }

  #next(socket: Socket, ended: ServerResponse): void {
    const turn = this.#turns.get(socket);
    if (turn === undefined || turn.current !== ended) return;
    const waiting = turn.waiting;
    while (waiting.length > 0) {
      const req = waiting.shift() as IncomingMessage;
      const res = waiting.shift() as ServerResponse;
      // The connection closed meanwhile: node:http has aborted the requests parsed on it.
      if (req.destroyed || res.destroyed) continue;
      turn.current = res;
      if (waiting.length === 0) socket.resume();
      return this.#begin(req, res);
    }
    this.#turns.delete(socket);
  }
}
