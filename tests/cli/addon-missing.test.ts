// The addon loads on first use (lib/native.ts): a copy of the package without build/ still
// answers --help and version, and a command that needs the addon fails with one line saying how
// to build it. The copy holds the sources, bin/ and package.json, with node_modules linked in, as
// an installed package would (no hack/, so the advice is npm's).
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../lib/package-root.ts';

const run = promisify(execFile);

async function layers(pkg: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [path.join(pkg, 'bin', 'layers.js'), ...args]);
    return { code: 0, ...r };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('without build/: --help and version work; a command needing the addon says how to build it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-noaddon-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const pkg = path.join(dir, 'pkg');
  fs.mkdirSync(pkg);
  for (const p of ['lib', 'drivers', 'bin', 'package.json']) fs.cpSync(path.join(packageRoot, p), path.join(pkg, p), { recursive: true });
  fs.symlinkSync(path.join(packageRoot, 'node_modules'), path.join(pkg, 'node_modules'));
  t.false(fs.existsSync(path.join(pkg, 'build')));

  const help = await layers(pkg, ['--help']);
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /^Usage: layers /);
  const version = await layers(pkg, ['version']);
  t.is(version.code, 0, version.stderr);
  t.regex(version.stdout, /^Version: /m);

  const root = path.join(dir, 'store');
  const create = await layers(pkg, ['--root', root, '--runroot', path.join(dir, 'run'), 'create-layer']);
  t.is(create.code, 1);
  t.is(create.stdout, '');
  t.regex(create.stderr, /^layers: create-layer: the native addon is not built for linux-x64 \(looked for .*\/build\/\{Release,Debug\}\/\*\.node and .*\/prebuilds\/linux-x64\/\*\.node\): build it with 'npm rebuild layers' in the project that installed it, its install script allowed \(docs\/api\.md, "Installing"\) \(needs python3, make and g\+\+\)\n$/);
  t.is(create.stderr.split('\n').length, 2, 'one line');
});
