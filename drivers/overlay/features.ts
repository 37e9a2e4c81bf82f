// Kernel feature probes of the overlay driver, cached as containers/storage caches them
// (drivers/overlay/overlay.go cachedFeatureCheck/cachedFeatureRecord): one file per answer in the
// driver's run home (<runroot>/overlay), named '<feature>-true' or '<feature>-false' and holding
// an explanation when there is one. The run root is gone after a reboot, when the kernel may be
// another, so the probe runs once per boot (or once per driver without a run root).
import fs from 'node:fs';
import path from 'node:path';

import { cleanupFailed, errorCode, wrapError } from '../../lib/errors.ts';
import { mountIdmapped, type IdMappings } from '../../lib/idmap.ts';
import { native } from '../../lib/native.ts';
import { OVERLAY_METACOPY_XATTR } from '../../lib/tar/whiteout.ts';

/**
 * The peer names the metacopy probe after the mount options it tried (`metacopy(<mountopt>)`); this
 * driver always tries `metacopy=on`, which is the name the peer gives the same probe when it is
 * configured with `overlay.mountopt = "metacopy=on"`, so a shared run root holds one answer for both.
 */
export const METACOPY_FEATURE = 'metacopy(metacopy=on)';

function featureFile(runHome: string, feature: string, supported: boolean): string {
  return path.join(runHome, `${feature}-${supported}`);
}

/** The cached answer for feature, if a probe has run since the run root was made. */
export function cachedFeatureCheck(runHome: string, feature: string): { supported: boolean; text: string } | undefined {
  for (const supported of [true, false]) {
    try {
      return { supported, text: fs.readFileSync(featureFile(runHome, feature, supported), 'utf8') };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return undefined;
}

export function cachedFeatureRecord(runHome: string, feature: string, supported: boolean, text = ''): void {
  fs.mkdirSync(runHome, { recursive: true, mode: 0o700 });
  fs.writeFileSync(featureFile(runHome, feature, supported), text);
}

/** A probe's temp dir is named after its process, so that another process can tell a dead one's. */
const PROBE_PREFIX = 'metacopy-check-';
/** The idmapped-lowers probe's temp dirs, cleaned up the same way. */
const IDMAP_PROBE_PREFIX = 'idmapped-lower-dir-check-';

/**
 * Remove the temp dirs of probes whose process died mid-way (killed between mkdtemp and rm):
 * their merged mount, if it is still there, is detached first. A live process's probe is left.
 */
function removeDeadProbes(home: string): void {
  for (const name of fs.readdirSync(home)) {
    const pid = Number(new RegExp(`^(?:${PROBE_PREFIX}|${IDMAP_PROBE_PREFIX})(\\d+)-`).exec(name)?.[1]);
    if (!pid || processAlive(pid)) continue;
    const dir = path.join(home, name);
    for (const m of ['merged', 'mapped'])
      try {
        native().umount2(path.join(dir, m), native().mountFlags.MNT_DETACH);
      } catch (err) {
        // not mounted (EINVAL) or already gone (ENOENT): nothing to detach
        const code = errorCode(err);
        if (code !== 'EINVAL' && code !== 'ENOENT') cleanupFailed(`detaching the dead probe ${dir}/${m}`, err);
      }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Whether overlayfs copies up metadata only on this kernel and this filesystem, found as the peer
 * finds it (check.go doesMetacopy): in a temp dir under the driver's home (the filesystem the
 * uppers live on), mount a one-file lower with `metacopy=on`, chmod the file through the mount,
 * and look for trusted.overlay.metacopy on the upper copy. EINVAL from mount(2) (a kernel without
 * the option) and ENOTSUP from the xattr read mean no; other failures are errors.
 */
export async function probeMetacopy(home: string): Promise<boolean> {
  removeDeadProbes(home);
  const td = fs.mkdtempSync(path.join(home, `${PROBE_PREFIX}${process.pid}-`));
  try {
    for (const d of ['l1', 'l2', 'work', 'merged']) fs.mkdirSync(path.join(td, d), { mode: 0o755 });
    fs.writeFileSync(path.join(td, 'l1', 'f'), Buffer.from([0xff]), { mode: 0o700 });
    const merged = path.join(td, 'merged');
    try {
      native().mount('overlay', merged, 'overlay', 0, `lowerdir=${td}/l1,upperdir=${td}/l2,workdir=${td}/work,metacopy=on`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
      throw wrapError(`overlay: mounting the metacopy check in ${td}`, err);
    }
    try {
      fs.chmodSync(path.join(merged, 'f'), 0o600);
      try {
        return native().lgetxattr(path.join(td, 'l2', 'f'), OVERLAY_METACOPY_XATTR) !== undefined;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOTSUP') return false;
        throw err;
      }
    } finally {
      native().umount2(merged, native().mountFlags.MNT_DETACH);
    }
  } finally {
    fs.rmSync(td, { recursive: true, force: true });
  }
}

/** The metacopy answer: cached under runHome when there is one, else probed (every call). */
export async function metacopySupport(home: string, runHome: string | undefined): Promise<boolean> {
  if (runHome) {
    const cached = cachedFeatureCheck(runHome, METACOPY_FEATURE);
    if (cached) return cached.supported;
  }
  const supported = await probeMetacopy(home);
  if (runHome) cachedFeatureRecord(runHome, METACOPY_FEATURE, supported);
  return supported;
}

/** The peer's name for its probe of idmapped lowers (overlay.go checkAndRecordIDMappedSupport). */
export const IDMAPPED_LOWER_FEATURE = 'idmapped-lower-dir';

/** A mapping for the probes: container 0 is host 1, so an owner that shows shifted proves the mapping. */
const PROBE_MAPPINGS: IdMappings = { uidmap: [{ container_id: 0, host_id: 1, size: 1 }], gidmap: [{ container_id: 0, host_id: 1, size: 1 }] };

/**
 * Whether overlayfs takes an idmapped lower on this kernel and this filesystem, found as the peer
 * finds it: in a temp dir under the home, an idmapped mount of a one-file lower, an overlay on it
 * with a plain upper, and the file's owner seen through the overlay. Failure of any step is a no
 * with its error as the explanation.
 */
export async function probeIdmappedLowers(home: string): Promise<{ supported: boolean; why: string }> {
  removeDeadProbes(home);
  const td = fs.mkdtempSync(path.join(home, `${IDMAP_PROBE_PREFIX}${process.pid}-`));
  try {
    for (const d of ['lower', 'mapped', 'upper', 'work', 'merged']) fs.mkdirSync(path.join(td, d), { mode: 0o755 });
    fs.writeFileSync(path.join(td, 'lower', 'f'), '');
    const detach = (d: string) => native().umount2(path.join(td, d), native().mountFlags.MNT_DETACH);
    try {
      mountIdmapped(path.join(td, 'lower'), path.join(td, 'mapped'), PROBE_MAPPINGS);
    } catch (err) {
      return { supported: false, why: `an idmapped mount of ${home} failed: ${(err as Error).message}` };
    }
    try {
      native().mount('overlay', path.join(td, 'merged'), 'overlay', 0, `lowerdir=${td}/mapped,upperdir=${td}/upper,workdir=${td}/work`);
    } catch (err) {
      return { supported: false, why: `overlay on an idmapped lower failed: ${(err as Error).message}` };
    } finally {
      detach('mapped');
    }
    try {
      const uid = fs.statSync(path.join(td, 'merged', 'f')).uid;
      if (uid !== 1) return { supported: false, why: `a file of an idmapped lower shows uid ${uid}, not the mapped 1` };
      return { supported: true, why: 'idmapped lowers probed' };
    } finally {
      detach('merged');
    }
  } finally {
    fs.rmSync(td, { recursive: true, force: true });
  }
}

/** The idmapped-lowers answer: cached under runHome when there is one (the text is the reason), else probed. */
export async function idmappedLowersSupport(home: string, runHome: string | undefined): Promise<{ supported: boolean; why: string }> {
  const cached = runHome ? cachedFeatureCheck(runHome, IDMAPPED_LOWER_FEATURE) : undefined;
  if (cached) return { supported: cached.supported, why: cached.text };
  const answer = await probeIdmappedLowers(home);
  if (runHome) cachedFeatureRecord(runHome, IDMAPPED_LOWER_FEATURE, answer.supported, answer.why);
  return answer;
}
