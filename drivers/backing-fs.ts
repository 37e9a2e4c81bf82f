// Which filesystem a driver's home is on: the statfs magic numbers the drivers check, and the
// name containers/storage prints as "Backing Filesystem". Free of the native addon.
import fs from 'node:fs';

export const FS_MAGIC = {
  btrfs: 0x9123683e,
  xfs: 0x58465342,
  extfs: 0xef53,
  tmpfs: 0x01021994,
  overlayfs: 0x794c7630,
  nfs: 0x6969,
  zfs: 0x2fc12fc1,
} as const;

const NAMES = new Map<number, string>(Object.entries(FS_MAGIC).map(([name, magic]) => [magic, name]));

/** statfs type of the filesystem holding path */
export function fsType(p: string): number {
  return fs.statfsSync(p).type;
}

/** the peer's name for the filesystem holding path ('extfs', 'btrfs', ...), or its magic in hex */
export function backingFs(p: string): string {
  const type = fsType(p);
  return NAMES.get(type) ?? `0x${type.toString(16)}`;
}
