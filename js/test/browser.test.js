// @ts-check
/**
 * The client, unchanged, in a real browser: headless Chromium loads it from a page (with an
 * import map for `@msgpack/msgpack`), trusts the test CA through its NSS database, and talks
 * to a real jackrabbit server: a full round trip and a failover; it offers a token as a
 * subprotocol, and a server started with `--auth` admits it by that token (protocol §11.3).
 * Skipped, with the reason, where Chromium, certutil or playwright-core is missing.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import { launch, missing, staticServer } from '../test-support/browser.js';
import {
  Server,
  WAIT,
  makeCerts,
  removeDir,
  upgradeRecorder,
  within,
} from '../test-support/server.js';

/** @typedef {typeof import('../src/jackrabbit.js')} Module */

const reason = await missing();

describe('in Chromium', { skip: reason ?? false, timeout: 8 * WAIT }, () => {
  /** @type {Awaited<ReturnType<typeof makeCerts>>} */
  let certs;
  /** @type {Server} */
  let server;
  /** @type {Awaited<ReturnType<typeof staticServer>>} */
  let site;
  /** @type {import('playwright-core').Browser} */
  let browser;
  /** @type {import('playwright-core').Page} */
  let page;
  /** What the page printed as errors or warnings, and its uncaught exceptions. */
  const complaints = /** @type {string[]} */ ([]);

  before(async () => {
    certs = await makeCerts();
    server = await Server.start(certs);
    site = await staticServer();
    browser = await launch(certs.dir, certs.ca);
    page = await browser.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error' || message.type() === 'warning') {
        complaints.push(`${message.type()}: ${message.text()}`);
      }
    });
    page.on('pageerror', (error) => complaints.push(`uncaught: ${error.message}`));
    await page.goto(site.url, { timeout: WAIT });
    await page.waitForFunction(() => document.title === 'ready', null, { timeout: WAIT });
  });

  beforeEach(() => {
    complaints.length = 0;
  });

  after(async () => {
    await browser?.close();
    site?.close();
    await server?.stop();
    if (certs !== undefined) await removeDir(certs.dir);
  });

  test('a round trip from a page: add, take, ack', async () => {
    const result = await within(
      page.evaluate(async (url) => {
        const { connect } = /** @type {Module} */ (/** @type {any} */ (window).jackrabbit);
        const producer = await connect(url, { queue: 'page' });
        const seqs = [
          await producer.add('hello from a page'),
          await producer.add(new Uint8Array([0, 255])),
        ];
        const consumer = await connect(url, { queue: 'page' });
        const messages = await consumer.take({ prefetch: 10 });
        /** @type {Array<[number, number[], boolean, number]>} */
        const received = [];
        for await (const message of messages) {
          received.push([message.seq, [...message.data], message.redelivered, message.id.length]);
          message.ack();
          if (received.length === 2) break;
        }
        const role = consumer.role;
        await Promise.all([producer.close(), consumer.close()]);
        return {
          seqs,
          received,
          role,
          text: new TextDecoder().decode(new Uint8Array(received[0][1])),
        };
      }, server.url),
      'the round trip in the page',
    );
    assert.deepEqual(result.seqs, [1, 2]);
    assert.equal(result.role, 'active');
    assert.equal(result.text, 'hello from a page');
    assert.deepEqual(result.received[1], [2, [0, 255], false, 36]);
    assert.deepEqual(complaints, []);
  });

  test('a failover in a page: the standby gets the unacked messages again', async () => {
    const result = await within(
      page.evaluate(async (url) => {
        const { connect } = /** @type {Module} */ (/** @type {any} */ (window).jackrabbit);
        /** @type {Array<[string, number | null]>} */
        const rolesB = [];
        const a = await connect(url, { queue: 'page-failover' });
        const b = await connect(url, {
          queue: 'page-failover',
          onRole: (role, epoch) => rolesB.push([role, epoch]),
        });
        const messagesA = (await a.take())[Symbol.asyncIterator]();
        const messagesB = (await b.take())[Symbol.asyncIterator]();
        const producer = await connect(url, { queue: 'page-failover' });
        for (const text of ['one', 'two', 'three']) await producer.add(text);
        const first = (await messagesA.next()).value;
        await messagesA.next();
        await messagesA.next();
        first?.ack();
        const epochA = a.epoch;
        await a.close();
        const again = [];
        for (let i = 0; i < 2; i++) {
          const message = (await messagesB.next()).value;
          again.push([message?.seq, message?.text(), message?.redelivered]);
        }
        const roleB = b.role;
        await Promise.all([b.close(), producer.close()]);
        return { epochA, rolesB, again, roleB };
      }, server.url),
      'the failover in the page',
    );
    assert.deepEqual(result.again, [
      [2, 'two', true],
      [3, 'three', true],
    ]);
    assert.equal(result.roleB, 'active');
    assert.deepEqual(result.rolesB[0], ['standby', null]);
    const [role, epoch] = result.rolesB[1];
    assert.equal(role, 'active');
    assert.ok(epoch !== null && result.epochA !== null && epoch > result.epochA);
    assert.deepEqual(complaints, []);
  });

  // What exactly a page offers, recorded by a ws server (which selects the first offer,
  // `jackrabbit.v1`, as jackrabbit does); the next test has a real server admit it.
  test('a page offers its token as the jackrabbit.bearer subprotocol', async () => {
    const recorder = await upgradeRecorder(certs);
    try {
      await within(
        page.evaluate(async (url) => {
          const { connect } = /** @type {Module} */ (/** @type {any} */ (window).jackrabbit);
          const client = await connect(url, { queue: 'orders', token: 'page-token' });
          await client.close();
        }, recorder.url),
        'connecting to the recorder',
      );
      assert.deepEqual(await recorder.request(), {
        authorization: undefined,
        protocols: 'jackrabbit.v1, jackrabbit.bearer.page-token',
        path: '/queues/orders',
      });
    } finally {
      recorder.close();
    }
  });

  test('a token-authenticated round trip with a server started with --auth', async () => {
    const token = randomBytes(32).toString('base64url');
    const auth = join(certs.dir, 'auth.toml');
    const digest = createHash('sha256').update(token).digest('hex');
    const grants = '"produce:page-auth", "consume:page-auth"';
    await writeFile(auth, `[[principal]]\nname = "page"\ntoken_sha256 = "${digest}"\nallow = [${grants}]\n`);
    const authed = await Server.start(certs, {
      db: join(certs.dir, 'db-auth'),
      extra: ['--auth', auth],
    });
    try {
      const result = await within(
        page.evaluate(
          async ({ url, token }) => {
            const { connect } = /** @type {Module} */ (/** @type {any} */ (window).jackrabbit);
            let refused = null;
            try {
              await connect(url, { queue: 'page-auth' });
            } catch (error) {
              refused = /** @type {{ code?: string }} */ (error).code;
            }
            const producer = await connect(url, { queue: 'page-auth', token });
            const seq = await producer.add('with a token');
            const consumer = await connect(url, { queue: 'page-auth', token });
            const messages = (await consumer.take())[Symbol.asyncIterator]();
            const message = (await messages.next()).value;
            message?.ack();
            const role = consumer.role;
            await Promise.all([producer.close(), consumer.close()]);
            return { refused, seq, role, text: message?.text() };
          },
          { url: authed.url, token },
        ),
        'the authenticated round trip in the page',
      );
      assert.deepEqual(result, {
        refused: 'refused',
        seq: 1,
        role: 'active',
        text: 'with a token',
      });
      // the one complaint: Chromium's report of the upgrade refused without a token
      assert.equal(complaints.length, 1, complaints.join('\n'));
      assert.match(complaints[0], /HTTP Authentication failed|401/);
    } finally {
      await authed.stop();
    }
  });
});
