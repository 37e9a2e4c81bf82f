// podman (Debian's 4.3, with runc) on a store `layers` populated (docs/sharing.md, "podman"): the
// image is made as containers/image's storage destination makes one (config and manifests as
// image big data under its keys), podman lists it, runs a container that prints a file of its
// top layer, and after `layers rm` of the image neither tool finds anything left.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loopFs } from '../fixtures/fs.ts';
import { gnuTar, runCli } from '../fixtures/store.ts';

const sha256 = (data: Buffer | string) => 'sha256:' + createHash('sha256').update(data).digest('hex');

/** /bin/cat and the shared objects ldd says it loads, at their own paths under root. */
function copyCat(root: string): void {
  const libs = [...execFileSync('ldd', ['/bin/cat'], { encoding: 'utf8' }).matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
  for (const file of ['/bin/cat', ...libs]) {
    const to = path.join(root, file);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(fs.realpathSync(file), to);
    fs.chmodSync(to, 0o755);
  }
}

test('podman lists and runs an image whose layers layers imported; layers rm leaves nothing behind', async (t) => {
  const base = loopFs(t, 'ext4', 256 << 20);
  const graph = path.join(base, 'root');
  const run = path.join(base, 'run');
  const store = ['-g', graph, '-R', run, '-s', 'overlay'];
  const ok = async (args: string[]) => {
    const r = await runCli([...store, ...args]);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  // podman on the same store, with nothing that needs a network, systemd or the host's containers
  const podmanArgs = [
    '--root', graph, '--runroot', run, '--storage-driver', 'overlay', '--cgroup-manager', 'cgroupfs', '--runtime', 'runc',
    '--events-backend', 'file', '--tmpdir', path.join(base, 'podman-tmp'),
  ];
  const env = { ...process.env, CONTAINERS_CONF: path.join(base, 'containers.conf'), CONTAINERS_STORAGE_CONF: path.join(base, 'storage.conf') };
  fs.writeFileSync(env.CONTAINERS_CONF, '[engine]\nevents_logger = "file"\n');
  fs.writeFileSync(env.CONTAINERS_STORAGE_CONF, `[storage]\ndriver = "overlay"\ngraphroot = "${graph}"\nrunroot = "${run}"\n`);
  const podman = (args: string[]) => spawnSync('podman', [...podmanArgs, ...args], { encoding: 'utf8', env, timeout: 60_000 });
  t.teardown(() => podman(['system', 'reset', '--force']).status === undefined);

  // two layers: cat and its libraries, then the file it prints
  const catTree = path.join(base, 'cat-tree');
  copyCat(catTree);
  const helloTree = path.join(base, 'hello-tree');
  fs.mkdirSync(helloTree);
  fs.writeFileSync(path.join(helloTree, 'hello'), 'hello from a layer layers imported\n');
  const tars = [gnuTar(catTree, path.join(base, 'cat.tar')), gnuTar(helloTree, path.join(base, 'hello.tar'))];
  const diffIds = tars.map((f) => sha256(fs.readFileSync(f)));
  const bottom = (await ok(['import-layer', '-f', tars[0]!])).split('\n')[0]!;
  const top = (await ok(['import-layer', '-f', tars[1]!, bottom])).split('\n')[0]!;

  // config and manifest (OCI), stored as containers/image's storage destination stores them:
  // the image id is the config's digest, the config is big data under its digest, the manifest
  // under "manifest-<digest>" and "manifest"
  const config = JSON.stringify({
    created: '2026-01-01T00:00:00Z',
    architecture: process.arch === 'x64' ? 'amd64' : process.arch,
    os: 'linux',
    config: { Cmd: ['/bin/cat', '/hello'], Env: ['PATH=/bin'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
  });
  const configDigest = sha256(config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: Buffer.byteLength(config) },
    layers: tars.map((f, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: diffIds[i], size: fs.statSync(f).size })),
  });
  const manifestDigest = sha256(manifest);
  const name = 'localhost/layers-hello:latest';
  const image = (await ok(['create-image', '--id', configDigest.slice(7), '-n', name, top])).split('\n')[0]!;
  t.is(image, configDigest.slice(7));
  for (const [key, data] of [[configDigest, config], [`manifest-${manifestDigest}`, manifest], ['manifest', manifest]] as const) {
    const file = path.join(base, 'data');
    fs.writeFileSync(file, data);
    await ok(['set-image-data', '-f', file, image, key]);
  }

  // podman sees it: listed by name, inspected with our layers and digest
  const images = podman(['images', '--format', '{{.ID}} {{.Repository}}:{{.Tag}} {{.Digest}}', '--no-trunc']);
  t.is(images.status, 0, images.stderr);
  t.is(images.stdout.trim(), `sha256:${image} ${name} ${manifestDigest}`);
  const inspect = podman(['image', 'inspect', name]);
  t.is(inspect.status, 0, inspect.stderr);
  const info = JSON.parse(inspect.stdout)[0];
  t.deepEqual(info.RootFS.Layers, diffIds);
  t.deepEqual(info.Config.Cmd, ['/bin/cat', '/hello']);

  // a container: created always; run where the machine lets runc start one
  // podman gives a container nofile and nproc limits of 2^20 unless told, above what this
  // machine's hard limits let root raise them to (runc: "error setting rlimit"): ask for less
  const limits = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
  const created = podman(['create', '--network', 'none', ...limits, '--name', 'hello', name]);
  t.is(created.status, 0, created.stderr);
  const ran = podman(['start', '--attach', 'hello']);
  // only the machine may stop runc (no cgroup, seccomp or rlimit it may set): anything else fails
  const machine = /OCI permission denied|cgroup|seccomp/;
  if (ran.status === 0) t.is(ran.stdout, 'hello from a layer layers imported\n');
  else if (machine.test(ran.stderr)) t.log(`skipped running: podman cannot start a container on this machine: ${ran.stderr.trim()}`);
  else t.fail(`podman start: ${ran.stderr}`);
  const runRm = podman(['run', '--rm', '--network', 'none', ...limits, name]);
  if (ran.status === 0) t.is(runRm.stdout, 'hello from a layer layers imported\n', runRm.stderr);
  t.is(podman(['rm', '--force', 'hello']).status, 0);

  // layers rm: nothing left behind, and podman agrees
  t.is((await ok(['containers'])).trim(), '');
  await ok(['rm', image]);
  t.is((await ok(['images'])).trim(), '');
  t.is((await ok(['layers'])).trim(), '');
  // beside l/, the peer's overlay driver leaves only its probe result (.has-mount-program)
  t.deepEqual(fs.readdirSync(path.join(graph, 'overlay')).filter((n) => n !== 'l' && n !== '.has-mount-program'), []);
  t.deepEqual(fs.readdirSync(path.join(graph, 'overlay', 'l')), []);
  t.deepEqual(fs.readdirSync(path.join(graph, 'overlay-images')).filter((n) => !/\.(json|lock)$/.test(n)), []);
  const after = podman(['images', '-q']);
  t.is(after.status, 0, after.stderr);
  t.is(after.stdout.trim(), '');
});
