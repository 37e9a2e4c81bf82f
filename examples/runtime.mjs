// A container runtime's use of `layers` (docs/api.md, "A complete example"): open a store,
// stream a layer blob in from an HTTP response body (checked against the digest the manifest
// gave), make an image and a container with a user-namespace mapping, mount it, write a file,
// stream the container's changes out as a tar, and clean up.
//
//   node examples/runtime.mjs ROOT RUNROOT LAYER.tar.gz sha256:<digest of LAYER.tar.gz> OUT.tar
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openStore } from 'layers';

const [root, runroot, blob, blobDigest, outTar] = process.argv.slice(2);

// a stand-in for a registry: serves the blob over HTTP
const registry = http.createServer((req, res) => {
  res.setHeader('content-length', fs.statSync(blob).size);
  fs.createReadStream(blob).pipe(res);
});
await new Promise((listening) => registry.listen(0, '127.0.0.1', listening));

const store = await openStore({ root, runroot, driver: 'vfs' });
try {
  // "do I have this blob already?"
  let [layer] = await store.layersByCompressedDigest(blobDigest);
  if (!layer) {
    const res = await fetch(`http://127.0.0.1:${registry.address().port}/blob`);
    let shown = 0;
    layer = await store.createLayer(
      {
        names: ['example-base'],
        compressedDigest: blobDigest, // a blob that is not what the manifest says leaves no layer
        size: Number(res.headers.get('content-length')),
        signal: AbortSignal.timeout(60_000),
        onProgress: ({ bytes, totalBytes }) => {
          if (bytes === totalBytes && shown++ === 0) console.error(`pulled ${bytes} bytes`);
        },
      },
      res.body, // a web ReadableStream is an AsyncIterable<Uint8Array>
    );
  }
  const image = await store.createImage({ layer: layer.id, names: ['example:latest'] });

  // the container's root is owned by host uid/gid 100000 (container 0): a mapped copy of the top layer
  const mapping = [{ container_id: 0, host_id: 100000, size: 65536 }];
  const container = await store.createContainer({ image: image.id, names: ['example'], uidmap: mapping, gidmap: mapping });
  const rootfs = await store.mount(container.id);
  fs.writeFileSync(path.join(rootfs, 'hello'), 'from the container\n');
  fs.chownSync(path.join(rootfs, 'hello'), 100000 + 1000, 100000 + 1000);
  const rootOwner = fs.statSync(rootfs).uid;
  await store.unmount(container.id);

  // the container's changes, as a tar stream (to a file here; an HTTP upload would do the same)
  await pipeline(store.diffStream(container.layerId), fs.createWriteStream(outTar));

  console.log(JSON.stringify({ layer: layer.id, diffDigest: layer.uncompressedDigest, image: image.id, container: container.id, rootOwner }));
  await store.deleteContainer(container.id);
  await store.removeImage(image.id);
} finally {
  await store.close();
  registry.close();
}
