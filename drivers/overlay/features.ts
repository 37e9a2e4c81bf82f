// Kernel feature probes of the overlay driver, cached as containers/storage caches them
// (drivers/overlay/overlay.go cachedFeatureCheck/cachedFeatureRecord): one file per answer in the
// driver's run home (<runroot>/overlay), named '<feature>-true' or '<feature>-false' and holding
// an explanation when there is one. The run root is gone after a reboot, when the kernel may be
// another, so the probe runs once per boot (or once per driver without a run root).
import fs from 'node:fs';
import path from 'node:path';

import { cleanupFailed, errorCode, wrapError } from '../../lib/errors.ts';
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

/**
 * Remove the temp dirs of probes whose process died mid-way (killed between mkdtemp and rm):
 * their merged mount, if it is still there, is detached first. A live process's probe is left.
 */
function removeDeadProbes(home: string): void {
  for (const name of fs.readdirSync(home)) {
    const pid = Number(new RegExp(`^${PROBE_PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (!pid || processAlive(pid)) continue;
    const dir = path.join(home, name);
    try {
      native().umount2(path.join(dir, 'merged'), native().mountFlags.MNT_DETACH);
    } catch (err) {
      // not mounted (EINVAL) or already gone (ENOENT): nothing to detach
      const code = errorCode(err);
      if (code !== 'EINVAL' && code !== 'ENOENT') cleanupFailed(`detaching the dead metacopy probe ${dir}/merged`, err);
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
