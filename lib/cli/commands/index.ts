// Every command of `layers`, in the order `layers --help` lists them. Each lives in the file of
// its area, as the peer's cmd/containers-storage/ keeps one file per area; a new command is a
// `Command` (../command.ts) declared there and listed here.
import type { Command } from '../command.ts';
import * as containers from './containers.ts';
import * as copy from './copy.ts';
import * as data from './data.ts';
import * as deletion from './delete.ts';
import * as diff from './diff.ts';
import * as exists from './exists.ts';
import * as images from './images.ts';
import * as layers from './layers.ts';
import * as metadata from './metadata.ts';
import * as mount from './mount.ts';
import * as names from './names.ts';
import * as owners from './owners.ts';
import * as rechunk from './rechunk.ts';
import * as sections from './sections.ts';
import * as store from './store.ts';

export const commands: Command[] = [
  layers.createLayer,
  layers.importLayer,
  diff.applyDiff,
  diff.diff,
  diff.changes,
  diff.diffSize,
  mount.mount,
  mount.unmount,
  mount.mounted,
  copy.copy,
  layers.layers,
  layers.layer,
  owners.layerParentOwners,
  ...data.layerData,
  layers.deleteLayer,
  deletion.deleteAny,
  exists.exists,
  store.status,
  store.wipe,
  store.shutdown,
  store.version,
  metadata.metadata,
  metadata.setMetadata,
  names.getNames,
  names.addNames,
  names.setNames,
  images.createImage,
  images.images,
  images.imagesByDigest,
  images.image,
  images.deleteImage,
  images.rm,
  images.prune,
  rechunk.rechunk,
  ...data.imageData,
  containers.createContainer,
  containers.containers,
  containers.container,
  containers.deleteContainer,
  containers.containerDir,
  containers.containerRunDir,
  ...data.containerData,
  owners.containerParentOwners,
  layers.createFromTemplate,
  sections.tar,
  sections.untar,
];
