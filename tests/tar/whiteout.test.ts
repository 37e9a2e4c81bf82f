import test from 'ava';
import { OPAQUE_WHITEOUT, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX, opaqueName, parseWhiteout, whiteoutName } from '../../lib/tar/whiteout.ts';

test('constants', (t) => {
  t.is(WHITEOUT_PREFIX, '.wh.');
  t.is(OPAQUE_WHITEOUT, '.wh..wh..opq');
  t.is(WHITEOUT_META_PREFIX, '.wh..wh.');
});

test('parseWhiteout', (t) => {
  t.deepEqual(parseWhiteout('a/b/.wh.c'), { kind: 'whiteout', target: 'a/b/c' });
  t.deepEqual(parseWhiteout('.wh.c'), { kind: 'whiteout', target: 'c' });
  t.deepEqual(parseWhiteout('.wh..hidden'), { kind: 'whiteout', target: '.hidden' });
  t.deepEqual(parseWhiteout('a/.wh..wh..opq'), { kind: 'opaque', dir: 'a' });
  t.deepEqual(parseWhiteout('.wh..wh..opq'), { kind: 'opaque', dir: '.' });
  t.deepEqual(parseWhiteout('.wh..wh.plnk'), { kind: 'meta' });
  t.deepEqual(parseWhiteout('x/.wh..wh.aufs'), { kind: 'meta' });
  for (const plain of ['a', 'a/b', '.wh', 'a/.whx', '.wh.', '.wh..', '.wh...', 'a/.wh./b', '.wh.a/b', 'x.wh.y']) {
    t.is(parseWhiteout(plain), undefined, plain);
  }
});

test('whiteoutName and opaqueName', (t) => {
  t.is(whiteoutName('a'), '.wh.a');
  t.is(whiteoutName('a/b/c'), 'a/b/.wh.c');
  t.is(opaqueName('a/b'), 'a/b/.wh..wh..opq');
  t.is(opaqueName('.'), '.wh..wh..opq');
  for (const p of ['x', 'd/e/f', 'd/.dot']) t.deepEqual(parseWhiteout(whiteoutName(p)), { kind: 'whiteout', target: p });
  t.deepEqual(parseWhiteout(opaqueName('d/e')), { kind: 'opaque', dir: 'd/e' });
});
