// The one place the shared driver suite (suite.ts) calls the driver API: open a driver of a given
// name on a filesystem it works on, and each driver call in the shape the suite uses (diffs to and
// from tar files, ids in place of option bags). When the Driver interface's signatures change,
// this file is what changes; suite.ts speaks only to Harness.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { openDriver, type DriverName } from '../../drivers/index.ts';
import type { ApplyDiffResult, Change, Driver } from '../../drivers/driver.ts';
import type { IdMappings } from '../../lib/idmap.ts';
import { dirOn, type FsKind } from '../fixtures/fs.ts';

/** The filesystem each driver's suite runs on, and the name its status gives that filesystem. */
const BACKING: Record<DriverName, { kind: FsKind | 'tmp'; statusName: string }> = {
  // vfs works anywhere: the machine's /tmp (ext4 here; the name is checked against statfs below)
  vfs: { kind: 'tmp', statusName: '' },
  // overlayfs wants an upper that is not overlayfs; ext4 is what the peer's users run it on
  overlay: { kind: 'ext4', statusName: 'extfs' },
  btrfs: { kind: 'btrfs', statusName: 'btrfs' },
};

export interface DiffOpts {
  /** the layer's mappings: owners are written (and compared) as container ids */
  idMappings?: IdMappings;
  /** the parent's mappings when they are not the layer's */
  parentIdMappings?: IdMappings;
}

/** One driver, opened in a home of its own for one test. */
export interface Harness {
  readonly name: DriverName;
  /** a scratch directory on the same filesystem, outside the driver's home (tars, source trees) */
  readonly scratch: string;
  /** what status() should say the backing filesystem is */
  readonly backingFs: string;
  /** the driver's home, to look for mounts left below it */
  readonly home: string;
  create(id: string, parent?: string, opts?: { idMappings?: IdMappings }): Promise<void>;
  createFromTemplate(id: string, template: string): Promise<void>;
  remove(id: string): Promise<void>;
  exists(id: string): Promise<boolean>;
  mount(id: string): Promise<string>;
  unmount(id: string): Promise<void>;
  /** Diff of id against parent written to the file `tarPath` */
  diffTo(id: string, parent: string | undefined, tarPath: string, opts?: DiffOpts): Promise<void>;
  /** ApplyDiff of the tar file onto id */
  applyFrom(id: string, parent: string | undefined, tarPath: string, opts?: { idMappings?: IdMappings }): Promise<ApplyDiffResult>;
  changes(id: string, parent: string | undefined, opts?: DiffOpts): Promise<Change[]>;
  diffSize(id: string, parent: string | undefined, opts?: DiffOpts): Promise<number>;
  updateIdMappings(id: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<void>;
  /** the layers whose files stand on id (none for a driver without the notion) */
  dependents(id: string): Promise<string[]>;
  status(): Promise<Array<[string, string]>>;
  cleanup(): Promise<void>;
}

async function withFd<T>(file: string, flags: string, fn: (fd: number) => Promise<T>): Promise<T> {
  const fd = fs.openSync(file, flags);
  try {
    return await fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function wrap(d: Driver, name: DriverName, scratch: string, backingFs: string): Harness {
  return {
    name,
    scratch,
    backingFs,
    home: d.home,
    create: (id, parent, opts) => d.create(id, parent, { idMappings: opts?.idMappings }),
    createFromTemplate: (id, template) => d.createFromTemplate(id, template),
    remove: (id) => d.remove(id),
    exists: (id) => d.exists(id),
    mount: (id) => d.mount(id),
    unmount: (id) => d.unmount(id),
    diffTo: (id, parent, tarPath, opts) => withFd(tarPath, 'w', (fd) => d.diff(id, parent, fd, opts)),
    applyFrom: (id, parent, tarPath, opts) => withFd(tarPath, 'r', (fd) => d.applyDiff(id, parent, fd, opts)),
    changes: (id, parent, opts) => d.changes(id, parent, opts),
    diffSize: (id, parent, opts) => d.diffSize(id, parent, opts),
    updateIdMappings: (id, from, to) => d.updateIdMappings(id, from, to),
    dependents: async (id) => (d.dependents ? d.dependents(id) : []),
    status: () => d.status(),
    cleanup: () => d.cleanup(),
  };
}

/**
 * Register, for the calling test file, one backing filesystem for `name` (made in a before hook,
 * removed in after.always with every mount the tests left, pass or fail), and return a function
 * that gives each test a driver in a home of its own on it, so tests of one file can run at once.
 * Making a loop filesystem costs seconds: one per file, not per test.
 */
export function driverHarness(name: DriverName): (t: ExecutionContext) => Harness {
  // loopFs/tempDir release what they made through the teardown of the context they get; here
  // that is the file's lifetime, run by after.always (a before hook's own teardowns run when the
  // hook ends)
  const releases: Array<() => unknown> = [];
  const fileScope = { teardown: (fn: () => unknown) => void releases.push(fn) } as unknown as ExecutionContext;
  let base = '';
  let n = 0;
  test.before(() => {
    base = dirOn(fileScope, BACKING[name].kind, 1 << 30);
  });
  test.after.always(async () => {
    for (const release of releases.reverse()) await release();
  });
  return (t) => {
    const dir = path.join(base, `t${n++}`);
    const scratch = path.join(dir, 'scratch');
    fs.mkdirSync(scratch, { recursive: true });
    const d = openDriver(name, path.join(dir, 'root'), path.join(dir, 'run'), []);
    // whatever the test left mounted goes before the filesystem does
    t.teardown(() => d.cleanup());
    const statusName = BACKING[name].statusName || fsName(scratch);
    return wrap(d, name, scratch, statusName);
  };
}

/**
 * The peer's name of the filesystem a directory is on, for the drivers that run anywhere: a table
 * of its own, not drivers/naive/backing-fs.ts, since it is what that code is checked against.
 */
function fsName(dir: string): string {
  const type = fs.statfsSync(dir).type;
  const names: Record<number, string> = { 0xef53: 'extfs', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x01021994: 'tmpfs' };
  return names[type] ?? `0x${type.toString(16)}`;
}
