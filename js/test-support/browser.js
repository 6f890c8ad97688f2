// @ts-check
/**
 * Headless Chromium for the tests: Debian's `chromium` (a browser download is impossible
 * here) driven by `playwright-core`, trusting the test CA the proper way (an NSS database
 * under a throw-away HOME, no `--ignore-certificate-errors`), and a tiny static server that
 * serves a page loading the client module unchanged, with an import map for its one
 * dependency.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { delimiter, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

import { within } from './server.js';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const JS = fileURLToPath(new URL('../', import.meta.url));
/** Flags Chromium needs here: no sandbox as root, and no background traffic to the closed
 * network (whose refusals would otherwise show up, many at a time). */
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Why the browser test cannot run here, or null when it can. */
export async function missing() {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  if (!onPath('certutil')) return 'no certutil (apt-get install libnss3-tools)';
  try {
    await import('playwright-core');
  } catch {
    return 'playwright-core is not installed (npm ci --prefix js)';
  }
  return null;
}

/**
 * Chromium trusting the CA in `caFile`, with its own throw-away HOME under `dir`.
 * @param {string} dir
 * @param {string} caFile
 */
export async function launch(dir, caFile) {
  const home = await mkdtemp(join(dir, 'home-'));
  const nssdb = join(home, '.pki', 'nssdb');
  await mkdir(nssdb, { recursive: true });
  await run('certutil', ['-N', '-d', `sql:${nssdb}`, '--empty-password']);
  const trust = ['-n', 'jackrabbit-test-ca', '-t', 'C,,', '-i', caFile];
  await run('certutil', ['-A', '-d', `sql:${nssdb}`, ...trust]);
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: FLAGS,
    env: { ...process.env, HOME: home },
    timeout: 30_000,
  });
}

/** The page the tests load: it imports the client and puts it on `window.jackrabbit`. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>jackrabbit client test</title>
<link rel="icon" href="data:,">
<script type="importmap">{"imports": {"@msgpack/msgpack": "/msgpack/index.mjs"}}</script>
<script type="module">
  import * as jackrabbit from '/src/jackrabbit.js';
  window.jackrabbit = jackrabbit;
  document.title = 'ready';
</script>
`;

/** Folders the static server serves, by URL prefix. */
const FOLDERS = {
  '/src/': join(JS, 'src'),
  '/msgpack/': join(JS, 'node_modules', '@msgpack', 'msgpack', 'dist.esm'),
};

/** A static HTTP server on 127.0.0.1 for the page, the client and its MessagePack module. */
export async function staticServer() {
  const server = createServer(async (request, response) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    if (path === '/') {
      response.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      return;
    }
    for (const [prefix, folder] of Object.entries(FOLDERS)) {
      const file = normalize(join(folder, path.slice(prefix.length)));
      if (path.startsWith(prefix) && file.startsWith(folder) && /\.m?js$/.test(file)) {
        try {
          const body = await readFile(file);
          response.writeHead(200, { 'content-type': 'text/javascript' }).end(body);
        } catch {
          response.writeHead(404).end();
        }
        return;
      }
    }
    response.writeHead(404).end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(null)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  return { url: `http://127.0.0.1:${port}/`, close: () => server.close() };
}

/**
 * Run a program to completion, within a bound; reject with its stderr if it fails.
 * @param {string} program
 * @param {string[]} args
 */
function run(program, args) {
  return within(
    new Promise((resolve, reject) => {
      execFile(program, args, (error, _out, err) =>
        error
          ? reject(new Error(`${program} ${args.join(' ')} failed: ${err || error}`))
          : resolve(null),
      );
    }),
    `${program} ${args[0]}`,
  );
}

/** Whether `program` is in a folder of `$PATH`. @param {string} program */
function onPath(program) {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .some((folder) => existsSync(join(folder, program)));
}
