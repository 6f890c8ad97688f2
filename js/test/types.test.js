// @ts-check
/**
 * The types: `tsc` checks the client's JSDoc types, the tests, and a TypeScript program using
 * the client (test/consumer.ts) in strict mode; and the declarations a package would ship
 * (`npm pack` runs the same build) come out of the JSDoc.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const JS = fileURLToPath(new URL('../', import.meta.url));
const TSC = join(JS, 'node_modules', 'typescript', 'bin', 'tsc');
const BOUND = 120_000;

/**
 * Run tsc with `args` in js/; resolves to its exit status and output.
 * @param {string[]} args
 * @returns {Promise<{ status: number, output: string }>}
 */
function tsc(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [TSC, ...args], { cwd: JS, timeout: BOUND }, (error, out, err) => {
      resolve({ status: error === null ? 0 : Number(error.code ?? 1), output: out + err });
    });
  });
}

test('tsc --noEmit finds no type error', { timeout: BOUND }, async () => {
  const { status, output } = await tsc(['-p', 'tsconfig.json']);
  assert.equal(status, 0, output);
});

test('the declarations come out of the JSDoc', { timeout: BOUND }, async () => {
  const out = await mkdtemp(join(tmpdir(), 'jackrabbit-types-'));
  try {
    const { status, output } = await tsc(['-p', 'tsconfig.build.json', '--outDir', out]);
    assert.equal(status, 0, output);
    const declarations = await readFile(join(out, 'jackrabbit.d.ts'), 'utf8');
    assert.match(
      declarations,
      /add\(data: Uint8Array \| string, \{ key \}\?: \{\s*key\?: string;?\s*\}\): Promise<number>;/,
    );
    assert.match(
      declarations,
      /export function connect\(url: string, options\?: ConnectOptions\): Promise<Client>;/,
    );
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
