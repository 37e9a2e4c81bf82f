// Graph drivers by name. Each lives in <root>/<name>.
import path from 'node:path';
import { LayersError } from '../lib/errors.ts';
import type { Driver } from './driver.ts';
import { BtrfsDriver } from './btrfs/index.ts';
import { OverlayDriver } from './overlay/index.ts';
import { VfsDriver } from './vfs/index.ts';

export const driverNames = ['vfs', 'overlay', 'btrfs'] as const;
export type DriverName = (typeof driverNames)[number];

/**
 * The driver `name` with its home under root; runroot (when given) holds what the driver keeps
 * only until reboot (overlay: the cached answers of its kernel feature probes). options: the
 * global --storage-opt list ('overlay.mountopt=nodev', ...), which the driver parses (options.ts)
 * and refuses, naming the key, when it does not take one, before it makes anything on disk.
 */
export function openDriver(name: string, root: string, runroot: string | undefined, options: readonly string[]): Driver {
  switch (name) {
    case 'vfs':
      return new VfsDriver(path.join(root, 'vfs'), options, runroot && path.join(runroot, 'vfs'));
    case 'overlay':
      return new OverlayDriver(path.join(root, 'overlay'), runroot && path.join(runroot, 'overlay'), options);
    case 'btrfs':
      return new BtrfsDriver(path.join(root, 'btrfs'), options, runroot && path.join(runroot, 'btrfs'));
    default:
      throw new LayersError('EDRIVER', `unknown storage driver "${name}" (known: ${driverNames.join(', ')})`);
  }
}
