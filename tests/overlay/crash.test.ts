// A process killed between mount and unmount: the next `layers` command sees a consistent mount
// count, really unmounts on the last unmount, and can delete the layer.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loopFs } from '../fixtures/fs.ts';
import { runCli } from '../fixtures/store.ts';

const repo = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function mounted(p: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === p);
}

test('overlay: SIGKILL after mount and before unmount; the next commands unmount and delete', async (t) => {
  const mnt = loopFs(t, 'ext4', 256 << 20);
  const g = ['-g', path.join(mnt, 'root'), '-R', path.join(mnt, 'run'), '-s', 'overlay'];
  const cli = async (...args: string[]) => {
    const r = await runCli([...g, ...args]);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  await cli('create-layer', '-n', 'base');
  await cli('create-layer', '-n', 'top', 'base');

  // a runtime mounts the layer through the library, then dies without unmounting
  const script = `
    import { openStore } from ${JSON.stringify(path.join(repo, 'lib/index.ts'))};
    const s = await openStore({ root: ${JSON.stringify(g[1])}, runroot: ${JSON.stringify(g[3])}, driver: 'overlay' });
    const p = await s.mount('top');
    console.log(p);
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const mountPath = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.trim());
    });
    child.on('exit', (code) => reject(new Error(`the mounting process exited with ${code}`)));
  });
  t.true(mounted(mountPath), 'the layer is mounted');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));

  // the count survived the process: the layer is still in use, and deleting it is refused
  const [layer] = JSON.parse(await cli('--json', 'layer', 'top'));
  t.is(layer.id.length, 64);
  const refused = await runCli([...g, 'delete-layer', 'top']);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /mounted/);
  t.true(mounted(mountPath));

  // the last unmount really unmounts; then the layer can go, and nothing of it is left
  await cli('unmount', 'top');
  t.false(mounted(mountPath), 'unmounted for real');
  await cli('delete-layer', 'top');
  const left = JSON.parse(fs.readFileSync(path.join(mnt, 'run', 'overlay-layers', 'mountpoints.json'), 'utf8'));
  t.deepEqual(left, []);
  t.false(fs.existsSync(path.join(mnt, 'root', 'overlay', layer.id)));
  t.is((await runCli([...g, 'exists', 'top'])).code, 1);
});

test('overlay: killed after mount(2) but before the count was saved; delete-layer still unmounts and removes', async (t) => {
  const mnt = loopFs(t, 'ext4', 256 << 20);
  const g = ['-g', path.join(mnt, 'root'), '-R', path.join(mnt, 'run'), '-s', 'overlay'];
  t.is((await runCli([...g, 'create-layer', '-n', 'base'])).code, 0);
  t.is((await runCli([...g, 'create-layer', '-n', 'top', 'base'])).code, 0);
  const [layer] = JSON.parse((await runCli([...g, '--json', 'layer', 'top'])).stdout);
  // the driver's mount without the store's record: what a process leaves when it dies in between
  const script = `
    import { OverlayDriver } from ${JSON.stringify(path.join(repo, 'drivers/overlay/index.ts'))};
    console.log(await new OverlayDriver(${JSON.stringify(path.join(mnt, 'root', 'overlay'))}).mount(${JSON.stringify(layer.id)}));`;
  const out = await new Promise<string>((resolve, reject) => {
    const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    c.stdout!.on('data', (d) => (s += d));
    c.on('exit', (code) => (code === 0 ? resolve(s.trim()) : reject(new Error(`exit ${code}`))));
  });
  t.teardown(() => {
    if (mounted(out)) spawn('umount', [out]);
  });
  t.true(mounted(out));
  const del = await runCli([...g, 'delete-layer', 'top']);
  t.is(del.code, 0, del.stderr);
  t.false(mounted(out), 'the stale mount is gone');
  t.false(fs.existsSync(path.join(mnt, 'root', 'overlay', layer.id)));
});
