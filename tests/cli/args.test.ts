// The command line as pure functions, no store: parseArgs (lib/cli/args.ts), the global flags
// before and after the command and $STORAGE_OPTS (parseCommandLine, lib/cli/cli.ts), and the id
// mapping and --layer-opt flags (lib/cli/flags.ts).
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { bool, list, parseArgs, str, type FlagSpec } from '../../lib/cli/args.ts';
import { parseCommandLine, type CommandLine } from '../../lib/cli/cli.ts';
import { idMaps, layerOptFlag, layerOpts, mapFlags } from '../../lib/cli/flags.ts';
import { tempDir } from '../fixtures/fs.ts';

const specs: FlagSpec[] = [
  { names: ['name', 'n'], value: true, multi: true, help: '' },
  { names: ['id', 'i'], value: true, help: '' },
  { names: ['json', 'j'], help: '' },
  { names: ['force', 'f'], help: '' },
];

/** `fn` fails with a usage error (code EUSAGE) whose message is `message` */
function usageFails(t: ExecutionContext, fn: () => unknown, message: string): void {
  const err = t.throws(fn, { message });
  t.is((err as { code?: string } | undefined)?.code, 'EUSAGE');
}

test('long and short flags, with the value after a space or an =', (t) => {
  for (const argv of [
    ['--id', 'x', '--name', 'a'],
    ['--id=x', '--name=a'],
    ['-i', 'x', '-n', 'a'],
    ['-i=x', '-n=a'],
  ]) {
    const p = parseArgs(argv, specs);
    t.is(str(p, 'id'), 'x', argv.join(' '));
    t.deepEqual(list(p, 'name'), ['a'], argv.join(' '));
    t.deepEqual(p.positionals, []);
  }
  // an = in the value is part of it; a value may start with a dash when it follows the flag
  t.is(str(parseArgs(['--id=a=b'], specs), 'id'), 'a=b');
  t.is(str(parseArgs(['-i', '-x'], specs), 'id'), '-x');
  t.is(str(parseArgs(['--id='], specs), 'id'), '');
});

test('flags are keyed by their first name, whichever spelling was given', (t) => {
  const p = parseArgs(['-j', '--force'], specs);
  t.deepEqual([...p.flags.keys()], ['json', 'force']);
  t.true(bool(p, 'json'));
  t.false(bool(p, 'name'));
  t.is(str(p, 'json'), undefined, 'a switch has no string value');
});

test('a repeatable flag collects every value in order; another flag keeps the last', (t) => {
  const p = parseArgs(['-n', 'a', '--name=b', 'pos', '-n', 'c', '-i', '1', '--id', '2'], specs);
  t.deepEqual(list(p, 'name'), ['a', 'b', 'c']);
  t.is(str(p, 'id'), '2');
  t.deepEqual(list(p, 'id'), ['2']);
  t.deepEqual(list(p, 'json'), []);
  t.deepEqual(p.positionals, ['pos']);
});

test('switches: --x=true sets, --x=false clears, any other value is a usage error', (t) => {
  t.true(bool(parseArgs(['--json=true'], specs), 'json'));
  t.false(bool(parseArgs(['--json', '--json=false'], specs), 'json'));
  t.false(parseArgs(['-j=false'], specs).flags.has('json'));
  usageFails(t, () => parseArgs(['--json=yes'], specs), 'flag --json takes no value');
  usageFails(t, () => parseArgs(['-j=1'], specs), 'flag -j takes no value');
});

test('a missing value and an unknown flag are usage errors naming the flag', (t) => {
  usageFails(t, () => parseArgs(['--id'], specs), 'flag --id needs a value');
  usageFails(t, () => parseArgs(['a', '-n'], specs), 'flag -n needs a value');
  usageFails(t, () => parseArgs(['--frob'], specs), 'unknown flag --frob');
  usageFails(t, () => parseArgs(['--frob=1'], specs), 'unknown flag --frob');
  usageFails(t, () => parseArgs(['-x'], specs), 'unknown flag -x');
  // one dash takes only one-letter names and two dashes only long ones, as the peer
  usageFails(t, () => parseArgs(['-name', 'a'], specs), 'unknown flag -name');
  usageFails(t, () => parseArgs(['--n', 'a'], specs), 'unknown flag --n');
  // short flags are not bundled
  usageFails(t, () => parseArgs(['-jf'], specs), 'unknown flag -jf');
});

test('-- ends flags; - alone is an argument; flags may follow arguments', (t) => {
  const p = parseArgs(['a', '-j', '--', '-n', 'x', '--json'], specs);
  t.deepEqual(p.positionals, ['a', '-n', 'x', '--json']);
  t.true(bool(p, 'json'));
  t.false(p.flags.has('name'));
  t.deepEqual(parseArgs(['-', '-f'], specs).positionals, ['-']);
});

test('stopAtPositional: parsing stops at the first argument, the rest unparsed', (t) => {
  const p = parseArgs(['-j', 'cmd', '--frob', '-n', 'x'], specs, true);
  t.true(bool(p, 'json'));
  t.deepEqual(p.positionals, ['cmd', '--frob', '-n', 'x']);
  t.deepEqual(parseArgs(['--', 'cmd', '-j'], specs, true).positionals, ['cmd', '-j']);
});

/** the `run` outcome of parseCommandLine, failing the test on any other */
function run(argv: string[], env: Record<string, string> = {}): Extract<CommandLine, { kind: 'run' }> {
  const line = parseCommandLine(argv, env);
  if (line.kind !== 'run') throw new Error(`${argv.join(' ')}: ${line.kind}${line.kind === 'error' ? `: ${line.error.message}` : ''}`);
  return line;
}

/** A storage.conf in a temp dir, and the env that points the CLI at it. */
function conf(t: ExecutionContext, text: string): Record<string, string> {
  const file = path.join(tempDir(t), 'storage.conf');
  fs.writeFileSync(file, text);
  return { CONTAINERS_STORAGE_CONF: file };
}

test('no store flag: storage.conf, as the peer reads it; STORAGE_DRIVER and STORAGE_OPTS replace its driver and options', (t) => {
  const env = conf(t, '[storage]\ndriver = "overlay"\ngraphroot = "/g"\nrunroot = "/rr"\n[storage.options.overlay]\nmountopt = "nodev"\n');
  const d = run(['layers'], env);
  t.deepEqual(d.globals, { root: '/g', runroot: '/rr', driver: 'overlay', storageOpts: ['overlay.mountopt=nodev'], storageConf: env.CONTAINERS_STORAGE_CONF, json: false, debug: false });
  t.like(run(['layers'], { ...env, STORAGE_DRIVER: 'vfs', STORAGE_OPTS: '' }).globals, { driver: 'vfs', storageOpts: [] });
  // any store flag: the flags; the file only for a root not given
  t.deepEqual(run(['-g', '/x', 'layers'], env).globals, { root: '/x', runroot: '/rr', driver: 'vfs', storageOpts: [], json: false, debug: false });
  // a file with no driver: the driver whose home exists in the graph root
  const g = tempDir(t);
  fs.mkdirSync(path.join(g, 'btrfs'));
  t.is(run(['layers'], conf(t, `[storage]\ngraphroot = "${g}"\n`)).globals.driver, 'btrfs');
  // a missing CONTAINERS_STORAGE_CONF is an error, as in the peer
  const bad = parseCommandLine(['layers'], { CONTAINERS_STORAGE_CONF: '/nonexistent/storage.conf' });
  t.is(bad.kind, 'error');
  // but `version` reads none (docs/cli.md; its start-up, docs/performance.md)
  t.like(parseCommandLine(['version'], { CONTAINERS_STORAGE_CONF: '/nonexistent/storage.conf' }), { kind: 'run', globals: { root: '', driver: '' } });
});

test('global flags: the peer spellings before or after the command', (t) => {
  const spellings = [
    ['--root', '/r', '--runroot', '/rr', '--driver', 'overlay', 'layers'],
    ['--graph', '/r', '--run', '/rr', '--storage-driver', 'overlay', 'layers'],
    ['-g', '/r', '-R', '/rr', '-s', 'overlay', 'layers'],
    ['layers', '-g=/r', '--run=/rr', '-s', 'overlay'],
    ['-g', '/r', 'layers', '-R', '/rr', '--storage-driver=overlay'],
  ];
  for (const argv of spellings) t.like(run(argv).globals, { root: '/r', runroot: '/rr', driver: 'overlay' }, argv.join(' '));
  t.like(run(['-j', '-D', 'layers']).globals, { json: true, debug: true });
  t.like(run(['layers', '--json', '--debug']).globals, { json: true, debug: true });
  // after the command, a global flag given again wins over the one before it
  t.is(run(['-g', '/a', 'layers', '-g', '/b']).globals.root, '/b');
});

test('$STORAGE_DRIVER is the default driver; -s wins over it', (t) => {
  t.is(run(['layers'], { ...conf(t, '[storage]\ndriver = "overlay"\n'), STORAGE_DRIVER: 'btrfs' }).globals.driver, 'btrfs');
  t.is(run(['-g', '/r', 'layers'], { STORAGE_DRIVER: 'btrfs' }).globals.driver, 'btrfs');
  t.is(run(['-s', 'vfs', 'layers'], { STORAGE_DRIVER: 'btrfs' }).globals.driver, 'vfs');
});

test('--storage-opt adds up before and after the command; $STORAGE_OPTS only without it', (t) => {
  t.deepEqual(run(['--storage-opt', 'a=1', 'status', '--storage-opt=b=2', '--storage-opt', 'a=3']).globals.storageOpts, ['a=1', 'b=2', 'a=3']);
  // with no flag it replaces storage.conf's options, split as the peer splits it (empty ones kept: openStore refuses them)
  const env = conf(t, '[storage]\ndriver = "vfs"\n');
  t.deepEqual(run(['status'], { ...env, STORAGE_OPTS: 'x=1,,y=2' }).globals.storageOpts, ['x=1', '', 'y=2']);
  t.deepEqual(run(['-g', '/r', 'status'], { STORAGE_OPTS: 'x=1,,y=2,' }).globals.storageOpts, ['x=1', 'y=2']);
  t.deepEqual(run(['-g', '/r', 'status', '--storage-opt', 'z=9'], { STORAGE_OPTS: 'x=1' }).globals.storageOpts, ['z=9']);
  t.deepEqual(run(['status'], { ...env, STORAGE_OPTS: '' }).globals.storageOpts, []);
});

test('the command: by any of its spellings, its own flags and arguments in any order', (t) => {
  const c = run(['-g', '/r', 'createlayer', 'parent', '-n', 'a', '--json', '-n', 'b']);
  t.is(c.cmd.names[0], 'create-layer');
  t.is(c.name, 'createlayer');
  t.deepEqual(list(c.args, 'name'), ['a', 'b']);
  t.deepEqual(c.args.positionals, ['parent']);
  t.true(c.globals.json, "the command's --json is the global one");
  // `--` ends flags after the command too
  t.deepEqual(run(['get-names', '--', '-n']).args.positionals, ['-n']);
  // a flag of another command is unknown here
  const bad = parseCommandLine(['layers', '-n', 'x'], {});
  t.like(bad, { kind: 'error', command: 'layers', error: { code: 'EUSAGE', message: 'unknown flag -n' } });
});

test('usage, --help, and the usage errors with the command they concern', (t) => {
  t.deepEqual(parseCommandLine([], {}), { kind: 'usage', asked: false });
  t.deepEqual(parseCommandLine(['-D'], {}), { kind: 'usage', asked: false });
  t.deepEqual(parseCommandLine(['--help'], {}), { kind: 'usage', asked: true });
  t.deepEqual(parseCommandLine(['-h'], {}), { kind: 'usage', asked: true });
  for (const argv of [['layer', '--help'], ['-h', 'layer'], ['layer', '-h', 'a', 'b']]) {
    const h = parseCommandLine(argv, {});
    t.is(h.kind, 'command-help', argv.join(' '));
    if (h.kind === 'command-help') t.is(h.cmd.names[0], 'layer');
  }
  const cases: Array<[string[], string | undefined, string]> = [
    [['frob'], 'frob', 'unknown command "frob"; see layers --help'],
    [['--frob', 'layers'], undefined, 'unknown flag --frob'],
    [['-g'], undefined, 'flag -g needs a value'],
    [['layer'], 'layer', 'layer needs layerNameOrID [...]'],
    [['layers', 'x', 'y'], 'layers', 'too many arguments (x y)'],
    [['create-layer', '-n'], 'create-layer', 'flag -n needs a value'],
  ];
  for (const [argv, command, message] of cases) t.like(parseCommandLine(argv, {}), { kind: 'error', command, error: { code: 'EUSAGE', message } }, argv.join(' '));
});

const maps = (argv: string[], files?: { uid: string; gid: string }) => idMaps(parseArgs(argv, mapFlags), files);

test('id mappings: explicit maps, the host map, none', (t) => {
  t.deepEqual(maps([]), { uidmap: [], gidmap: [] });
  t.deepEqual(maps(['--uidmap', '0:1000:10,10:5000:1', '--gidmap=0:2000:5']), {
    uidmap: [
      { container_id: 0, host_id: 1000, size: 10 },
      { container_id: 10, host_id: 5000, size: 1 },
    ],
    gidmap: [{ container_id: 0, host_id: 2000, size: 5 }],
  });
  // --hostuidmap wins over a map given with it
  t.deepEqual(maps(['--uidmap', '0:1000:10', '--hostuidmap', '--gidmap', '0:1:1', '--hostgidmap']), { uidmap: [], gidmap: [] });
  const err = t.throws(() => maps(['--gidmap', '0:1']));
  t.is((err as { code?: string }).code, 'EUSAGE');
  t.regex(err!.message, /^--gidmap: bad id mapping "0:1"/);
});

test('id mappings from a user\'s and a group\'s subordinate ranges, in file order', (t) => {
  const dir = tempDir(t);
  const uid = path.join(dir, 'subuid');
  const gid = path.join(dir, 'subgid');
  fs.writeFileSync(uid, 'alice:100000:65536\nbob:200000:10\n\nalice:300000:5\n');
  fs.writeFileSync(gid, 'staff:400000:7\n');
  t.deepEqual(maps(['--subuidmap', 'alice', '--subgidmap', 'staff'], { uid, gid }), {
    uidmap: [
      { container_id: 0, host_id: 100000, size: 65536 },
      { container_id: 65536, host_id: 300000, size: 5 },
    ],
    gidmap: [{ container_id: 0, host_id: 400000, size: 7 }],
  });
  // an explicit map wins over the subordinate ranges
  t.deepEqual(maps(['--subuidmap', 'alice', '--uidmap', '0:1:1'], { uid, gid }).uidmap, [{ container_id: 0, host_id: 1, size: 1 }]);
  usageFails(t, () => maps(['--subuidmap', 'carol'], { uid, gid }), `no ranges for "carol" in ${uid}`);
  usageFails(t, () => maps(['--subgidmap', 'staff'], { uid, gid: path.join(dir, 'none') }), `cannot read ${path.join(dir, 'none')}: ENOENT`);
});

test('--layer-opt: KEY=VALUE pairs, the last of a key winning; anything else a usage error', (t) => {
  const opt = [layerOptFlag];
  t.is(layerOpts(parseArgs([], opt)), undefined);
  t.deepEqual(layerOpts(parseArgs(['--layer-opt', 'size=10G', '--layer-opt=a=b=c', '--layer-opt', 'size=1G', '--layer-opt', 'e='], opt)), { size: '1G', a: 'b=c', e: '' });
  usageFails(t, () => layerOpts(parseArgs(['--layer-opt', 'size'], opt)), '--layer-opt size: want KEY=VALUE');
  usageFails(t, () => layerOpts(parseArgs(['--layer-opt', '=1'], opt)), '--layer-opt =1: want KEY=VALUE');
});

test("an empty --graph or --run means unset, as for the peer (never a store in the working directory)", (t) => {
  const line = parseCommandLine(['--graph', '', '--run', '', '--storage-driver', 'vfs', 'layers'], { CONTAINERS_STORAGE_CONF: '/dev/null' });
  t.is(line.kind, 'run');
  if (line.kind !== 'run') return;
  t.true(path.isAbsolute(line.globals.root) && line.globals.root !== process.cwd(), line.globals.root);
  t.true(path.isAbsolute(line.globals.runroot) && line.globals.runroot !== process.cwd(), line.globals.runroot);
});
