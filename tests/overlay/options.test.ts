// overlay's global options (--storage-opt): overlay.mountopt reaches every mount of a layer; the
// options this driver cannot honour and unknown keys are refused naming the key, before anything is made.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { OverlayDriver } from '../../drivers/overlay/index.ts';
import { isLayersError } from '../../lib/errors.ts';
import { loopFs, tempDir } from '../fixtures/fs.ts';
import { runCli } from '../fixtures/store.ts';

/** the mount options of the mount at target, from /proc/self/mountinfo (per-mount and superblock) */
function mountOptionsAt(target: string): string[] {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] !== target) continue;
    const sep = f.indexOf('-');
    return [...f[5].split(','), ...f[sep + 3].split(',')];
  }
  return [];
}

test('overlay.mountopt=nodev: a mounted layer is mounted nodev; other words go to overlayfs as data', async (t) => {
  const mnt = loopFs(t, 'ext4', 128 << 20);
  const plain = new OverlayDriver(path.join(mnt, 'plain'));
  const d = new OverlayDriver(path.join(mnt, 'opts'), undefined, ['overlay.mountopt=nodev,index=off']);
  t.teardown(() => Promise.all([plain.cleanup(), d.cleanup()]));
  for (const drv of [plain, d]) {
    await drv.create('base', undefined);
    await drv.create('top', 'base');
  }
  const p0 = await plain.mount('top');
  t.false(mountOptionsAt(p0).includes('nodev'));
  const p = await d.mount('top');
  const seen = mountOptionsAt(p);
  t.true(seen.includes('nodev'), seen.join(','));
  // index=off went in the mount data (as a flag word it would not be; the kernel took it)
  fs.writeFileSync(path.join(p, 'f'), 'x');
  await d.unmount('top');
  t.is(fs.readFileSync(path.join(d.diffDir('top'), 'f'), 'utf8'), 'x');
});

test('overlay: unknown and unsupported options are refused naming the key, before anything is made', (t) => {
  const root = tempDir(t);
  const home = path.join(root, 'overlay');
  for (const opt of ['overlay.nosuchopt=1', 'nosuchopt=1', 'vfs.ignore_chown_errors=true']) {
    const err = t.throws(() => new OverlayDriver(home, undefined, [opt]));
    t.true(isLayersError(err, 'EUSAGE'), opt);
    t.true(err!.message.includes(`"${opt.split('=')[0]}"`), err!.message);
  }
  for (const [opt, key] of [['overlay.mount_program=/usr/bin/fuse-overlayfs', 'mount_program'], ['overlay.size=10G', 'size'], ['inodes=1000', 'inodes']]) {
    const err = t.throws(() => new OverlayDriver(home, undefined, [opt]));
    t.true(isLayersError(err, 'EDRIVER'), opt);
    t.regex(err!.message, new RegExp(`overlay\\.${key} is not supported`));
  }
  t.false(fs.existsSync(home));
  // the peer's keys this driver takes, in the peer's spellings
  const d = new OverlayDriver(home, undefined, ['overlay2.skip_mount_home=true', '.ignore_chown_errors=false', 'Overlay.ImageStore=/x', 'mountopt=nodev']);
  t.deepEqual(d.options, { skip_mount_home: 'true', ignore_chown_errors: 'false', imagestore: '/x', mountopt: 'nodev' });
});

test('overlay: the CLI refuses --storage-opt overlay.nosuchopt=1 naming the key', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['--storage-driver', 'overlay', '--storage-opt', 'overlay.nosuchopt=1', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run'), 'layers']);
  t.not(r.code, 0);
  t.regex(r.stderr, /overlay\.nosuchopt/);
  t.false(fs.existsSync(path.join(dir, 'root', 'overlay')));
});
