// vfs's global options (--storage-opt): vfs.ignore_chown_errors changes what an apply does in a
// user namespace that lacks the tar's owners; an unknown key is refused naming it, by the driver
// and by the CLI, before anything is made.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VfsDriver } from '../../drivers/vfs/index.ts';
import { isLayersError } from '../../lib/errors.ts';
import { tempDir } from '../fixtures/fs.ts';
import { runCli } from '../fixtures/store.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

test('vfs: an unknown option is refused naming the key, before the driver makes its home', (t) => {
  const root = tempDir(t);
  for (const opt of ['vfs.nosuchopt=1', 'nosuchopt=1', 'overlay.mountopt=nodev']) {
    const err = t.throws(() => new VfsDriver(path.join(root, 'vfs'), [opt]));
    t.true(isLayersError(err, 'EUSAGE'), opt);
    t.true(err!.message.includes(`"${opt.split('=')[0]}"`), err!.message);
  }
  const err = t.throws(() => new VfsDriver(path.join(root, 'vfs'), ['vfs.mountopt=nodev']));
  t.regex(err!.message, /vfs\.mountopt is not supported/);
  t.false(fs.existsSync(path.join(root, 'vfs')));
  // the peer's spellings of a known key: prefixed, '.'-prefixed, bare, any case
  for (const opt of ['vfs.ignore_chown_errors=true', '.ignore_chown_errors=true', 'IGNORE_CHOWN_ERRORS=true'])
    t.is(new VfsDriver(path.join(root, 'vfs'), [opt]).options.ignore_chown_errors, 'true');
  t.throws(() => new VfsDriver(path.join(root, 'vfs'), ['vfs.ignore_chown_errors=maybe']), { message: /want true or false/ });
});

test('vfs: the CLI refuses --storage-opt vfs.nosuchopt=1 naming the key, and makes no store', async (t) => {
  const dir = tempDir(t);
  const g = ['--storage-driver', 'vfs', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run')];
  const r = await runCli([...g, '--storage-opt', 'vfs.nosuchopt=1', 'layers']);
  t.not(r.code, 0);
  t.regex(r.stderr, /vfs\.nosuchopt/);
  t.false(fs.existsSync(path.join(dir, 'root', 'vfs')));
  t.false(fs.existsSync(path.join(dir, 'root', 'vfs-layers')));
  // $STORAGE_OPTS too
  const e = await runCli([...g, 'layers'], { env: { STORAGE_OPTS: 'vfs.nosuchopt=1' } });
  t.not(e.code, 0);
  t.regex(e.stderr, /vfs\.nosuchopt/);
  // a known option is taken, and status says imagestore is only recorded
  const s = await runCli([...g, '--storage-opt', 'vfs.imagestore=/nowhere', 'status']);
  t.is(s.code, 0, s.stderr);
  t.regex(s.stdout, /Image Store: \/nowhere$/m);
});

/** Apply tarPath as a base layer in a user namespace that maps only root; prints the file's owner. */
function applyInUserNamespace(home: string, tarPath: string, options: string[]): Promise<{ code: number; out: string; err: string }> {
  const script = `
    import fs from 'node:fs';
    import { VfsDriver } from ${JSON.stringify(path.join(repo, 'drivers/vfs/index.ts'))};
    const d = new VfsDriver(${JSON.stringify(home)}, ${JSON.stringify(options)});
    await d.create('l', undefined);
    const fd = fs.openSync(${JSON.stringify(tarPath)}, 'r');
    await d.applyDiff('l', undefined, fd);
    await d.create('c', 'l');
    const owner = (p) => { const st = fs.lstatSync(p); return st.uid + ':' + st.gid; };
    console.log(owner(d.dir('l') + '/f') + ' ' + owner(d.dir('c') + '/f'));`;
  return new Promise((resolve) => {
    const c = spawn('unshare', ['--user', '--map-root-user', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    c.stdout!.on('data', (d) => (out += d));
    c.stderr!.on('data', (d) => (err += d));
    c.on('exit', (code) => resolve({ code: code ?? -1, out: out.trim(), err }));
  });
}

test('vfs.ignore_chown_errors: owners outside the user namespace are left as created instead of failing the apply', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f'), 'body');
  const tarPath = path.join(dir, 'layer.tar');
  execFileSync('tar', ['--owner=1000', '--group=1000', '--numeric-owner', '-cf', tarPath, '-C', src, 'f']);
  const refused = await applyInUserNamespace(path.join(dir, 'strict'), tarPath, []);
  t.not(refused.code, 0, 'without the option, chown to an id the namespace lacks fails');
  t.regex(refused.err, /EINVAL|Invalid argument/);
  const ok = await applyInUserNamespace(path.join(dir, 'lenient'), tarPath, ['vfs.ignore_chown_errors=true']);
  t.is(ok.code, 0, ok.err);
  // root in the namespace is real root here: the file is the process's own, in the layer and in its child's copy
  t.is(ok.out, '0:0 0:0');
  t.is(fs.readFileSync(path.join(dir, 'lenient', 'dir', 'l', 'f'), 'utf8'), 'body');
});
