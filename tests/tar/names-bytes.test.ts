// Names are bytes end to end (docs/tar-engine.md, "Names"): names that are not UTF-8 neither
// collide with their U+FFFD reading nor with each other, and import, child copy, changes,
// diffsize and diff keep them byte for byte, on vfs and overlay, as the peer does.
import test, { type ExecutionContext } from 'ava';
import { isUtf8 } from 'node:buffer';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from '../fixtures/fs.ts';
import { BIN } from '../fixtures/store.ts';
import { driverStore } from '../store/fixtures.ts';

const b = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
const at = (dir: string | Buffer, name: Buffer) => Buffer.concat([Buffer.from(dir), Buffer.from('/'), name]);

const X_FF = b('x', [0xff]); // not UTF-8
const X_FFFD = b('x\ufffd'); // its lossy reading
const FF_FE = b([0xff, 0xfe]);
const FE_FF = b([0xfe, 0xff]);
const DIR = b('d', [0xc3]); // a truncated sequence
const IN_DIR = b('f', [0xed, 0xa0, 0x80]); // an encoded surrogate: not UTF-8
const LINK = b('l', [0x80]);

/** name (hex of its bytes, '/'-joined) -> what it is: type, mode, content or target */
function snapshot(root: string, rel: Buffer[] = [], out: Record<string, string> = {}): Record<string, string> {
  const dir = Buffer.concat([Buffer.from(root), ...rel.flatMap((r) => [Buffer.from('/'), r])]);
  for (const name of fs.readdirSync(dir, { encoding: 'buffer' })) {
    const p = Buffer.concat([dir, Buffer.from('/'), name]);
    const key = [...rel, name].map((r) => r.toString('hex')).join('/');
    const st = fs.lstatSync(p);
    if (st.isDirectory()) {
      out[key] = `dir ${(st.mode & 0o7777).toString(8)}`;
      snapshot(root, [...rel, name], out);
    } else if (st.isFile()) out[key] = `file ${(st.mode & 0o7777).toString(8)} ${fs.readFileSync(p).toString('hex')}`;
    else if (st.isSymbolicLink()) out[key] = `symlink ${fs.readlinkSync(p, { encoding: 'buffer' }).toString('hex')}`;
    else if (st.isFIFO()) out[key] = 'fifo';
    else out[key] = 'other';
  }
  return out;
}

/** the source tree: every name above, a FIFO beside its look-alike regular file */
function makeSource(dir: string): string {
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(at(src, X_FF), 'the regular file\n');
  spawnSync('mkfifo', [at(src, X_FFFD).toString()]); // the name is UTF-8
  fs.writeFileSync(at(src, FF_FE), 'ff fe\n');
  fs.writeFileSync(at(src, FE_FF), 'fe ff\n');
  fs.mkdirSync(at(src, DIR));
  fs.writeFileSync(at(at(src, DIR), IN_DIR), 'in dir\n');
  fs.symlinkSync(X_FF, at(src, LINK));
  return src;
}

/** `layers ARGS` with a hard deadline: a hang (a FIFO opened for a body) fails instead of blocking the suite */
function layers(root: string, runroot: string, driver: string, args: string[]): { code: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, '-g', root, '-R', runroot, '-s', driver, ...args], { timeout: 60_000, killSignal: 'SIGKILL' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString() + (r.signal ? ` (killed by ${r.signal}: hung)` : '') };
}

function peer(root: string, runroot: string, driver: string, args: string[]): { code: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync('containers-storage', ['-s', driver, '-g', root, '-R', runroot, ...args], { timeout: 60_000, killSignal: 'SIGKILL' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

function layerDir(root: string, driver: string, id: string): string {
  return driver === 'vfs' ? path.join(root, 'vfs/dir', id) : path.join(root, 'overlay', id, 'diff');
}

function checkDriver(driver: 'vfs' | 'overlay') {
  test(`${driver}: names that are not UTF-8 survive import, child copy, changes, diffsize and diff byte for byte`, async (t: ExecutionContext) => {
    const dir = tempDir(t);
    const src = makeSource(dir);
    const want = snapshot(src);
    t.is(Object.keys(want).length, 7);
    const tarPath = path.join(dir, 'names.tar');
    execFileSync('tar', ['--format=gnu', '--numeric-owner', '-C', src, '-cf', tarPath, '.']);

    const s = driverStore(t, driver);
    const imp = layers(s.root, s.runroot, driver, ['import-layer', '-f', tarPath, '-n', 'base']);
    t.is(imp.code, 0, imp.stderr);
    const baseId = imp.stdout.toString().trim().split('\n')[0];
    t.deepEqual(snapshot(layerDir(s.root, driver, baseId)), want, 'the tar gives every name, \\xff\\xfe and \\xfe\\xff apart, the FIFO beside the file');

    // a child copies the base (vfs: a full copy; overlay: a template copy when mapped): no hang on the FIFO
    const child = layers(s.root, s.runroot, driver, ['create-layer', '-n', 'child', 'base']);
    t.is(child.code, 0, child.stderr);
    if (driver === 'vfs') t.deepEqual(snapshot(layerDir(s.root, driver, child.stdout.toString().split(/\s/)[0])), want);
    const mapped = layers(s.root, s.runroot, driver, ['create-layer', '--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536', '-n', 'mapped', 'base']);
    t.is(mapped.code, 0, mapped.stderr);

    // changes: every name, exact in --json (a byte that is not UTF-8 is the escape \udcXX)
    const ch = layers(s.root, s.runroot, driver, ['changes', '--json', 'base']);
    t.is(ch.code, 0, ch.stderr);
    t.true(isUtf8(ch.stdout), 'the JSON is valid UTF-8');
    const json = JSON.stringify(JSON.parse(ch.stdout.toString()));
    for (const esc of ['x\\udcff', '\\udcff\\udcfe', '\\udcfe\\udcff', 'd\\udcc3', 'l\\udc80']) t.true(json.includes(esc), `changes --json names ${esc}`);
    const plain = layers(s.root, s.runroot, driver, ['changes', 'base']);
    t.is(plain.code, 0, plain.stderr);
    t.true(plain.stdout.toString().includes('"/x\\xff"'), plain.stdout.toString());
    t.true(plain.stdout.toString().includes('"/\\xff\\xfe"'));

    const ds = layers(s.root, s.runroot, driver, ['diffsize', 'base']);
    t.is(ds.code, 0, ds.stderr);
    // the files' bytes and the symlink's target (x\xff), as the peer counts (its ChangesSize)
    t.is(Number(ds.stdout.toString().trim()), Buffer.byteLength('the regular file\nff fe\nfe ff\nin dir\n') + X_FF.length);
    t.is(peer(s.root, s.runroot, driver, ['diffsize', 'base']).stdout.toString(), ds.stdout.toString());

    // diff: our tar, read by the peer (Go's archive/tar), gives the source tree byte for byte,
    // and the peer's own diff of the same layer read by us gives it too
    const ourDiff = path.join(dir, 'ours.tar');
    const d = layers(s.root, s.runroot, driver, ['diff', '-f', ourDiff, 'base']);
    t.is(d.code, 0, d.stderr);
    const p = { root: path.join(dir, 'peer-root'), runroot: path.join(dir, 'peer-run') };
    const pimp = peer(p.root, p.runroot, 'vfs', ['import-layer', '-f', ourDiff]);
    t.is(pimp.code, 0, pimp.stderr);
    t.deepEqual(snapshot(layerDir(p.root, 'vfs', pimp.stdout.toString().trim().split('\n')[0])), want, "the peer reads our diff as the source tree");

    const peerBase = peer(p.root, p.runroot, 'vfs', ['import-layer', '-f', tarPath, '-n', 'pbase']);
    t.is(peerBase.code, 0, peerBase.stderr);
    const peerDiff = path.join(dir, 'peer.tar');
    t.is(peer(p.root, p.runroot, 'vfs', ['diff', '-u', '-f', peerDiff, 'pbase']).code, 0);
    const back = layers(s.root, s.runroot, driver, ['import-layer', '-f', peerDiff]);
    t.is(back.code, 0, back.stderr);
    t.deepEqual(snapshot(layerDir(s.root, driver, back.stdout.toString().trim().split('\n')[0])), want, "we read the peer's diff as the source tree");
  });
}

checkDriver('vfs');
checkDriver('overlay');
