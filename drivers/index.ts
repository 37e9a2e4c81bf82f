// Graph drivers by name. Each lives in <root>/<name>; btrfs is still to come.
import path from 'node:path';
import { LayersError } from '../lib/errors.ts';
import type { Driver } from './driver.ts';
import { OverlayDriver } from './overlay/index.ts';
import { VfsDriver } from './vfs/index.ts';

export const driverNames = ['vfs', 'overlay'] as const;
export type DriverName = (typeof driverNames)[number];

/** The driver `name` with its home under root. */
export function openDriver(name: string, root: string): Driver {
  switch (name) {
    case 'vfs':
      return new VfsDriver(path.join(root, 'vfs'));
    case 'overlay':
      return new OverlayDriver(path.join(root, 'overlay'));
    case 'btrfs':
      throw new LayersError('EDRIVER', `driver "${name}" is not available yet; use --storage-driver vfs`);
    default:
      throw new LayersError('EDRIVER', `unknown storage driver "${name}" (known: ${driverNames.join(', ')})`);
  }
}
