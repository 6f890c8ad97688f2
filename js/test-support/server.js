// @ts-check
/**
 * Real jackrabbit servers for the tests: `python -m jackrabbit_asyncio` subprocesses on
 * 127.0.0.1 with certificates made by trustme (the repository's `tests/support.py`), and
 * bounded waits. This folder is not under `test/` because `node --test test/` runs every file
 * there as a test file.
 *
 * The Python that runs them is `$JACKRABBIT_PYTHON` (the pytest wrapper sets it to its own
 * interpreter), else `python3`; it needs the repository's dependencies installed.
 */
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { WebSocketServer } from 'ws';

/** The repository's root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PYTHON = process.env.JACKRABBIT_PYTHON ?? 'python3';
/** Generous bound, in milliseconds, for anything a test waits for (the machine may be busy). */
export const WAIT = 15_000;
const HOST = '127.0.0.1';
const ENV = { ...process.env, PYTHONPATH: ROOT, PYTHONUNBUFFERED: '1' };

/** Every server still running, killed if the test process exits early.
 * @type {Set<import('node:child_process').ChildProcess>} */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * `promise`, or a rejection naming `what` after `ms` milliseconds.
 * @template T
 * @param {Promise<T>} promise
 * @param {string} what
 * @param {number} [ms]
 * @returns {Promise<T>}
 */
export async function within(promise, what, ms = WAIT) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Wait until `predicate()` holds, looking every 10 ms, for at most `WAIT`.
 * @param {() => boolean} predicate
 * @param {string} what
 */
export async function eventually(predicate, what) {
  const deadline = Date.now() + WAIT;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * The next `count` messages of a subscription, within `WAIT`.
 * @param {AsyncIterator<import('../src/jackrabbit.js').Message>} messages
 * @param {number} count
 */
export async function receive(messages, count) {
  const received = [];
  while (received.length < count) {
    /** @type {IteratorResult<import('../src/jackrabbit.js').Message>} */
    const next = await within(messages.next(), `message ${received.length + 1} of ${count}`);
    if (next.done) throw new Error(`the subscription ended after ${received.length} messages`);
    received.push(next.value);
  }
  return received;
}

/**
 * A CA and a server certificate for 127.0.0.1/localhost in a new temporary folder.
 * @returns {Promise<{ dir: string, ca: string, chain: string, key: string }>}
 */
export async function makeCerts() {
  const dir = await mkdtemp(join(tmpdir(), 'jackrabbit-js-'));
  const script =
    'import pathlib, sys\n' +
    'from tests.support import write_certs\n' +
    'write_certs(pathlib.Path(sys.argv[1]))\n';
  await within(
    new Promise((resolve, reject) => {
      execFile(PYTHON, ['-c', script, dir], { env: ENV, cwd: ROOT }, (error, _out, err) =>
        error ? reject(new Error(`making certificates failed: ${err || error}`)) : resolve(null),
      );
    }),
    'trustme certificates',
  );
  return { dir, ca: join(dir, 'ca.pem'), chain: join(dir, 'chain.pem'), key: join(dir, 'key.pem') };
}

/** One `python -m jackrabbit_asyncio` process, its database and certificates kept in `dir`. */
export class Server {
  /**
   * Start a server (on `port`, 0 for a free one, with `extra` flags) and wait for its ready
   * line.
   * @param {{ dir: string, ca: string, chain: string, key: string }} certs
   * @param {{ port?: number, db?: string, extra?: string[] }} [options]
   */
  static async start(certs, { port = 0, db = join(certs.dir, 'db'), extra = [] } = {}) {
    const args = ['-m', 'jackrabbit_asyncio', '--host', HOST, '--port', String(port), '--db', db];
    args.push('--chain-cert', certs.chain, '--private-key', certs.key, '--fsync', 'never');
    args.push(...extra);
    const child = spawn(PYTHON, args, {
      env: ENV,
      cwd: certs.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const lines = createInterface({
      input: /** @type {import('node:stream').Readable} */ (child.stdout),
    });
    const ready = new Promise((resolve, reject) => {
      lines.once('line', resolve);
      exited.then((code) => reject(new Error(`the server exited (${code}): ${stderr}`)));
    });
    let line;
    try {
      line = /** @type {string} */ (await within(ready, 'the ready line'));
    } catch (error) {
      child.kill('SIGKILL');
      throw new Error(`${/** @type {Error} */ (error).message}; stderr: ${stderr}`);
    }
    const match = /^jackrabbit listening on wss:\/\/(.+):(\d+)$/.exec(line);
    if (match === null) throw new Error(`unexpected ready line: ${line}`);
    return new Server(child, exited, Number(match[2]), db, certs, await readFile(certs.ca, 'utf8'));
  }

  /**
   * @param {import('node:child_process').ChildProcess} child
   * @param {Promise<unknown>} exited
   * @param {number} port
   * @param {string} db
   * @param {{ dir: string, ca: string, chain: string, key: string }} certs
   * @param {string} ca the CA's PEM text
   */
  constructor(child, exited, port, db, certs, ca) {
    this.child = child;
    this.exited = exited;
    this.port = port;
    this.db = db;
    this.certs = certs;
    this.ca = ca;
    this.url = `wss://${HOST}:${port}`;
  }

  /** Send `signal` and wait for the process to end. @param {NodeJS.Signals} [signal] */
  async stop(signal = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    try {
      await within(this.exited, `the server to exit on ${signal}`);
    } finally {
      this.child.kill('SIGKILL'); // a no-op once it is gone
      running.delete(this.child);
    }
  }

  /** Freeze the process (SIGSTOP): connections stay open and nothing is answered. */
  pause() {
    this.child.kill('SIGSTOP');
  }

  /** A new server on the same port and database (after `stop`). */
  restart() {
    return Server.start(this.certs, { port: this.port, db: this.db });
  }
}

/** Remove a folder made by `makeCerts`. @param {string} dir */
export function removeDir(dir) {
  return rm(dir, { recursive: true, force: true });
}

/**
 * A `ws` server over TLS (with the test certificate) that records the first upgrade request
 * it accepts: to see what a client offers (headers, subprotocols, path).
 * @param {{ chain: string, key: string }} certs
 */
export async function upgradeRecorder(certs) {
  const https = createServer({ cert: await readFile(certs.chain), key: await readFile(certs.key) });
  const wss = new WebSocketServer({ server: https });
  /** @type {Promise<{ authorization?: string, protocols?: string, path?: string }>} */
  const request = new Promise((resolve) => {
    wss.once('connection', (_socket, { headers, url }) => {
      resolve({
        authorization: headers.authorization,
        protocols: headers['sec-websocket-protocol'],
        path: url,
      });
    });
  });
  await new Promise((resolve) => https.listen(0, HOST, () => resolve(null)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (https.address());
  return {
    url: `wss://${HOST}:${port}`,
    /** The recorded request, within `WAIT`. */
    request: () => within(request, 'an upgrade request'),
    close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      https.close();
    },
  };
}
