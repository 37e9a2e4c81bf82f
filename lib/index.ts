// The public API a container runtime embeds. Everything the `layers` CLI does goes through here.
//
//   import { openStore } from 'layers';
//   const store = await openStore({ root: '/var/lib/containers/storage', runroot: '/run/containers/storage', driver: 'vfs' });
//   const layer = await store.createLayer({ names: ['base'] }, '/tmp/rootfs.tar');
//   const dir = await store.mount(layer.id);
import { Store, type StoreOptions } from './store/store.ts';
import { VIEWS, type Container, type Image, type Layer } from './store/records.ts';
import type { Found as FoundRecord } from './store/context.ts';

export { Store } from './store/store.ts';
export { imageDigests } from './store/records.ts';
export type {
  StoreOptions,
  CreateLayerOptions,
  CreateImageOptions,
  CreateContainerOptions,
  CreateFromTemplateOptions,
  RemoveImageOptions,
  RemoveImageResult,
  DataOwnerKind,
  CopySpec,
  BigDataItem,
  DiffInput,
  DiffOptions,
  ImportOptions,
  LongOperation,
  Progress,
  PlanLayer,
  RechunkOptions,
  RechunkPlan,
  RechunkResult,
} from './store/store.ts';
export type { LayerRecord, ImageRecord, ContainerRecord, Layer, Image, Container, RecordFace } from './store/records.ts';
/** What `Store.resolve` finds: its kind, and its view */
export type Found = FoundRecord<Layer, Image, Container>;
export { toLayer, toImage, toContainer } from './store/records.ts';
export { Compression } from './store/records.ts';
export type { MountRecord } from './store/mounts.ts';
export {
  LayersError,
  isLayersError,
  errorCode,
  wrapError,
  setDebugOutput,
  type ErrorCode,
  type StoreErrorCode,
  type TarErrorCode,
  type SystemErrorCode,
} from './errors.ts';
export { TarError } from './tar/errors.ts';
export { NativeError, AddonMissingError } from './native.ts';
export type { IdMap, IdMappings } from './idmap.ts';
export { parseIdMap } from './idmap.ts';
export type { Change, ChangeKind, MountOptions } from '../drivers/driver.ts';

/** containers-storage's default places */
import { DEFAULT_GRAPHROOT as defaultRoot, DEFAULT_RUNROOT as defaultRunroot } from './config.ts';
export { defaultRoot, defaultRunroot };

/**
 * Open (creating if needed) the store at root/runroot. Incomplete layers a dead writer left are
 * removed. Its records come out as camelCase views (Layer, Image, Container; docs/api.md, "Records").
 */
export function openStore(opts: Partial<StoreOptions> = {}): Promise<Store> {
  return Store.open({ root: opts.root ?? defaultRoot, runroot: opts.runroot ?? defaultRunroot, driver: opts.driver, storageOpts: opts.storageOpts }, VIEWS);
}
