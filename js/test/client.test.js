// @ts-check
/**
 * The client on Node against real jackrabbit servers (real TLS on 127.0.0.1, real RocksDB,
 * real processes): round trips, pipelining, idempotency, acks, failover, handover, reconnecting
 * across a server restart, refused requests.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import { Client, ClientError, ConnectionLost, connect } from '../src/jackrabbit.js';
import {
  Server,
  WAIT,
  eventually,
  makeCerts,
  receive,
  removeDir,
  upgradeRecorder,
  within,
} from '../test-support/server.js';

/** @typedef {import('../src/jackrabbit.js').ConnectOptions} ConnectOptions */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TIMEOUT = 4 * WAIT;

/** @type {Awaited<ReturnType<typeof makeCerts>>} */
let certs;
/** @type {Server} */
let server;
/** Clients to close after each suite. @type {Client[]} */
const clients = [];

/**
 * A client of `queue` on the shared server (or `target`), closed at the end.
 * @param {string} queue
 * @param {ConnectOptions} [options]
 * @param {{ url: string, ca: string }} [target]
 */
async function open(queue, options = {}, target = server) {
  const client = await within(connect(target.url, { queue, ca: target.ca, ...options }), 'connect');
  clients.push(client);
  return client;
}

/** A promise of the next role change of a client made with `{ onRole: watcher.onRole }`. */
function roleWatcher() {
  /** @type {Array<[string, number | null]>} */
  const seen = [];
  /** @type {Array<() => void>} */
  let waiting = [];
  return {
    seen,
    /** @param {string} role @param {number | null} epoch */
    onRole(role, epoch) {
      seen.push([role, epoch]);
      for (const wake of waiting.splice(0)) wake();
    },
    /** Wait until the role `role` has been seen `times` times. @param {string} role */
    async until(role, times = 1) {
      const count = () => seen.filter(([seen]) => seen === role).length;
      while (count() < times)
        await within(new Promise((resolve) => waiting.push(() => resolve(null))), `role ${role}`);
      return /** @type {[string, number | null]} */ (
        seen.filter(([seen]) => seen === role)[times - 1]
      );
    },
  };
}

before(async () => {
  certs = await makeCerts();
  server = await Server.start(certs);
});

after(async () => {
  await Promise.all(clients.map((client) => client.close()));
  await server.stop();
  await removeDir(certs.dir);
});

describe('one server', { timeout: TIMEOUT }, () => {
  test('a round trip: add, take, ack', async () => {
    const producer = await open('round-trip');
    const before = Date.now();
    assert.equal(await producer.add('hello'), 1);
    assert.equal(await producer.add(new Uint8Array([0, 1, 255])), 2);
    const consumer = await open('round-trip');
    const messages = await within(consumer.take(), 'take');
    assert.equal(consumer.role, 'active');
    assert.equal(typeof consumer.epoch, 'number');
    const [first, second] = await receive(messages, 2);
    assert.deepEqual([first.seq, first.text(), first.redelivered], [1, 'hello', false]);
    assert.match(first.id, UUID);
    assert.ok(Math.abs(first.createdAt - before) < 60_000, `created_at ${first.createdAt}`);
    assert.ok(second.data instanceof Uint8Array);
    assert.deepEqual([...second.data], [0, 1, 255]);
    second.ack();
  });

  test('adds made together are pipelined and keep their order', async () => {
    const producer = await open('pipelined');
    const seqs = await within(
      Promise.all(Array.from({ length: 500 }, (_, i) => producer.add(`message ${i}`))),
      '500 adds',
    );
    assert.deepEqual(
      seqs,
      Array.from({ length: 500 }, (_, i) => i + 1),
    );
    const consumer = await open('pipelined');
    const received = await receive(await consumer.take(), 500);
    assert.deepEqual(
      received.map((message) => message.text()),
      Array.from({ length: 500 }, (_, i) => `message ${i}`),
    );
  });

  test('an idempotency key stores a message once', async () => {
    const producer = await open('idempotent');
    const first = await producer.add('refund 7', { key: 'refund-7' });
    assert.equal(await producer.add('refund 7 again', { key: 'refund-7' }), first);
    const other = await producer.add('refund 8', { key: 'refund-8' });
    assert.equal(other, first + 1);
    const consumer = await open('idempotent');
    const received = await receive(await consumer.take(), 2);
    assert.deepEqual(
      received.map((message) => message.text()),
      ['refund 7', 'refund 8'],
    );
  });

  test('acks are cumulative and reach the server before close', async () => {
    const producer = await open('acks');
    for (const text of ['a', 'b', 'c']) await producer.add(text);
    const consumer = await open('acks');
    const received = await receive(await consumer.take({ prefetch: 10 }), 3);
    received[2].ack(); // cumulative: 1 to 3, sent (with the next one) as one ack by close()
    received[0].ack(); // already covered: it must not lower the ack
    await consumer.close();
    await producer.add('d');
    const next = await open('acks');
    const [message] = await receive(await next.take(), 1);
    assert.deepEqual([message.seq, message.text(), message.redelivered], [4, 'd', false]);
  });

  test('failover: the standby gets the unacked messages again', async () => {
    const watchA = roleWatcher();
    const watchB = roleWatcher();
    const a = await open('failover', { onRole: watchA.onRole });
    const b = await open('failover', { onRole: watchB.onRole });
    const messagesA = await a.take();
    const messagesB = await b.take();
    assert.deepEqual([a.role, b.role], ['active', 'standby']);
    assert.deepEqual(watchB.seen, [['standby', null]]);
    const producer = await open('failover');
    for (const text of ['one', 'two', 'three']) await producer.add(text);
    const received = await receive(messagesA, 3);
    received[0].ack();
    const epochA = a.epoch;
    await a.close();
    assert.equal(a.role, null);
    const [, epoch] = await watchB.until('active');
    assert.ok(
      epoch !== null && epochA !== null && epoch > epochA,
      `epoch ${epoch} after ${epochA}`,
    );
    const again = await receive(messagesB, 2);
    assert.deepEqual(
      again.map((message) => [message.seq, message.text(), message.redelivered]),
      [
        [2, 'two', true],
        [3, 'three', true],
      ],
    );
    await producer.add('four');
    const [fresh] = await receive(messagesB, 1);
    assert.deepEqual([fresh.seq, fresh.redelivered], [4, false]);
    // The closed client's iteration has ended.
    assert.deepEqual(await within(messagesA.next(), 'end of iteration'), {
      done: true,
      value: undefined,
    });
  });

  test('handover passes the queue to the standby', async () => {
    const watchB = roleWatcher();
    const a = await open('handover');
    const b = await open('handover', { onRole: watchB.onRole });
    const messagesA = await a.take();
    const messagesB = await b.take();
    const producer = await open('handover');
    await producer.add('before');
    const [held] = await receive(messagesA, 1);
    const handedOver = a.handover();
    held.ack(); // the switch waits for this ack
    const epoch = await within(handedOver, 'handover');
    assert.deepEqual([a.role, a.epoch], ['standby', epoch]);
    assert.deepEqual(await watchB.until('active'), ['active', epoch]);
    await producer.add('after');
    const [message] = await receive(messagesB, 1);
    assert.deepEqual([message.seq, message.text(), message.redelivered], [2, 'after', false]);
  });

  test('a refused request rejects with ClientError; the connection carries on', async () => {
    const client = await open('refused');
    await assert.rejects(client.add('x', { key: 'k'.repeat(1025) }), (error) => {
      assert.ok(error instanceof ClientError && !(error instanceof ConnectionLost));
      assert.equal(error.code, 'bad_request');
      assert.ok(error.message.length > 0);
      return true;
    });
    await assert.rejects(client.handover(), { name: 'ClientError', code: 'not_subscribed' });
    await client.take();
    await assert.rejects(client.handover(), { code: 'no_standby' });
    assert.equal(await client.add('still fine'), 1);
  });

  test('a refused take rejects and may be retried', async () => {
    const client = await open('bad-take');
    await assert.rejects(client.take({ prefetch: 0 }), { code: 'bad_request' });
    await within(client.take({ prefetch: 5 }), 'a second take');
    assert.equal(client.role, 'active');
  });

  test('requests after close reject with ConnectionLost', async () => {
    const client = await open('after-close');
    await client.close();
    await assert.rejects(client.add('late'), (error) => {
      assert.ok(error instanceof ConnectionLost && error.code === 'closed');
      return true;
    });
  });

  test('connecting fails clearly: bad name, untrusted certificate, nobody listening', async () => {
    assert.throws(() => new Client(server.url, { queue: '-bad' }), TypeError);
    assert.throws(() => new Client(`https://127.0.0.1:${server.port}`), TypeError);
    await assert.rejects(
      connect(server.url, { queue: 'untrusted', ca: (await makeCaElsewhere()).pem }),
      {
        name: 'ConnectionLost',
        code: 'refused',
      },
    );
    const gone = await Server.start(certs, { db: `${certs.dir}/db-gone` });
    await gone.stop();
    await assert.rejects(within(connect(gone.url, { ca: gone.ca }), 'refused connect'), {
      code: 'refused',
    });
  });

  test('a token goes as a bearer header with ws, and the server accepts it today', async () => {
    const client = await open('token', { token: 'secret-token' });
    assert.equal(await client.add('with a token'), 1);
    const recorder = await upgradeRecorder(certs);
    try {
      const peeking = await open(
        'token',
        { token: 'secret-token' },
        { url: recorder.url, ca: server.ca },
      );
      assert.deepEqual(await recorder.request(), {
        authorization: 'Bearer secret-token',
        protocols: undefined,
        path: '/queues/token',
      });
      await peeking.close();
    } finally {
      recorder.close();
    }
  });
});

describe('a server that goes away', { timeout: TIMEOUT }, () => {
  test('pending adds fail with ConnectionLost; the client reconnects and takes again', async () => {
    let own = await Server.start(certs, { db: `${certs.dir}/db-restart` });
    try {
      const watch = roleWatcher();
      const consumer = await open('restart', { reconnect: true, onRole: watch.onRole }, own);
      const producer = await open('restart', { reconnect: true }, own);
      const messages = await consumer.take();
      assert.deepEqual(await Promise.all([producer.add('before'), producer.add('unread')]), [1, 2]);
      const [unacked] = await receive(messages, 1);
      assert.equal(unacked.text(), 'before');
      // (a look inside: 'unread' has arrived and waits in the iterator's buffer)
      await eventually(() => consumer._deliveries.length === 1, "'unread' to arrive");

      own.pause(); // nothing is answered now
      const pending = assert.rejects(
        within(producer.add('in flight'), 'the pending add'),
        (error) => {
          assert.ok(error instanceof ConnectionLost, String(error));
          assert.equal(error.code, 'closed');
          return true;
        },
      );
      await own.stop('SIGKILL');
      await pending;
      await eventually(() => consumer.role === null, 'the consumer to see the loss');
      unacked.ack(); // its connection is gone: a no-op

      own = await own.restart();
      // An add made while reconnecting waits for the new connection.
      const seq = await within(producer.add('after'), 'add after restart', 2 * WAIT);
      assert.ok(seq >= 3, `seq ${seq}`);
      await watch.until('active', 2);
      // At-least-once: what was not acked before the crash comes again, from the new
      // connection ('unread', buffered from the old one, was dropped: its ack could not count).
      const again = await receive(messages, 2);
      assert.deepEqual(
        again.map((message) => [message.seq, message.text()]),
        [
          [1, 'before'],
          [2, 'unread'],
        ],
      );
      again[1].ack();
      await Promise.all([consumer.close(), producer.close()]);
    } finally {
      await own.stop();
    }
  });

  test('without reconnect the iteration ends and requests reject', async () => {
    const own = await Server.start(certs, { db: `${certs.dir}/db-no-reconnect` });
    try {
      const client = await open('plain', {}, own);
      const messages = await client.take();
      await own.stop(); // SIGTERM: the server closes with 1001
      assert.deepEqual(await within(messages.next(), 'end of iteration'), {
        done: true,
        value: undefined,
      });
      assert.equal(client.closeCode, 1001);
      await assert.rejects(client.add('nobody there'), { name: 'ConnectionLost' });
    } finally {
      await own.stop();
    }
  });
});

/** A CA that did not sign the server's certificate. */
async function makeCaElsewhere() {
  const other = await makeCerts();
  const pem = await readFile(other.ca, 'utf8');
  await removeDir(other.dir);
  return { pem };
}
