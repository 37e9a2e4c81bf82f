// The one error class of the store and the CLI. `code` is stable (callers and the CLI branch on
// it); the message names the layer or file concerned and says why.

export type ErrorCode =
  /** no layer has this id, name or id prefix */
  | 'ELAYERUNKNOWN'
  /** the layer is mounted, or used by an image or a container */
  | 'ELAYERINUSE'
  /** no image has this id, name or id prefix */
  | 'EIMAGEUNKNOWN'
  /** no container has this id, name or id prefix */
  | 'ECONTAINERUNKNOWN'
  /** the layer, image or container has no data item of this name */
  | 'EBIGDATAUNKNOWN'
  /** the image is used by containers */
  | 'EIMAGEINUSE'
  /** a layer, image or container id is taken */
  | 'EIDINUSE'
  /** the layer has child layers */
  | 'ELAYERHASCHILDREN'
  /** the layer is not mounted, and what was asked needs its mount point */
  | 'ENOTMOUNTED'
  /** no longer raised: a taken layer id is EIDINUSE, as for images and containers */
  | 'ELAYEREXISTS'
  /** a name is taken by another record of the same kind */
  | 'ENAMEINUSE'
  /** bad arguments: unknown command or flag, missing argument, bad value */
  | 'EUSAGE'
  /** the layer input cannot be opened or read */
  | 'EINPUT'
  /** the layer input is compressed in a format we cannot read */
  | 'ECOMPRESSION'
  /** no such graph driver, or the driver cannot work here */
  | 'EDRIVER'
  /** the store-wide lock could not be taken, or was lost while held */
  | 'ELOCK';

export class LayersError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LayersError';
    this.code = code;
  }
}

export function isLayersError(err: unknown, code?: ErrorCode): err is LayersError {
  return err instanceof LayersError && (code === undefined || err.code === code);
}
