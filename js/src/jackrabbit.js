// @ts-check
/**
 * The jackrabbit client for browsers and Node.js >= 18: protocol v1 (docs/protocol.md §3, §4)
 * over one WebSocket, pipelined, mirroring the Python client (`jackrabbit_asyncio.Client`).
 *
 *     import { connect } from 'jackrabbit-client';
 *     const client = await connect('wss://127.0.0.1:8443', { queue: 'orders' });
 *     const seq = await client.add('hello');
 *     for await (const message of await client.take({ prefetch: 100 })) {
 *       console.log(message.seq, message.text());
 *       message.ack();
 *     }
 *
 * The WebSocket: a browser's own (and Node 22's global one) when it has one and no `ca` is
 * given; otherwise the `ws` package (an optional peer dependency), which is the only way to
 * trust a custom CA on Node, since the standard WebSocket constructor takes no TLS options.
 *
 * Pipelining: every request carries a fresh `req` (protocol §3.5) and its promise settles when
 * the answer carrying that `req` arrives, so any number of `add`s may be in flight at once.
 * Acks are cumulative (§3.3): the `ack()`s made in one task are sent as one ack of the highest
 * seq, at the end of the task, and always before any request sent after them.
 *
 * Reconnecting (`reconnect: true`): when the connection is lost the client reconnects with
 * exponential back-off (`RETRY_FIRST` doubling up to `RETRY_MAX` ms, until `close()`) and, if
 * it was a consumer, sends `take` again: it joins the *end* of the consumer line (§6.5). Adds
 * waiting for their answer fail with `ConnectionLost`: such a message may or may not have been
 * stored; give messages an idempotency `key` and retry (§6.8). Adds made while reconnecting wait
 * for the new connection. Deliveries not yet read from the iterator when the connection drops
 * are discarded (their acks could not reach the server); the server delivers them again.
 */
import { Decoder, Encoder } from '@msgpack/msgpack';

/** Milliseconds allowed for TCP connect, TLS and the WebSocket upgrade. */
export const CONNECT_TIMEOUT = 10_000;
/** Milliseconds `close()` waits for the server's half of the close handshake. */
export const CLOSE_TIMEOUT = 5_000;
/** Reconnection back-off, milliseconds: the first and the largest delay. */
export const RETRY_FIRST = 100;
export const RETRY_MAX = 5_000;
/** Bytes buffered by the WebSocket past which new requests wait for it to drain. */
export const HIGH_WATER = 1024 * 1024;
/** How often, in milliseconds, a waiting request looks whether the buffer drained (the
 * standard WebSocket has no drain event). */
const DRAIN_POLL = 5;
/** Queue names the server accepts (protocol §1.3). */
const QUEUE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DEFAULT_QUEUE = 'default';
const CLOSE_NORMAL = 1000;

/** @typedef {'active' | 'standby'} Role */

/**
 * @typedef {object} ConnectOptions
 * @property {string} [queue] The queue's name (protocol §1.3); `default` when left out.
 * @property {string | Uint8Array | Array<string | Uint8Array>} [ca] Node only: the PEM
 *   certificate(s) of the CA to trust instead of the system's (e.g. the contents of the `--dev`
 *   server's `ca.pem`). Needs the `ws` package.
 * @property {string} [token] A bearer token (protocol §1.4): sent as `Authorization: Bearer` by
 *   `ws`, or, with a browser's WebSocket (which cannot set headers), as the subprotocol
 *   `jackrabbit.bearer.TOKEN` offered next to `jackrabbit.v1`.
 * @property {boolean} [reconnect] Reconnect with back-off when the connection is lost.
 * @property {(role: Role, epoch: number | null) => void} [onRole] Called whenever the role
 *   changes (a `take` answered, a standby promoted, a handover done).
 */

/**
 * The subset of the WHATWG WebSocket (and of the `ws` package's) that the client uses.
 * @typedef {object} Socket
 * @property {string} binaryType
 * @property {number} bufferedAmount
 * @property {((event: { data: unknown }) => void) | null} onmessage
 * @property {((event: { code: number, reason: string }) => void) | null} onclose
 * @property {((event: unknown) => void) | null} onerror
 * @property {(() => void) | null} onopen
 * @property {(data: Uint8Array) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {() => void} [terminate] `ws` only: drop the connection without a close handshake.
 */

/** @typedef {new (url: string, protocols: string[], options?: object) => Socket} SocketClass */

/**
 * @template T
 * @typedef {{ promise: Promise<T>, resolve: (value: T) => void,
 *   reject: (error: Error) => void, settled: boolean }} Deferred
 */

/** A request was refused: `code` is the protocol's error code (protocol §5), `message` the
 * server's explanation (for people, not to be parsed). */
export class ClientError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'ClientError';
    /** The error code: `not_active`, `no_standby`, `bad_request`... (protocol §5). */
    this.code = code;
  }
}

/**
 * The connection is gone, or could not be made: `code` is `closed` or `refused` (a network,
 * TLS or HTTP failure: a browser does not say which). For a pending `add` this means
 * *unknown*: the message may or may not be stored.
 */
export class ConnectionLost extends ClientError {
  /**
   * @param {'closed' | 'refused'} code
   * @param {string} message
   */
  constructor(code, message) {
    super(code, message);
    this.name = 'ConnectionLost';
  }
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();
const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

/** A message delivered to this consumer (protocol §4.5). Call `ack()` once it is handled. */
export class Message {
  /** @type {Link} */
  #link;

  /**
   * @param {number} seq
   * @param {string} id
   * @param {number} createdAt
   * @param {Uint8Array} data
   * @param {boolean} redelivered
   * @param {Link} link
   */
  constructor(seq, id, createdAt, data, redelivered, link) {
    /** The message's position in its queue, from 1. */
    this.seq = seq;
    /** The message's UUID. */
    this.id = id;
    /** When the server accepted it, Unix time in milliseconds. */
    this.createdAt = createdAt;
    this.data = data;
    /** True when an earlier consumer was sent this message and did not ack it. */
    this.redelivered = redelivered;
    this.#link = link;
  }

  /** The data as UTF-8 text. */
  text() {
    return utf8Decoder.decode(this.data);
  }

  /**
   * Acknowledge this message and every earlier one (cumulative, protocol §3.3). The ack leaves
   * at the end of the current task. Does nothing if the connection it came on is gone: the
   * server delivers the message again.
   */
  ack() {
    this.#link.ack(this.seq);
  }
}

/**
 * What `await client.take()` gives: an async iterable of the delivered messages. A `break` out
 * of a `for await` loop leaves the subscription as it is (iterate it again to go on); the
 * iteration ends when the client closes for good (`close()`, or a loss without `reconnect`).
 * @implements {AsyncIterableIterator<Message>}
 */
export class Subscription {
  /** @type {Client} */
  #client;

  /**
   * @param {Client} client
   * @param {number} prefetch
   */
  constructor(client, prefetch) {
    this.#client = client;
    /** The most messages delivered and not yet acked (protocol §3.2). */
    this.prefetch = prefetch;
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** @returns {Promise<IteratorResult<Message, undefined>>} */
  async next() {
    const client = this.#client;
    for (;;) {
      const message = client._deliveries.shift();
      if (message !== undefined) return { done: false, value: message };
      if (client._ended) return { done: true, value: undefined };
      await new Promise((resolve) => client._readers.push(resolve));
    }
  }

  /**
   * Called by a `break` out of `for await`: the subscription stays.
   * @returns {Promise<IteratorResult<Message, undefined>>}
   */
  async return() {
    return { done: true, value: undefined };
  }
}

/** One WebSocket and the state that dies with it. */
class Link {
  /**
   * @param {Client} client
   * @param {Socket} socket
   */
  constructor(client, socket) {
    this.client = client;
    this.socket = socket;
    this.nextReq = 1;
    /** Adds waiting for their answer, by `req`. @type {Map<number, Deferred<number>>} */
    this.waiting = new Map();
    /** @type {number | null} */
    this.takeReq = null;
    /** @type {number | null} */
    this.handoverReq = null;
    /** @type {Deferred<number> | null} */
    this.handoverAnswer = null;
    /** True from the accepted upgrade until the close starts: requests can be sent. */
    this.usable = false;
    /** The highest seq acked and not yet sent (0: none). */
    this.ackPending = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.ackTimer = null;
    /** @type {number | null} */
    this.closeCode = null;
    this.closeReason = '';
    /** What the socket's `error` event said, when it said anything. */
    this.error = '';
    /** @type {Deferred<void>} */
    this.opened = deferred();
    /** @type {Deferred<void>} */
    this.lost = deferred();
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => {
      this.usable = true;
      settle(this.opened, undefined);
    };
    socket.onmessage = (event) => client._receive(this, event.data);
    socket.onerror = (event) => {
      const error = /** @type {{ message?: unknown }} */ (event ?? {});
      if (!this.error && typeof error.message === 'string') this.error = error.message;
    };
    socket.onclose = (event) => this.closed(event.code, event.reason);
  }

  /**
   * Send a request, after any pending ack; returns its `req`.
   * @param {Record<string, unknown>} fields
   */
  request(fields) {
    const req = this.nextReq++;
    this.flushAck();
    this.socket.send(encoder.encode({ ...fields, req }));
    return req;
  }

  /**
   * @param {Uint8Array} data
   * @param {string | undefined} key
   * @returns {Promise<number>}
   */
  add(data, key) {
    /** @type {Deferred<number>} */
    const answer = deferred();
    this.waiting.set(this.request({ command: 'add', data, key }), answer);
    return answer.promise;
  }

  /** @param {number} seq */
  ack(seq) {
    if (this !== this.client._link || !this.usable) return;
    if (seq > this.ackPending) this.ackPending = seq;
    if (this.ackTimer === null) this.ackTimer = setTimeout(() => this.flushAck(), 0);
  }

  flushAck() {
    if (this.ackTimer !== null) {
      clearTimeout(this.ackTimer);
      this.ackTimer = null;
    }
    const seq = this.ackPending;
    if (seq === 0 || !this.usable) return;
    this.ackPending = 0;
    this.socket.send(encoder.encode({ command: 'ack', seq }));
  }

  /** Start the close handshake (pending acks first). */
  close() {
    if (!this.usable) return;
    this.flushAck();
    this.usable = false;
    this.socket.close(CLOSE_NORMAL);
  }

  /** Give up on a connection that is still being made. */
  abort(/** @type {string} */ why) {
    this.error = why;
    this.socket.close();
  }

  /**
   * The socket is closed (by either side, or broken).
   * @param {number} code
   * @param {string} reason
   */
  closed(code, reason) {
    this.usable = false;
    this.closeCode = code;
    this.closeReason = reason || this.error;
    if (this.ackTimer !== null) clearTimeout(this.ackTimer);
    if (!this.opened.settled) {
      rejectQuietly(
        this.opened,
        new ConnectionLost('refused', this.closeReason || `could not connect (code ${code})`),
      );
    }
    this.fail(new ConnectionLost('closed', 'the connection was lost'));
    settle(this.lost, undefined);
    this.client._lost(this);
  }

  /** Fail every request waiting on this connection. @param {ClientError} error */
  fail(error) {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const answer of waiting) answer.reject(error);
    if (this.handoverAnswer !== null) this.handoverAnswer.reject(error);
  }
}

/** A connection to one queue of a jackrabbit server: make one with `connect()`. */
export class Client {
  /**
   * Connect to `options.queue` at `url` (`wss://HOST:PORT`). Rejects with `ConnectionLost`
   * (code `refused`) if the server cannot be reached, the certificate is not trusted, or the
   * upgrade is refused, and after `CONNECT_TIMEOUT` ms; throws `TypeError` for a URL that is
   * not `wss://` or an invalid queue name.
   * @param {string} url
   * @param {ConnectOptions} [options]
   * @returns {Promise<Client>}
   */
  static async connect(url, options = {}) {
    const client = new Client(url, options);
    await client._open();
    return client;
  }

  /**
   * Set up without connecting: use `Client.connect()` or `connect()`.
   * @param {string} url
   * @param {ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    const { queue = DEFAULT_QUEUE, ca, token, reconnect = false, onRole = null } = options;
    const parsed = new URL(url);
    if (parsed.protocol !== 'wss:' || !parsed.hostname) {
      throw new TypeError(`not a wss:// URL: ${url}`);
    }
    if (!QUEUE_NAME.test(queue)) throw new TypeError(`invalid queue name: ${queue}`);
    this.url = url;
    this.queue = queue;
    this.reconnect = reconnect;
    /** Called as `onRole(role, epoch)` whenever the role changes. */
    this.onRole = onRole;
    /** `active` or `standby` once `take` was answered; null before (and while reconnecting).
     * @type {Role | null} */
    this.role = null;
    /** The queue's epoch (protocol §6.7) as this consumer last heard it; null before.
     * @type {number | null} */
    this.epoch = null;
    /** The upgrade URL: the queue is in the path (protocol §1.3). */
    this._target = `wss://${parsed.host}${queue === DEFAULT_QUEUE ? '/' : `/queues/${queue}`}`;
    this._ca = ca;
    this._token = token;
    /** @type {Link | null} */
    this._link = null;
    /** The connection being made, so that `close()` can abort it. @type {Link | null} */
    this._opening = null;
    /** @type {Message[]} */
    this._deliveries = [];
    /** Iterators waiting for a delivery. @type {Array<(value: unknown) => void>} */
    this._readers = [];
    /** Requests waiting for a (re)connection. @type {Array<(value: unknown) => void>} */
    this._waitingForLink = [];
    /** @type {Subscription | null} */
    this._subscription = null;
    /** The answer to the first `take`, settled by its `subscribed`, across reconnections.
     * @type {Deferred<Subscription> | null} */
    this._taken = null;
    this._ended = false;
    this._closing = false;
    /** Ends the reconnection loop's back-off sleep early (for `close()`).
     * @type {(() => void) | null} */
    this._wake = null;
  }

  /** The WebSocket close code of the last connection once it ended (1001: the server shut
   * down; 1006: it broke), else null. */
  get closeCode() {
    return this._link?.closeCode ?? null;
  }

  /** The reason that came with `closeCode`. */
  get closeReason() {
    return this._link?.closeReason ?? '';
  }

  // -- requests ---------------------------------------------------------------------------

  /**
   * Append `data` (bytes, or a string sent as UTF-8) to the queue; resolves to its seq once
   * it is durable (protocol §3.1). With `key`, a repeat of that key resolves to the first
   * message's seq and stores nothing. Rejects with `ClientError` if the server refuses it,
   * `ConnectionLost` if the connection is lost first.
   * @param {Uint8Array | string} data
   * @param {{ key?: string }} [options]
   * @returns {Promise<number>}
   */
  async add(data, { key } = {}) {
    const bytes = typeof data === 'string' ? utf8.encode(data) : data;
    if (!(bytes instanceof Uint8Array)) {
      throw new TypeError('data must be a Uint8Array or a string');
    }
    if (key !== undefined && typeof key !== 'string') throw new TypeError('key must be a string');
    const link = this._link;
    const ready = link !== null && link.usable && link.socket.bufferedAmount <= HIGH_WATER;
    return (ready ? link : await this._ready()).add(bytes, key);
  }

  /**
   * Join the queue's consumer line (protocol §3.2) and resolve, once the server answered (the
   * `role` is then set), to the subscription to iterate. `prefetch` bounds the messages
   * delivered and not yet acked. A client takes once: calling again gives the same
   * subscription. Rejects with `ClientError` if the server refuses the take.
   * @param {{ prefetch?: number }} [options]
   * @returns {Promise<Subscription>}
   */
  async take({ prefetch = 1000 } = {}) {
    if (this._taken === null) {
      const link = await this._ready();
      if (this._taken === null) {
        const taken = /** @type {Deferred<Subscription>} */ (deferred());
        this._taken = taken;
        this._subscription = new Subscription(this, prefetch);
        link.takeReq = link.request({ command: 'take', prefetch });
        taken.promise.catch(() => {
          if (this._taken === taken) {
            this._taken = null; // refused: a later take may try again
            this._subscription = null;
          }
        });
      }
    }
    return this._taken.promise;
  }

  /**
   * Hand the queue over to the next standby (protocol §3.4) and wait until it is done: this
   * consumer is then a standby; resolves to the new epoch. Rejects with `ClientError`
   * (`no_standby` when nobody waits, `not_active`). The switch happens once every message
   * this consumer holds is acked, or after the server's `--handover-timeout`: keep acking.
   * @returns {Promise<number>}
   */
  async handover() {
    const link = await this._ready();
    if (link.handoverAnswer === null) {
      link.handoverAnswer = deferred();
      link.handoverReq = link.request({ command: 'handover' });
    }
    const answer = link.handoverAnswer;
    try {
      return await answer.promise;
    } finally {
      if (link.handoverAnswer === answer) link.handoverAnswer = null;
    }
  }

  /**
   * Close the connection (code 1000), waiting up to `CLOSE_TIMEOUT` ms for the server's
   * answer. Pending requests fail with `ConnectionLost`; a `take` iteration ends.
   * @returns {Promise<void>}
   */
  async close() {
    this._closing = true;
    this._wakeWaitingForLink();
    this._wake?.();
    this._opening?.abort('the client is closed');
    const link = this._link;
    if (link !== null && !link.lost.settled) {
      link.close();
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      const timeout = new Promise((resolve) => {
        timer = setTimeout(resolve, CLOSE_TIMEOUT);
      });
      await Promise.race([link.lost.promise, timeout]);
      clearTimeout(timer);
      if (!link.lost.settled) {
        link.socket.terminate?.(); // a browser's WebSocket gives up by itself in the end
        link.fail(new ConnectionLost('closed', 'the client is closed'));
      }
    }
    this._end();
  }

  // -- connecting -------------------------------------------------------------------------

  /** Connect and upgrade; on return the new connection is current. */
  async _open() {
    const link = new Link(this, await this._socket());
    this._opening = link;
    const timer = setTimeout(() => link.abort('timed out'), CONNECT_TIMEOUT);
    try {
      await link.opened.promise;
    } finally {
      clearTimeout(timer);
      this._opening = null;
    }
    if (this._closing) {
      link.close();
      throw new ConnectionLost('closed', 'the client is closed');
    }
    this._link = link;
    this._wakeWaitingForLink();
    return link;
  }

  /** A new WebSocket to the queue: see the module's comment for which implementation.
   * @returns {Promise<Socket>} */
  async _socket() {
    const token = this._token;
    const Native = /** @type {SocketClass | undefined} */ (
      /** @type {{ WebSocket?: unknown }} */ (globalThis).WebSocket
    );
    if (this._ca === undefined && Native !== undefined) {
      const protocols = token === undefined ? [] : ['jackrabbit.v1', `jackrabbit.bearer.${token}`];
      return new Native(this._target, protocols);
    }
    /** @type {Record<string, unknown>} */
    const options = {};
    if (this._ca !== undefined) options.ca = this._ca;
    if (token !== undefined) options.headers = { Authorization: `Bearer ${token}` };
    return new (await loadWs())(this._target, [], options);
  }

  /** The current usable connection, after waiting for a reconnection or for the socket's
   * buffer to drain; rejects with `ConnectionLost` once there will be none. */
  async _ready() {
    for (;;) {
      if (this._closing) throw new ConnectionLost('closed', 'the client is closed');
      const link = this._link;
      if (link !== null && link.usable) {
        if (link.socket.bufferedAmount <= HIGH_WATER) return link;
        await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL));
        continue;
      }
      if (!this.reconnect) throw new ConnectionLost('closed', 'the connection is closed');
      await new Promise((resolve) => this._waitingForLink.push(resolve));
    }
  }

  /** `link`'s socket is closed. @param {Link} link */
  _lost(link) {
    if (link !== this._link) return;
    this._setRole(null, null);
    if (this._closing || !this.reconnect) {
      this._end();
      return;
    }
    this._deliveries.length = 0; // their acks cannot reach the server: they come again
    void this._reconnect();
  }

  async _reconnect() {
    let delay = RETRY_FIRST;
    while (!this._closing) {
      try {
        const link = await this._open();
        if (this._subscription !== null) {
          link.takeReq = link.request({ command: 'take', prefetch: this._subscription.prefetch });
        }
        return;
      } catch {
        if (this._closing) return;
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delay);
          this._wake = () => {
            clearTimeout(timer);
            resolve(undefined);
          };
        });
        this._wake = null;
        delay = Math.min(delay * 2, RETRY_MAX);
      }
    }
  }

  /** No more deliveries: end the `take` iteration, fail a take still waiting. */
  _end() {
    this._ended = true;
    this._wakeReaders();
    if (this._taken !== null) {
      rejectQuietly(this._taken, new ConnectionLost('closed', 'the connection is closed'));
    }
  }

  _wakeReaders() {
    const readers = this._readers;
    this._readers = [];
    for (const wake of readers) wake(undefined);
  }

  _wakeWaitingForLink() {
    const waiting = this._waitingForLink;
    this._waitingForLink = [];
    for (const wake of waiting) wake(undefined);
  }

  // -- events -----------------------------------------------------------------------------

  /**
   * One message from the server (protocol §4). Never throws: an unreadable event is reported
   * on the console and ignored, as clients must ignore what they do not know.
   * @param {Link} link
   * @param {unknown} data
   */
  _receive(link, data) {
    if (typeof data === 'string') {
      console.warn('jackrabbit: a text frame from the server, ignored');
      return;
    }
    /** @type {Record<string, any>} */
    let event;
    try {
      event = /** @type {Record<string, any>} */ (
        decoder.decode(/** @type {ArrayBuffer} */ (data))
      );
      if (typeof event !== 'object' || event === null) throw new TypeError('not a map');
    } catch (error) {
      console.warn('jackrabbit: unreadable event from the server:', error);
      return;
    }
    switch (event.event) {
      case 'message':
        if (link === this._link) {
          const { seq, id, created_at: createdAt, data: body, redelivered } = event;
          this._deliveries.push(new Message(seq, id, createdAt, body, redelivered, link));
          this._wakeReaders();
        }
        break;
      case 'added': {
        const answer = link.waiting.get(event.req);
        if (answer !== undefined) {
          link.waiting.delete(event.req);
          answer.resolve(event.seq);
        }
        break;
      }
      case 'subscribed':
        this._setRole(event.role, event.epoch ?? null);
        if (this._taken !== null && this._subscription !== null) {
          settle(this._taken, this._subscription);
        }
        break;
      case 'active':
        this._setRole('active', event.epoch);
        break;
      case 'standby':
        this._setRole('standby', event.epoch);
        if (link.handoverAnswer !== null) link.handoverAnswer.resolve(event.epoch);
        break;
      case 'error':
        this._refused(link, new ClientError(String(event.code), String(event.message)), event.req);
        break;
      default: // an event this client does not know yet: ignored (protocol §4)
    }
  }

  /**
   * Reject the request that `req` names.
   * @param {Link} link
   * @param {ClientError} error
   * @param {unknown} req
   */
  _refused(link, error, req) {
    const answer = typeof req === 'number' ? link.waiting.get(req) : undefined;
    if (answer !== undefined) {
      link.waiting.delete(/** @type {number} */ (req));
      answer.reject(error);
    } else if (
      req !== undefined &&
      req === link.takeReq &&
      this._taken !== null &&
      !this._taken.settled
    ) {
      this._taken.reject(error);
    } else if (req !== undefined && req === link.handoverReq && link.handoverAnswer !== null) {
      link.handoverAnswer.reject(error);
    } else {
      console.warn(`jackrabbit: the server refused a request: ${error.code}: ${error.message}`);
    }
  }

  /**
   * @param {Role | null} role
   * @param {number | null} epoch
   */
  _setRole(role, epoch) {
    const changed = role !== this.role || epoch !== this.epoch;
    this.role = role;
    this.epoch = epoch;
    const callback = this.onRole;
    if (changed && callback !== null && role !== null) {
      try {
        callback(role, epoch);
      } catch (error) {
        console.error('jackrabbit: the onRole callback failed:', error);
      }
    }
  }
}

/**
 * Connect to a queue: `Client.connect(url, options)`.
 * @param {string} url
 * @param {ConnectOptions} [options]
 * @returns {Promise<Client>}
 */
export function connect(url, options) {
  return Client.connect(url, options);
}

/** @type {Promise<SocketClass> | null} */
let wsModule = null;

/** The `ws` package's WebSocket, imported once, on first need. */
function loadWs() {
  wsModule ??= import('ws').then(
    (module) => /** @type {SocketClass} */ (/** @type {unknown} */ (module.default)),
    (error) => {
      wsModule = null;
      throw new TypeError(
        'this runtime has no WebSocket, or the ca option was given: both need the ws ' +
          'package (npm install ws) on Node.js; browsers use their own WebSocket and trust ' +
          `store (${error})`,
      );
    },
  );
  return wsModule;
}

/**
 * @template T
 * @returns {Deferred<T>}
 */
function deferred() {
  /** @type {Deferred<T>} */
  const result = /** @type {any} */ ({ settled: false });
  result.promise = new Promise((resolve, reject) => {
    result.resolve = (value) => {
      result.settled = true;
      resolve(value);
    };
    result.reject = (error) => {
      result.settled = true;
      reject(error);
    };
  });
  return result;
}

/**
 * @template T
 * @param {Deferred<T>} answer
 * @param {T} value
 */
function settle(answer, value) {
  if (!answer.settled) answer.resolve(value);
}

/**
 * Reject a promise that nobody may be awaiting, without an unhandled rejection.
 * @param {Deferred<any>} answer
 * @param {Error} error
 */
function rejectQuietly(answer, error) {
  if (answer.settled) return;
  answer.promise.catch(() => {});
  answer.reject(error);
}
