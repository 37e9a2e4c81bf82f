// storage.conf (lib/config.ts, docs/sharing.md "storage.conf"): our reading equals what the
// peer binary (Debian containers-storage 1.43) uses, shown by its `--debug status` (the options
// its main() built) and `status` (the store it opened). Every peer run, and every read of ours
// that must see the same /etc and /usr/share, happens in a private mount namespace of its own
// (unshare -m), where /etc is overlaid, /usr/share/containers replaced and /var/lib/containers,
// /run/containers hidden behind temp dirs, so nothing outside it is touched and its mounts
// (the overlay driver mounts its home) vanish with it.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseStorageConf, resolveStoreOptions, type StoreOptions } from '../lib/config.ts';
import { isLayersError } from '../lib/errors.ts';
import { tempDir } from './fixtures/fs.ts';

const repo = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const CONFIG_TS = path.join(repo, 'lib', 'config.ts');
const PEER = '/usr/bin/containers-storage';

interface PeerView {
  /** from --debug: the options main() built (before GetStore) */
  debug: { root: string; runRoot: string; driver: string; options: string[] };
  /** from status: the store opened; undefined when the peer refused to open it */
  status?: { root: string; runRoot: string; driver: string; options: string[] };
  output: string;
}

function parseLines(lines: string[], prefix: (k: string) => string) {
  const get = (k: string) => {
    const l = lines.find((s) => s.startsWith(prefix(k)));
    return l === undefined ? undefined : l.slice(prefix(k).length).replace(/"$/, '');
  };
  const root = get('Root');
  if (root === undefined) return undefined;
  const opts = get('Driver Options')!.replace(/^\[|\]$/g, '');
  return { root, runRoot: get('Run Root')!, driver: get('Driver Name')!, options: opts === '' ? [] : opts.split(' ') };
}

interface Scene {
  /** contents of /etc/containers/storage.conf in the namespace; undefined: none */
  etc?: string;
  /** contents of /usr/share/containers/storage.conf; undefined: none; 'host': the installed one */
  usrShare?: string | 'host';
  env?: Record<string, string>;
}

/**
 * In a fresh private mount namespace set up as `scene` says: the peer's `--debug status` with
 * peerArgs before the command, then what `js` (an expression over `m`, lib/config.ts) evaluates
 * to in our code, as JSON.
 */
function inNamespace(t: ExecutionContext, scene: Scene, peerArgs: string[], js: string): { peer: PeerView; ours: unknown } {
  const dir = tempDir(t, 'layers-conf-');
  const sh = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const setup: string[] = ['set -e'];
  for (const d of ['upper', 'work', 'usrshare', 'varlib', 'run']) fs.mkdirSync(path.join(dir, d));
  if (scene.etc !== undefined) {
    fs.mkdirSync(path.join(dir, 'upper', 'containers'));
    fs.writeFileSync(path.join(dir, 'upper', 'containers', 'storage.conf'), scene.etc);
  }
  // /etc without any containers/storage.conf of the host's: an overlay whose upper layer holds ours
  setup.push(`mount -t overlay overlay -o lowerdir=/etc,upperdir=${dir}/upper,workdir=${dir}/work /etc`);
  setup.push(`if [ -e /etc/containers/storage.conf ] && [ ! -e ${dir}/upper/containers/storage.conf ]; then rm /etc/containers/storage.conf; fi`);
  if (scene.usrShare === 'host') {
    fs.copyFileSync('/usr/share/containers/storage.conf', path.join(dir, 'usrshare', 'storage.conf'));
  } else if (scene.usrShare !== undefined) {
    fs.writeFileSync(path.join(dir, 'usrshare', 'storage.conf'), scene.usrShare);
  }
  setup.push(`mkdir -p /usr/share/containers && mount --bind ${dir}/usrshare /usr/share/containers`);
  // the default roots: never the host's
  setup.push(`mkdir -p /var/lib/containers /run/containers`);
  setup.push(`mount --bind ${dir}/varlib /var/lib/containers && mount --bind ${dir}/run /run/containers`);
  const ours = `const m = await import(${JSON.stringify(CONFIG_TS)}); let r; try { r = ${js}; } catch (e) { r = { error: e.code, message: e.message }; } process.stdout.write(JSON.stringify(r));`;
  const script = [
    ...setup,
    'set +e',
    `${PEER} --debug ${peerArgs.map(sh).join(' ')} status 2>&1`,
    'echo "=== ours"',
    `${sh(process.execPath)} --import tsx --input-type=module -e ${sh(ours)}`,
  ].join('\n');
  const run = spawnSync('unshare', ['-m', '--propagation', 'private', 'bash', '-c', script], {
    cwd: repo,
    encoding: 'utf8',
    env: sceneEnv(scene.env ?? {}),
  });
  const [peerOut = '', oursOut = ''] = run.stdout.split('=== ours\n');
  const lines = peerOut.split('\n');
  const debug = parseLines(
    lines.map((l) => l.replace(/^time="[^"]*" level=debug msg="/, 'DEBUG ')),
    (k) => `DEBUG ${k}: `,
  );
  if (!debug) throw new Error(`the peer printed no debug lines:\n${run.stdout}\n${run.stderr}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(oursOut);
  } catch {
    throw new Error(`our side printed no JSON:\n${run.stdout}\n${run.stderr}`);
  }
  return { peer: { debug, status: parseLines(lines, (k) => `${k}: `), output: peerOut }, ours: parsed };
}

/** This process's env without the peer's variables, plus the scene's. */
function sceneEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['CONTAINERS_STORAGE_CONF', 'STORAGE_DRIVER', 'STORAGE_OPTS', 'XDG_CONFIG_HOME']) delete env[k];
  return { ...env, ...extra };
}

const OURS_DEFAULT = 'm.defaultStoreOptions()';
const oursResolve = (flags: object) => `m.resolveStoreOptions(${JSON.stringify(flags)})`;

function expectSame(t: ExecutionContext, peer: PeerView, ours: StoreOptions, opened = true) {
  t.deepEqual(
    { root: ours.graphroot, runRoot: ours.runroot, driver: ours.driver, options: ours.driverOptions },
    peer.debug,
    `the options the peer built:\n${peer.output}`,
  );
  if (opened) {
    t.truthy(peer.status, `the peer opened the store:\n${peer.output}`);
    t.deepEqual({ root: ours.graphroot, runRoot: ours.runroot, options: ours.driverOptions }, { root: peer.status!.root, runRoot: peer.status!.runRoot, options: peer.status!.options });
    if (ours.driver) t.is(peer.status!.driver, ours.driver);
  }
}

function overlayConf(dir: string): string {
  fs.mkdirSync(path.join(dir, 'ais1'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'ais2'), { recursive: true });
  return `
# a comment
[storage]
driver = "overlay"
graphroot = "${dir}/graph"
runroot = "${dir}/run"

[storage.options]
additionalimagestores = [
  "${dir}/ais1",
  "${dir}/ais2",
]
skip_mount_home = "true"
mountopt = "nosuid"
pull_options = {enable_partial_images = "false", use_hard_links = "false"}

[storage.options.overlay]
mountopt = "nodev"
ignore_chown_errors = "false"

[storage.options.vfs]
ignore_chown_errors = "true"

[storage.options.thinpool]
`;
}

test('CONTAINERS_STORAGE_CONF: driver, roots, additional image stores and per-driver tables as the peer reads them', (t) => {
  const dir = tempDir(t);
  const conf = path.join(dir, 'storage.conf');
  fs.writeFileSync(conf, overlayConf(dir));
  const { peer, ours } = inNamespace(t, { env: { CONTAINERS_STORAGE_CONF: conf } }, [], OURS_DEFAULT);
  expectSame(t, peer, ours as StoreOptions);
  t.deepEqual((ours as StoreOptions).driverOptions, [
    `overlay.imagestore=${dir}/ais1`,
    `overlay.imagestore=${dir}/ais2`,
    'overlay.skip_mount_home=true',
    'overlay.mountopt=nosuid',
    'overlay.ignore_chown_errors=false',
    'overlay.mountopt=nodev',
    'overlay.skip_mount_home=true',
  ]);
  t.is((ours as { file: string }).file, conf);
});

test('STORAGE_DRIVER replaces the file\'s driver and STORAGE_OPTS every option it gave', (t) => {
  const dir = tempDir(t);
  const conf = path.join(dir, 'storage.conf');
  fs.writeFileSync(conf, overlayConf(dir));
  const env = { CONTAINERS_STORAGE_CONF: conf, STORAGE_DRIVER: 'vfs', STORAGE_OPTS: 'vfs.ignore_chown_errors=true' };
  const { peer, ours } = inNamespace(t, { env }, [], OURS_DEFAULT);
  expectSame(t, peer, ours as StoreOptions);
  t.is((ours as StoreOptions).driver, 'vfs');
  t.deepEqual((ours as StoreOptions).driverOptions, ['vfs.ignore_chown_errors=true']);

  // without STORAGE_OPTS: the generic options carry the env's driver name (the peer refuses
  // vfs.skip_mount_home when opening, but its main() built these)
  const second = inNamespace(t, { env: { CONTAINERS_STORAGE_CONF: conf, STORAGE_DRIVER: 'vfs' } }, [], OURS_DEFAULT);
  expectSame(t, second.peer, second.ours as StoreOptions, false);
  t.true((second.ours as StoreOptions).driverOptions.includes('vfs.skip_mount_home=true'));
});

test('with no env: the installed /usr/share/containers/storage.conf, as the peer reads it', (t) => {
  const { peer, ours } = inNamespace(t, { usrShare: 'host' }, [], OURS_DEFAULT);
  expectSame(t, peer, ours as StoreOptions, false);
  t.is((ours as { file: string }).file, '/usr/share/containers/storage.conf');
});

test('/etc and /usr/share both there: the peer (1.43) takes /usr/share; /etc alone: /etc', (t) => {
  const dir = tempDir(t);
  const conf = (name: string) => `[storage]\ndriver = "vfs"\ngraphroot = "${dir}/${name}-graph"\nrunroot = "${dir}/${name}-run"\n`;
  const both = inNamespace(t, { etc: conf('etc'), usrShare: conf('usr') }, [], OURS_DEFAULT);
  expectSame(t, both.peer, both.ours as StoreOptions);
  t.is((both.ours as StoreOptions).graphroot, `${dir}/usr-graph`);

  const etcOnly = inNamespace(t, { etc: conf('etc') }, [], OURS_DEFAULT);
  expectSame(t, etcOnly.peer, etcOnly.ours as StoreOptions);
  t.is((etcOnly.ours as StoreOptions).graphroot, `${dir}/etc-graph`);

  // flags: --graph alone takes the run root from /etc (the peer's first read), not from /usr/share,
  // and no driver or option from either file
  const flagged = inNamespace(t, { etc: conf('etc'), usrShare: conf('usr') }, ['--graph', `${dir}/flag-graph`], oursResolve({ graphroot: `${dir}/flag-graph` }));
  const o = flagged.ours as StoreOptions;
  t.deepEqual({ root: o.graphroot, runRoot: o.runroot, options: o.driverOptions }, { root: flagged.peer.status!.root, runRoot: flagged.peer.status!.runRoot, options: flagged.peer.status!.options });
  t.is(o.runroot, `${dir}/etc-run`);
  t.is(o.driver, '', 'no driver: the peer probes');

  // a driver flag with no root at all is the peer's error
  const noRoot = inNamespace(t, { etc: conf('etc') }, ['--storage-driver', 'vfs'], oursResolve({ driver: 'vfs' }));
  t.regex(noRoot.peer.output, /no storage runroot or graphroot specified/);
  t.like(noRoot.ours, { error: 'EUSAGE' });
});

test('parse: overlay2 is overlay, numeric force_mask, STORAGE_OPTS empty, and bad files are EUSAGE', (t) => {
  const text = '[storage]\ndriver = "overlay2"\n[storage.options]\nadditionalimagestores = ["/a"]\nforce_mask = 0o700\nmount_program = "/bin/fuse-overlayfs"\n';
  const c = parseStorageConf(text, 'x.conf', {});
  t.is(c.driver, 'overlay');
  // generic options keep the name as written, the per-driver ones the normalized one (as in the peer)
  t.deepEqual(c.driverOptions, [
    'overlay2.imagestore=/a',
    'overlay2.mount_program=/bin/fuse-overlayfs',
    'overlay2.force_mask=700',
    'overlay.mount_program=/bin/fuse-overlayfs',
    'overlay.force_mask=-rwx------',
  ]);
  t.deepEqual(parseStorageConf(text, 'x.conf', { STORAGE_OPTS: '' }).driverOptions, []);
  t.deepEqual(parseStorageConf(text, 'x.conf', { STORAGE_OPTS: 'a=1,b=2' }).driverOptions, ['a=1', 'b=2']);
  t.is(parseStorageConf('', 'empty.conf', {}).driver, '');
  for (const bad of ['[storage\n', '[storage]\ndriver = 3\n', '[storage.options]\nadditionalimagestores = "x"\n']) {
    const err = t.throws(() => parseStorageConf(bad, 'bad.conf', {}));
    t.true(isLayersError(err, 'EUSAGE'), String(err));
    t.regex(err!.message, /^bad\.conf: /);
  }
  t.throws(() => resolveStoreOptions({ driver: 'vfs' }, {}), { message: /no storage runroot or graphroot/ });
});
