// skopeo reads an image `layers` made (issue 12; docs/tar-engine.md, "Compression"): an OCI
// layout built here (plain tar, gzip and zstd layer blobs), its layers imported with
// `layers import-layer`, the image made with `create-image` and the manifest and config stored as
// big data items under the keys containers/image's storage destination uses; then
// `skopeo copy containers-storage:[DRIVER@ROOT+RUNROOT]img oci:OUT:img` on every driver gives
// back the config blob and every layer's content with the original digests.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { gnuTar } from '../fixtures/store.ts';
import { DRIVERS, driverStore, imageTars, type DriverStore } from './fixtures.ts';

const haveSkopeo = (() => {
  try {
    execFileSync('skopeo', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const sha256 = (data: Buffer) => 'sha256:' + createHash('sha256').update(data).digest('hex');

interface Blob {
  mediaType: string;
  digest: string;
  size: number;
}

interface OciImage {
  dir: string;
  /** the layer blobs in manifest order, and each one's uncompressed tar */
  layers: Array<{ blob: string; digest: string; diffId: string; compression: 'none' | 'gzip' | 'zstd' }>;
  config: Buffer;
  manifest: Buffer;
}

/** An OCI image layout (image-spec's image-layout.md) with one image tagged `tag`: three layers, the first a plain tar, then gzip, then zstd. */
function ociLayout(dir: string, tars: string[], tag: string): OciImage {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const putBlob = (data: Buffer, mediaType: string): Blob & { file: string } => {
    const digest = sha256(data);
    const file = path.join(blobs, digest.slice(7));
    fs.writeFileSync(file, data);
    return { mediaType, digest, size: data.length, file };
  };
  const kinds = ['none', 'gzip', 'zstd'] as const;
  const layers = tars.map((tar, i) => {
    const compression = kinds[i];
    const plain = fs.readFileSync(tar);
    const data = compression === 'none' ? plain : execFileSync(compression, ['-c', '-q', tar], { maxBuffer: 1 << 26 });
    const type = 'application/vnd.oci.image.layer.v1.tar' + (compression === 'none' ? '' : `+${compression}`);
    const b = putBlob(data, type);
    return { descriptor: { mediaType: b.mediaType, digest: b.digest, size: b.size }, blob: b.file, digest: b.digest, diffId: sha256(plain), compression };
  });
  const config = Buffer.from(
    JSON.stringify({
      created: '2026-12-03T00:00:00Z',
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/tool'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: '2026-12-03T00:00:00Z', created_by: `layer ${i}` })),
    }),
  );
  const configBlob = putBlob(config, 'application/vnd.oci.image.config.v1+json');
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: configBlob.mediaType, digest: configBlob.digest, size: configBlob.size },
      layers: layers.map((l) => l.descriptor),
    }),
  );
  const manifestBlob = putBlob(manifest, 'application/vnd.oci.image.manifest.v1+json');
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: manifestBlob.mediaType, digest: manifestBlob.digest, size: manifestBlob.size, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
  return { dir, layers: layers.map(({ blob, digest, diffId, compression }) => ({ blob, digest, diffId, compression })), config, manifest };
}

async function ok(t: ExecutionContext, s: DriverStore, args: string[]): Promise<string> {
  const r = await s.cli(args);
  t.is(r.code, 0, `layers ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Store the OCI image as containers/image's storage destination does (storage/storage_dest.go,
 * Commit): each layer on the one before; the image's id is the config's digest (hex), its name
 * the normalized reference; the config under its digest as key, the manifest under
 * `manifest-<digest>` and under `manifest` (storage.ImageDigestBigDataKey).
 */
async function storeImage(t: ExecutionContext, s: DriverStore, img: OciImage, name: string): Promise<string> {
  let parent: string[] = [];
  for (const l of img.layers) {
    const id = (await ok(t, s, ['import-layer', '-f', l.blob, ...parent])).split('\n')[0];
    parent = [id];
  }
  const configDigest = sha256(img.config);
  const manifestDigest = sha256(img.manifest);
  const imageId = configDigest.slice(7);
  t.is((await ok(t, s, ['create-image', '-i', imageId, '-n', name, '--digest', manifestDigest, parent[0]])).split('\n')[0], imageId);
  const put = async (key: string, data: Buffer) => {
    const file = path.join(s.dir, 'item');
    fs.writeFileSync(file, data);
    await ok(t, s, ['set-image-data', '-f', file, imageId, key]);
  };
  await put(configDigest, img.config);
  await put(`manifest-${manifestDigest}`, img.manifest);
  await put('manifest', img.manifest);
  return imageId;
}

/** Blobs of the image tagged `tag` in an OCI layout: the config and the layers, with their digests checked against their bytes. */
function readLayout(t: ExecutionContext, dir: string, tag: string): { config: Buffer; layers: Array<{ mediaType: string; data: Buffer }> } {
  const blob = (d: Blob) => {
    const data = fs.readFileSync(path.join(dir, 'blobs', ...d.digest.split(':')));
    t.is(sha256(data), d.digest, `blob ${d.digest} holds other bytes`);
    t.is(data.length, d.size);
    return data;
  };
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
  const entry = index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  const manifest = JSON.parse(blob(entry).toString('utf8'));
  return { config: blob(manifest.config), layers: manifest.layers.map((l: Blob) => ({ mediaType: l.mediaType, data: blob(l) })) };
}

function decompress(mediaType: string, data: Buffer): Buffer {
  if (mediaType.endsWith('+gzip')) return execFileSync('gzip', ['-dc'], { input: data, maxBuffer: 1 << 26 });
  if (mediaType.endsWith('+zstd')) return execFileSync('zstd', ['-dc', '-q'], { input: data, maxBuffer: 1 << 26 });
  return data;
}

for (const driver of DRIVERS) {
  test(`skopeo copy containers-storage:[${driver}@…]img oci:OUT of layers imported plain, gzip and zstd`, async (t) => {
    if (!haveSkopeo) return t.fail('skopeo is not installed (hack/setup.sh installs it)');
    const s = driverStore(t, driver);
    const work = path.join(s.dir, 'work');
    fs.mkdirSync(work);
    const tars = imageTars(work);
    // a body big enough that the compressions differ from the tar
    fs.writeFileSync(path.join(work, 'tree-top', 'text'), 'a line of text\n'.repeat(20_000));
    gnuTar(path.join(work, 'tree-top'), tars[2]);
    const img = ociLayout(path.join(work, 'oci'), tars, 'img');
    const imageId = await storeImage(t, s, img, 'docker.io/library/img:latest');

    // what we recorded for each layer, in the peer's field names, is what skopeo reads back
    const layers = JSON.parse((await ok(t, s, ['layers', '--json'])).trim() || '[]') as Array<Record<string, unknown>>;
    for (const [i, l] of img.layers.entries()) {
      const rec = layers.find((r) => r['diff-digest'] === l.diffId);
      t.is(rec?.['compressed-diff-digest'], l.digest, `layer ${i}`);
      // 0 (none) is left out, as the peer's omitempty does
      t.is(rec?.compression ?? 0, { none: 0, gzip: 2, zstd: 4 }[l.compression], `layer ${i}`);
    }

    const ref = `containers-storage:[${driver}@${s.root}+${s.runroot}]img`;
    const skopeo = (args: string[]) => execFileSync('skopeo', ['--insecure-policy', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    // the layers as the store holds them: uncompressed, each blob the original's content digest
    const plainOut = path.join(work, 'out-plain');
    skopeo(['copy', '--dest-oci-accept-uncompressed-layers', ref, `oci:${plainOut}:img`]);
    const plain = readLayout(t, plainOut, 'img');
    t.is(sha256(plain.config), `sha256:${imageId}`);
    t.deepEqual(plain.config, img.config);
    t.deepEqual(
      plain.layers.map((l) => sha256(l.data)),
      img.layers.map((l) => l.diffId),
    );
    // the plain-tar layer is the original blob itself
    t.deepEqual(plain.layers[0].data, fs.readFileSync(img.layers[0].blob));
    // skopeo's default for oci: layers compressed again (gzip); their content is the originals'
    const gzOut = path.join(work, 'out-gzip');
    skopeo(['copy', ref, `oci:${gzOut}:img`]);
    const gz = readLayout(t, gzOut, 'img');
    t.deepEqual(gz.config, img.config);
    t.deepEqual(
      gz.layers.map((l) => sha256(decompress(l.mediaType, l.data))),
      img.layers.map((l) => l.diffId),
    );
    // and zstd on request
    const zstdOut = path.join(work, 'out-zstd');
    skopeo(['copy', '--dest-compress-format', 'zstd', ref, `oci:${zstdOut}:img`]);
    const zs = readLayout(t, zstdOut, 'img');
    t.true(zs.layers.every((l) => l.mediaType.endsWith('+zstd')));
    t.deepEqual(
      zs.layers.map((l) => sha256(decompress(l.mediaType, l.data))),
      img.layers.map((l) => l.diffId),
    );
    // skopeo inspect reads the image's manifest and config from the store
    const inspect = JSON.parse(skopeo(['inspect', ref]));
    t.deepEqual(inspect.Layers, img.layers.map((l) => l.digest));
  });
}
