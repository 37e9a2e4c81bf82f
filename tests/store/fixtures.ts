// Stores on each driver's filesystem for the image and container tests: overlay on an ext4 loop
// filesystem, btrfs on a btrfs one, vfs in a temp dir; three layer tars that make an image; and
// checks that the store's records and the driver's home agree (nothing left over, nothing lost).
import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openRecordStore, type RecordStore } from '../../lib/store/store.ts';
import { loopFs, tempDir } from '../fixtures/fs.ts';
import { gnuTar, runCli, type CliResult } from '../fixtures/store.ts';
import { readAll, storedBody } from '../tar/gnutar.ts';

export const DRIVERS = ['vfs', 'overlay', 'btrfs'] as const;
export type DriverName = (typeof DRIVERS)[number];

/** The switch that turns a driver's idmapped mounts off, so containers with new mappings get mapped top layers (the peer's name for overlay). */
export const DISABLE_IDMAP_ENV: Record<DriverName, string> = {
  overlay: '_CONTAINERS_OVERLAY_DISABLE_IDMAP',
  vfs: '_CONTAINERS_VFS_DISABLE_IDMAP',
  btrfs: '_CONTAINERS_BTRFS_DISABLE_IDMAP',
};

/** For a test file about mapped top layers: idmapped mounts off on every driver, in this process and the CLIs it runs. */
export function useMappedTopLayers(): void {
  for (const name of Object.values(DISABLE_IDMAP_ENV)) process.env[name] = 'yes';
}

export interface DriverStore {
  driver: DriverName;
  dir: string;
  root: string;
  runroot: string;
  /** the store as the CLI opens it: records in the peer's names (docs/api.md, "Records") */
  open(): Promise<RecordStore>;
  cli(args: string[], env?: Record<string, string>): Promise<CliResult>;
}

/** A store of its own: vfs in a temp dir, btrfs on a loop btrfs, overlay on a loop `overlayFs` (ext4 unless said). */
export function driverStore(t: ExecutionContext, driver: DriverName, overlayFs: 'ext4' | 'xfs' = 'ext4'): DriverStore {
  const dir = driver === 'vfs' ? tempDir(t) : loopFs(t, driver === 'btrfs' ? 'btrfs' : overlayFs, 512 << 20);
  const root = path.join(dir, 'root');
  const runroot = path.join(dir, 'run');
  return {
    driver,
    dir,
    root,
    runroot,
    open: () => openRecordStore({ root, runroot, driver }),
    cli: (args, env) => runCli(['-g', root, '-R', runroot, '-s', driver, ...args], { env }),
  };
}

/** Three layer tars: a base, one that adds, changes and deletes, and a top one with a hardlink. */
export function imageTars(dir: string): [string, string, string] {
  const mk = (name: string, fill: (d: string) => void) => {
    const d = path.join(dir, `tree-${name}`);
    fs.mkdirSync(d, { recursive: true });
    fill(d);
    return gnuTar(d, path.join(dir, `${name}.tar`));
  };
  const base = mk('base', (d) => {
    fs.mkdirSync(path.join(d, 'etc'));
    fs.writeFileSync(path.join(d, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    fs.mkdirSync(path.join(d, 'home/app'), { recursive: true });
    fs.writeFileSync(path.join(d, 'home/app/data'), Buffer.alloc(200_000, 3));
    fs.chownSync(path.join(d, 'home/app'), 1000, 1000);
    fs.chownSync(path.join(d, 'home/app/data'), 1000, 1001);
    fs.writeFileSync(path.join(d, 'etc/old'), 'going\n');
  });
  const mid = mk('mid', (d) => {
    fs.mkdirSync(path.join(d, 'etc'));
    fs.writeFileSync(path.join(d, 'etc/.wh.old'), '');
    fs.writeFileSync(path.join(d, 'etc/hostname'), 'mid\n');
    fs.mkdirSync(path.join(d, 'var/log'), { recursive: true });
    fs.chownSync(path.join(d, 'var/log'), 0, 4);
  });
  const top = mk('top', (d) => {
    fs.mkdirSync(path.join(d, 'bin'));
    fs.writeFileSync(path.join(d, 'bin/tool'), Buffer.alloc(70_000, 9), { mode: 0o755 });
    fs.linkSync(path.join(d, 'bin/tool'), path.join(d, 'bin/tool2'));
    fs.symlinkSync('tool', path.join(d, 'bin/alias'));
    fs.chownSync(path.join(d, 'bin/tool'), 2, 3);
  });
  return [base, mid, top];
}

/** [base, mid, top] layers from imageTars, each on the one before. */
export async function threeLayers(store: RecordStore, tars: [string, string, string], prefix = ''): Promise<[string, string, string]> {
  const base = await store.createLayer({ names: [`${prefix}base`] }, tars[0]);
  const mid = await store.createLayer({ parent: base.id, names: [`${prefix}mid`] }, tars[1]);
  const top = await store.createLayer({ parent: mid.id, names: [`${prefix}top`] }, tars[2]);
  return [base.id, mid.id, top.id];
}

export const mapping = (host: number) => {
  const m = [{ container_id: 0, host_id: host, size: 65536 }];
  return { uidmap: m, gidmap: m };
};

/** uid:gid of every entry below dir (dir itself included as '.') */
export function owners(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    const st = fs.lstatSync(path.join(dir, rel));
    out.set(rel, `${st.uid}:${st.gid}`);
    if (st.isDirectory()) for (const n of fs.readdirSync(path.join(dir, rel)).sort()) walk(rel === '.' ? n : `${rel}/${n}`);
  };
  walk('.');
  return out;
}

/** What a tar says of each entry, bodies by hash: two tars that say the same thing compare equal. */
export function tarSummary(file: string): string[] {
  return readAll(file).map((e) => {
    const body = e.type === 'file' && e.size > 0 ? createHash('sha256').update(storedBody(file, e)).digest('hex').slice(0, 16) : '';
    return [e.name, e.type, e.mode.toString(8), e.uid, e.gid, e.size, e.linkname ?? '', body].join(' ');
  });
}

export async function diffFile(store: RecordStore, ref: string, file: string): Promise<string> {
  const fd = fs.openSync(file, 'w');
  try {
    await store.diff(ref, fd);
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

/** Mount points at or below dir (other than dir itself), from this namespace's mountinfo. */
export function mountsBelow(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p) => p !== undefined && p !== dir && p.startsWith(dir + '/'));
}

/**
 * The store is whole: no incomplete record, every image's layers and every container's layer
 * exist, and the driver's home holds exactly the layers the records name (overlay: one l/ link
 * each, every one resolving; btrfs: one subvolume each); nothing is mounted but counted mounts.
 */
export function assertConsistent(t: ExecutionContext, s: DriverStore, why: string): void {
  const read = (kind: string, file: string) => {
    const p = path.join(s.root, `${s.driver}-${kind}`, file);
    return fs.existsSync(p) ? (JSON.parse(fs.readFileSync(p, 'utf8') || '[]') as Array<Record<string, any>>) : [];
  };
  const layers = read('layers', 'layers.json');
  const images = read('images', 'images.json');
  const containers = read('containers', 'containers.json');
  const ids = new Set(layers.map((l) => l.id as string));
  t.deepEqual(
    [...layers, ...images].filter((r) => r.flags?.incomplete),
    [],
    `${why}: no incomplete records`,
  );
  for (const l of layers) if (l.parent) t.true(ids.has(l.parent), `${why}: layer ${l.id}'s parent exists`);
  for (const i of images) for (const l of [i.layer, ...(i['mapped-layers'] ?? [])]) t.true(ids.has(l), `${why}: image ${i.id} layer ${l} exists`);
  for (const c of containers) t.true(ids.has(c.layer), `${why}: container ${c.id}'s layer exists`);
  const home = path.join(s.root, s.driver);
  if (s.driver === 'overlay') {
    t.deepEqual(fs.readdirSync(home).filter((n) => n !== 'l').sort(), [...ids].sort(), `${why}: overlay dirs are the layers`);
    const links = fs.readdirSync(path.join(home, 'l'));
    t.is(links.length, ids.size, `${why}: one l/ link per layer`);
    for (const l of links) t.true(fs.existsSync(path.join(home, 'l', l)), `${why}: l/${l} resolves`);
  } else if (s.driver === 'btrfs') {
    t.deepEqual(fs.readdirSync(path.join(home, 'subvolumes')).sort(), [...ids].sort(), `${why}: subvolumes are the layers`);
    const listed = execFileSync('btrfs', ['subvolume', 'list', '-o', path.join(home, 'subvolumes')], { encoding: 'utf8' }).split('\n').filter(Boolean);
    t.is(listed.length, ids.size, `${why}: btrfs lists one subvolume per layer`);
  } else {
    t.deepEqual(fs.readdirSync(path.join(home, 'dir')).sort(), [...ids].sort(), `${why}: vfs dirs are the layers`);
  }
  const mountRecords = fs.existsSync(path.join(s.runroot, `${s.driver}-layers`, 'mountpoints.json'))
    ? (JSON.parse(fs.readFileSync(path.join(s.runroot, `${s.driver}-layers`, 'mountpoints.json'), 'utf8') || '[]') as Array<{ id: string; path: string }>)
    : [];
  for (const m of mountRecords) t.true(ids.has(m.id), `${why}: mount record ${m.id} is a layer's`);
  const expected = new Set(mountRecords.map((m) => m.path));
  for (const p of mountsBelow(s.dir)) t.true(expected.has(p), `${why}: ${p} is mounted only when counted`);
}
