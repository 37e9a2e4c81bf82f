// The public API a container runtime embeds. Everything the `layers` CLI does goes through here.
//
//   import { openStore } from 'layers';
//   const store = await openStore({ root: '/var/lib/containers/storage', runroot: '/run/containers/storage', driver: 'vfs' });
//   const layer = await store.createLayer({ names: ['base'] }, '/tmp/rootfs.tar');
//   const dir = await store.mount(layer.id);
import { Store, type StoreOptions } from './store/store.ts';

export { Store } from './store/store.ts';
export { imageDigests } from './store/images.ts';
export type {
  StoreOptions,
  CreateLayerOptions,
  CreateImageOptions,
  CreateContainerOptions,
  CreateFromTemplateOptions,
  RemoveImageOptions,
  RemoveImageResult,
  Found,
  DataOwnerKind,
  CopySpec,
  BigDataItem,
  DiffInput,
  DiffOptions,
} from './store/store.ts';
export type { LayerRecord, ImageRecord, ContainerRecord } from './store/records.ts';
export { Compression } from './store/records.ts';
export type { MountRecord } from './store/mounts.ts';
export { LayersError, isLayersError, type ErrorCode } from './errors.ts';
export type { IdMap, IdMappings } from './idmap.ts';
export { parseIdMap } from './idmap.ts';
export type { Change, ChangeKind, MountOptions } from '../drivers/driver.ts';

/** containers-storage's default places */
export const defaultRoot = '/var/lib/containers/storage';
export const defaultRunroot = '/run/containers/storage';

/** Open (creating if needed) the store at root/runroot. Incomplete layers a dead writer left are removed. */
export function openStore(opts: Partial<StoreOptions> = {}): Promise<Store> {
  return Store.open({ root: opts.root ?? defaultRoot, runroot: opts.runroot ?? defaultRunroot, driver: opts.driver, storageOpts: opts.storageOpts });
}
