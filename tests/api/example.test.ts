// docs/api.md's complete example, examples/runtime.mjs, run exactly as written: its
// `import from 'layers'` resolved to this checkout's sources (layers-alias.mjs).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../../lib/index.ts';
import { tempDir } from '../fixtures/fs.ts';
import { gnuTar, makeTree, sha256File } from '../fixtures/store.ts';

const repo = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

test('the example of docs/api.md pulls, maps, mounts, diffs and cleans up', async (t) => {
  const dir = tempDir(t);
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  const blob = gnuTar(tree, path.join(dir, 'layer.tar.gz'), true);
  const tar = path.join(dir, 'layer.tar');
  execFileSync('sh', ['-c', `gzip -dc < '${blob}' > '${tar}'`]);
  const [root, runroot, outTar] = [path.join(dir, 'root'), path.join(dir, 'run'), path.join(dir, 'out.tar')];
  // the docs show this file: it must be the one that runs
  t.true(fs.readFileSync(path.join(repo, 'docs', 'api.md'), 'utf8').includes(fs.readFileSync(path.join(repo, 'examples', 'runtime.mjs'), 'utf8')));

  const run = (digest: string) =>
    execFileSync(process.execPath, ['--import', 'tsx', '--import', './tests/api/layers-alias.mjs', 'examples/runtime.mjs', root, runroot, blob, digest, outTar], {
      cwd: repo,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  const result = JSON.parse(run(await sha256File(blob)));
  t.is(result.diffDigest, await sha256File(tar));
  t.is(result.rootOwner, 100000);
  // the container's change, in container ids
  const listing = execFileSync('tar', ['--numeric-owner', '-tvf', outTar], { encoding: 'utf8' });
  t.regex(listing, /-rw-r--r-- 1000\/1000 +19 .* hello\n/);
  t.is(listing.trim().split('\n').length, 1);
  const store = await openStore({ root, runroot, driver: 'vfs' });
  t.deepEqual(await store.layers(), []);
  t.deepEqual(await store.images(), []);
  t.deepEqual(await store.containers(), []);
  await store.close();

  // a blob that is not the one the manifest named: no layer
  const err = t.throws(() => run('sha256:' + '1'.repeat(64)));
  t.regex(String((err as { stderr?: string }).stderr), /expected sha256:1{64}/);
  const again = await openStore({ root, runroot, driver: 'vfs' });
  t.deepEqual(await again.layers(), []);
  await again.close();
});
