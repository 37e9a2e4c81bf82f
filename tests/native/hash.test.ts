// sha256 through the OpenSSL EVP functions Node's own binary exports, checked against sha256sum.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native, type NativeError, type Sha256 } from '../../lib/native.ts';
import { tempDir } from '../fixtures/fs.ts';
import { fdOf, randomFile, sha256, sha256sum } from './helpers.ts';

test('sha256 of fed buffers equals sha256sum of the same bytes', (t) => {
  const dir = tempDir(t);
  const data = randomFile(path.join(dir, 'f'), 3 * 1024 * 1024 + 7);
  const h = native().sha256();
  for (let at = 0; at < data.length; at += 100_003) h.update(data.subarray(at, at + 100_003));
  t.is(h.digest(), sha256sum(path.join(dir, 'f')));
  t.is(native().sha256().digest(), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('a digest ends the hash; update wants a Buffer', (t) => {
  const h = native().sha256();
  h.update(Buffer.from('abc'));
  t.is(h.digest(), 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  t.throws(() => h.update(Buffer.from('more')), { message: /after digest/ });
  t.throws(() => h.digest(), { message: /twice/ });
  t.throws(() => native().sha256().update('text' as unknown as Buffer), { instanceOf: TypeError });
});

test('hashRange hashes a range of a file on a worker, or to EOF', async (t) => {
  const dir = tempDir(t);
  const data = randomFile(path.join(dir, 'f'), 2_500_000);
  const fd = fdOf(t, path.join(dir, 'f'), 'r');
  const a = native().sha256();
  t.is(await native().hashRange(fd, 1000, 2_000_000, a), 2_000_000);
  t.is(a.digest(), sha256(data.subarray(1000, 2_001_000)));
  const b = native().sha256();
  b.update(Buffer.from('prefix'));
  t.is(await native().hashRange(fd, 100, -1, b), data.length - 100);
  t.is(b.digest(), sha256(Buffer.concat([Buffer.from('prefix'), data.subarray(100)])));
  // a range past EOF hashes what there is
  const c = native().sha256();
  t.is(await native().hashRange(fd, data.length - 10, 1000, c), 10);
  t.is(c.digest(), sha256(data.subarray(data.length - 10)));
  fs.writeFileSync(path.join(dir, 'w'), '');
  const wfd = fdOf(t, path.join(dir, 'w'), 'w');
  const err = (await t.throwsAsync(native().hashRange(wfd, 0, -1, native().sha256()))) as NativeError;
  t.is(err.code, 'EBADF');
  t.is(err.syscall, 'pread');
  t.throws(() => native().hashRange(fd, 0, -1, {} as Sha256), { instanceOf: TypeError });
});
