// The package as a consumer gets it (docs/api.md, "Installing"): `npm pack`, then an offline
// install of the tarball into a scratch project whose PATH has no C/C++ compiler and no make, so
// the addon that loads can only be the prebuilt one. There, plain JavaScript imports a layer, a
// strict TypeScript file using the API compiles and runs, and `npx layers version` works. The
// tarball ships no tests, no hack scripts, no TypeScript sources, and is smaller than it was
// before the package was built this way.
//
// The pack runs in a copy of the sources (node_modules linked in), since its prepack script
// rebuilds dist/, which other test files running beside this one may be loading. Offline: the
// runtime dependencies are packed from the repository's node_modules and installed from those
// tarballs in the same `npm install --offline`, so npm needs no registry metadata.
import test from 'ava';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../lib/package-root.ts';

const run = promisify(execFile);

/** `npm pack` of the tree as it was before this packaging (commit aae8abf), in bytes */
const TARBALL_LIMIT = 312354;

const SOURCES = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'binding.gyp', 'README.md', 'bin', 'lib', 'drivers', 'native', 'hack', 'docs', 'prebuilds'];

/** A directory of symlinks to node, npm and npx and the few tools npm's scripts use: no g++,
 *  c++, cc, gcc or make (those live in /usr/bin beside everything else, so /usr/bin is left out). */
function pathWithoutCompiler(dir: string): string {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  const nodeBin = path.dirname(process.execPath);
  for (const tool of ['node', 'npm', 'npx']) fs.symlinkSync(fs.realpathSync(path.join(nodeBin, tool)), path.join(bin, tool));
  for (const tool of ['sh', 'bash', 'env', 'uname']) fs.symlinkSync(path.join('/usr/bin', tool), path.join(bin, tool));
  return bin;
}

test('packed, installed offline without a compiler: .mjs imports a layer, strict TypeScript compiles and runs, the CLI answers', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-package-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

  // pack a copy of the sources (mtimes kept, so hack/build-prebuilds.sh sees a fresh prebuild)
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  for (const p of SOURCES) if (fs.existsSync(path.join(packageRoot, p))) await run('cp', ['-a', path.join(packageRoot, p), src]);
  fs.symlinkSync(path.join(packageRoot, 'node_modules'), path.join(src, 'node_modules'));
  const packs = path.join(dir, 'packs');
  fs.mkdirSync(packs);
  const packed = await run('npm', ['pack', '--json', '--pack-destination', packs], { cwd: src, maxBuffer: 64 << 20 });
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[\n'))) as Array<{ filename: string; size: number; files: Array<{ path: string }> }>;
  if (!info) throw new Error('npm pack printed no package');
  const tarball = path.join(packs, info.filename);
  t.is(fs.statSync(tarball).size, info.size);
  t.true(info.size < TARBALL_LIMIT, `tarball is ${info.size} bytes, limit ${TARBALL_LIMIT}`);
  const listed = (await run('tar', ['-tzf', tarball])).stdout.trim().split('\n').map((p) => p.replace(/^package\//, ''));
  t.deepEqual(listed.slice().sort(), info.files.map((f) => f.path).sort());
  t.deepEqual(listed.filter((p) => /^(tests|hack)\//.test(p)), []);
  t.deepEqual(listed.filter((p) => p.endsWith('.ts') && !p.endsWith('.d.ts')), []);
  for (const p of ['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/cli/main.js', 'bin/layers.js', 'binding.gyp', 'native/addon.cc', `prebuilds/linux-${process.arch}/layers.glibc.node`]) t.true(listed.includes(p), p);

  // the runtime dependency closure, packed from node_modules for the offline install
  const deps = path.join(dir, 'deps');
  fs.mkdirSync(deps);
  const tree = await run('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: packageRoot });
  const depDirs = tree.stdout.trim().split('\n').slice(1);
  t.true(depDirs.some((d) => d.endsWith('/node-gyp-build')));
  t.false(depDirs.some((d) => /\/(tsx|tar-stream|typescript)$/.test(d)), 'dev tools are not runtime dependencies');
  for (const d of depDirs) await run('npm', ['pack', '--ignore-scripts', '--pack-destination', deps, d], { cwd: dir });

  // the scratch project, its install script allowed so that it runs (and finds the prebuild)
  const app = path.join(dir, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module', allowScripts: { layers: true } }));
  const env = { ...process.env, PATH: pathWithoutCompiler(dir), npm_config_cache: path.join(dir, 'npm-cache'), npm_config_update_notifier: 'false' };
  for (const tool of ['g++', 'c++', 'cc', 'gcc', 'make']) await t.throwsAsync(run('sh', ['-c', `command -v ${tool}`], { env }), undefined, `${tool} hidden`);
  const depTarballs = fs.readdirSync(deps).map((f) => path.join(deps, f));
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', ...depTarballs, tarball], { cwd: app, env });
  const installed = path.join(app, 'node_modules', 'layers');
  t.false(fs.existsSync(path.join(installed, 'build')), 'no source build');

  // a layer from a small tar GNU tar makes
  const tree0 = path.join(dir, 'tree');
  fs.mkdirSync(path.join(tree0, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(tree0, 'etc', 'hello.txt'), 'hello from a consumer\n');
  const tarFile = path.join(dir, 'layer.tar');
  await run('tar', ['--format=posix', '--numeric-owner', '-C', tree0, '-cf', tarFile, 'etc']);
  const tarDigest = 'sha256:' + crypto.createHash('sha256').update(fs.readFileSync(tarFile)).digest('hex');
  const layerFile = async (root: string, id: string): Promise<string> => fs.readFileSync(path.join(root, 'vfs', 'dir', id, 'etc', 'hello.txt'), 'utf8');

  // plain JavaScript
  fs.writeFileSync(
    path.join(app, 'import-layer.mjs'),
    `import { openStore } from 'layers';
const [root, runroot, tar] = process.argv.slice(2);
const store = await openStore({ root, runroot, driver: 'vfs' });
const created = await store.createLayer({ names: ['from-mjs'] }, tar);
const record = await store.layer('from-mjs');
await store.shutdown();
console.log(JSON.stringify({ id: created.id, record }));
`,
  );
  const jsRoot = path.join(dir, 'js-store');
  const js = await run('node', ['import-layer.mjs', jsRoot, path.join(dir, 'js-run'), tarFile], { cwd: app, env });
  const fromJs = JSON.parse(js.stdout) as { id: string; record: Record<string, unknown> };
  t.is(fromJs.record.id, fromJs.id);
  t.deepEqual(fromJs.record.names, ['from-mjs']);
  t.is(fromJs.record.uncompressedDigest, tarDigest);
  t.is(fromJs.record.uncompressedSize, fs.statSync(tarFile).size);
  t.false('diff-digest' in fromJs.record, 'a camelCase view, not the peer record');
  t.is(await layerFile(jsRoot, fromJs.id), 'hello from a consumer\n');

  // strict TypeScript, type-checked against the shipped .d.ts (skipLibCheck off) by the repo's tsc
  fs.writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, exactOptionalPropertyTypes: true,
        noUncheckedIndexedAccess: true, skipLibCheck: false, outDir: 'out', types: ['node'], typeRoots: [path.join(packageRoot, 'node_modules', '@types')],
      },
      files: ['import-layer.ts'],
    }),
  );
  fs.writeFileSync(
    path.join(app, 'import-layer.ts'),
    `import { openStore, isLayersError, type Container, type Image, type Layer, type Store } from 'layers';
const [root, runroot, tar] = process.argv.slice(2);
if (root === undefined || runroot === undefined || tar === undefined) throw new Error('usage: root runroot tar');
const store: Store = await openStore({ root, runroot, driver: 'vfs' });
const created: Layer = await store.createLayer({ names: ['from-ts'] }, tar);
const record: Layer = await store.layer(created.id);
const digest: string | undefined = record.uncompressedDigest;
const image: Image = await store.createImage({ layer: created.id });
const container: Container = await store.createContainer({ image: image.id });
const [first] = await store.containers();
const sameLayer: boolean = first?.layerId === container.layerId && (await store.layer(container.layerId)).parent === image.topLayer;
await store.deleteContainer(container.id);
let missing = '';
try {
  await store.layer('no-such-layer');
} catch (err) {
  if (isLayersError(err)) missing = err.code;
}
await store.shutdown();
console.log(JSON.stringify({ id: created.id, names: record.names, digest, missing, sameLayer }));
`,
  );
  await run(process.execPath, [path.join(packageRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { cwd: app, env });
  const tsRoot = path.join(dir, 'ts-store');
  const ts = await run('node', ['out/import-layer.js', tsRoot, path.join(dir, 'ts-run'), tarFile], { cwd: app, env });
  const fromTs = JSON.parse(ts.stdout) as { id: string; names: string[]; digest: string; missing: string; sameLayer: boolean };
  t.deepEqual(fromTs.names, ['from-ts']);
  t.is(fromTs.digest, tarDigest);
  t.is(fromTs.missing, 'ELAYERUNKNOWN');
  t.true(fromTs.sameLayer);
  t.is(await layerFile(tsRoot, fromTs.id), 'hello from a consumer\n');

  // the CLI, through npx, from compiled JavaScript (no tsx is installed)
  t.false(fs.existsSync(path.join(app, 'node_modules', 'tsx')));
  const version = await run('npx', ['--no-install', 'layers', 'version'], { cwd: app, env });
  t.is(version.stdout, `Version: ${(JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version}\nNode Version: ${process.version}\n`);
  const layers = await run('npx', ['--no-install', 'layers', '--root', jsRoot, '--runroot', path.join(dir, 'js-run'), 'layers', '--json'], { cwd: app, env });
  t.deepEqual((JSON.parse(layers.stdout) as Array<{ id: string }>).map((l) => l.id), [fromJs.id]);
});
