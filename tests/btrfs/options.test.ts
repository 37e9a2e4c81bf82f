// btrfs's global options (--storage-opt): btrfs.min_space refuses a smaller per-layer size=,
// btrfs.size is the size= of a layer that gives none; unknown keys are refused naming the key.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BtrfsDriver } from '../../drivers/btrfs/index.ts';
import { isLayersError } from '../../lib/errors.ts';
import { loopFs } from '../fixtures/fs.ts';
import { runCli } from '../fixtures/store.ts';

const MiB = 1 << 20;

test('btrfs.min_space: a layer asking for less is refused before its subvolume is made; more is taken', async (t) => {
  const mnt = loopFs(t, 'btrfs', 256 * MiB);
  const d = new BtrfsDriver(path.join(mnt, 'btrfs'), ['btrfs.min_space=8M']);
  const err = await t.throwsAsync(d.create('small', undefined, { storageOpt: { size: '4M' } }));
  t.true(isLayersError(err, 'EUSAGE'));
  t.regex(err!.message, /storage size cannot be less than 8M/);
  t.false(await d.exists('small'));
  await d.create('big', undefined, { storageOpt: { size: '16M' } });
  t.true(await d.exists('big'));
  // without the option the same size is taken
  const free = new BtrfsDriver(path.join(mnt, 'btrfs'));
  await free.create('small', undefined, { storageOpt: { size: '4M' } });
  t.true(await free.exists('small'));
});

test('btrfs.size: the default size= caps a layer that gives none', async (t) => {
  const mnt = loopFs(t, 'btrfs', 256 * MiB);
  const d = new BtrfsDriver(path.join(mnt, 'btrfs'), ['btrfs.size=4M']);
  await d.create('l', undefined);
  const err = t.throws(() => fs.writeFileSync(path.join(d.dir('l'), 'big'), Buffer.alloc(16 * MiB, 1)));
  // libuv has no name for EDQUOT ('UNKNOWN'): the errno says it
  t.is((err as NodeJS.ErrnoException).errno, -os.constants.errno.EDQUOT);
  t.throws(() => new BtrfsDriver(path.join(mnt, 'btrfs'), ['btrfs.min_space=8M', 'btrfs.size=4M']), { message: /cannot be less than 8M/ });
});

test('btrfs: unknown options are refused naming the key, by the driver and by the CLI, before anything is made', async (t) => {
  const mnt = loopFs(t, 'btrfs', 128 * MiB);
  for (const opt of ['btrfs.nosuchopt=1', 'overlay.mountopt=nodev']) {
    const err = t.throws(() => new BtrfsDriver(path.join(mnt, 'btrfs'), [opt]));
    t.true(isLayersError(err, 'EUSAGE'), opt);
    t.true(err!.message.includes(`"${opt.split('=')[0]}"`), err!.message);
  }
  t.throws(() => new BtrfsDriver(path.join(mnt, 'btrfs'), ['btrfs.mountopt=nodev']), { message: /btrfs\.mountopt is not supported/ });
  // additional image stores: vfs and overlay only, said at once (storage.conf's additionalimagestores comes this way)
  const store = t.throws(() => new BtrfsDriver(path.join(mnt, 'btrfs'), [`btrfs.imagestore=${mnt}/shared`]));
  t.true(isLayersError(store, 'EDRIVER'));
  t.regex(store!.message, /btrfs\.imagestore is not supported: additional image stores are read by the vfs and overlay drivers only/);
  t.false(fs.existsSync(path.join(mnt, 'btrfs')));
  const r = await runCli(['--storage-driver', 'btrfs', '--storage-opt', 'btrfs.nosuchopt=1', '--root', path.join(mnt, 'root'), '--runroot', path.join(mnt, 'run'), 'layers']);
  t.not(r.code, 0);
  t.regex(r.stderr, /btrfs\.nosuchopt/);
  t.false(fs.existsSync(path.join(mnt, 'root', 'btrfs')));
});
