// The trees the fuzzer compares (docs/tar-engine.md, "Differential fuzzing"): every fact a layer
// keeps, per name, with names as bytes (read with Buffer paths, so two names that are not UTF-8
// stay two). Plain fs calls and the addon's xattr calls; nothing from the extractor under test.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../lib/native.ts';

export interface Facts {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  mtime?: string;
  size?: number;
  sha256?: string;
  link?: string;
  rdev?: string;
  /** the other names of the same inode (a hardlink group), sorted */
  group?: string[];
  xattrs: Record<string, string>;
}

/** a name for the report: its bytes, escaped where not printable ASCII */
function show(name: Buffer): string {
  let s = '';
  for (const b of name) s += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return s;
}

function xattrs(p: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  const s = p.toString('utf8');
  // a path that is not UTF-8 cannot be passed to the addon as a string: its xattrs are not compared
  if (!Buffer.from(s, 'utf8').equals(p)) return { '?': 'name not UTF-8' };
  for (const k of native().llistxattr(s).sort()) out[k] = native().lgetxattr(s, k)?.toString('hex') ?? '';
  return out;
}

/** every fact of every name under dir, the root itself as '.' */
export function snapshot(dir: string, opts: { times: boolean }): Map<string, Facts> {
  const out = new Map<string, Facts>();
  const inodes = new Map<bigint, string[]>();
  const walk = (abs: Buffer, rel: string) => {
    const st = fs.lstatSync(abs, { bigint: true });
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other';
    const f: Facts = { type, mode: (st.mode & 0o7777n).toString(8), uid: Number(st.uid), gid: Number(st.gid), xattrs: xattrs(abs) };
    if (opts.times && type !== 'dir') f.mtime = `${st.mtimeNs}`;
    if (type === 'file') {
      f.size = Number(st.size);
      f.sha256 = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
      if (st.nlink > 1n) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), rel]);
    }
    if (type === 'symlink') f.link = show(fs.readlinkSync(abs, { encoding: 'buffer' }));
    if (type === 'char' || type === 'block') f.rdev = st.rdev.toString();
    out.set(rel, f);
    if (type === 'dir') {
      for (const name of (fs.readdirSync(abs, { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare)) {
        walk(Buffer.concat([abs, Buffer.from('/'), name]), rel === '.' ? show(name) : `${rel}/${show(name)}`);
      }
    }
  };
  walk(Buffer.from(path.resolve(dir)), '.');
  for (const names of inodes.values()) {
    const group = [...names].sort();
    for (const n of names) out.get(n)!.group = group;
  }
  return out;
}

/** the differences between two snapshots, one line each; empty when equal */
export function differences(ours: Map<string, Facts>, peer: Map<string, Facts>): string[] {
  const lines: string[] = [];
  for (const name of new Set([...ours.keys(), ...peer.keys()])) {
    const a = ours.get(name);
    const b = peer.get(name);
    if (!a) lines.push(`${name}: only the peer has it (${b!.type})`);
    else if (!b) lines.push(`${name}: only ours has it (${a.type})`);
    else {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof Facts>) {
        const x = JSON.stringify(a[k]);
        const y = JSON.stringify(b[k]);
        if (x !== y) lines.push(`${name}: ${k} ours ${x} peer ${y}`);
      }
    }
  }
  return lines;
}

/** every name under dir (for the canary: it must not change) */
export function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: Buffer, rel: string) => {
    for (const name of (fs.readdirSync(abs, { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare)) {
      const p = Buffer.concat([abs, Buffer.from('/'), name]);
      const r = `${rel}/${show(name)}`;
      const st = fs.lstatSync(p);
      out.push(`${r} ${st.mode.toString(8)} ${st.size}`);
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(Buffer.from(dir), '');
  return out;
}
