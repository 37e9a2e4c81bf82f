// lib/idmap.ts on its own: ids mapped both ways through one range and several, the edges of a
// range, ids outside every range, owners mapped per entry with errors naming the file, the
// identity and equality tests the drivers branch on, and the --uidmap syntax.
import test from 'ava';
import {
  composeMap,
  containerMapper,
  hostMapper,
  isIdentity,
  OVERFLOW_ID,
  parseIdMap,
  sameMappings,
  toContainer,
  toHost,
  type IdMap,
  type IdMappings,
} from '../lib/idmap.ts';

const range = (container_id: number, host_id: number, size: number): IdMap => ({ container_id, host_id, size });
/** root and the system ids to 100000.., one user's id to its own host id, the rest to 200000.. */
const SPLIT: IdMap[] = [range(0, 100000, 1000), range(1000, 1000, 1), range(1001, 200000, 64535)];

test('one range maps container ids to host ids and back, up to its last id and no further', (t) => {
  const m = [range(0, 100000, 65536)];
  t.deepEqual([toHost(m, 0), toHost(m, 1), toHost(m, 65535), toHost(m, 65536)], [100000, 100001, 165535, undefined]);
  t.deepEqual([toContainer(m, 100000), toContainer(m, 165535), toContainer(m, 99999), toContainer(m, 165536)], [0, 65535, undefined, undefined]);
  // a range that does not start at container 0
  const shifted = [range(10, 500, 5)];
  t.deepEqual([toHost(shifted, 9), toHost(shifted, 10), toHost(shifted, 14), toHost(shifted, 15)], [undefined, 500, 504, undefined]);
  t.deepEqual([toContainer(shifted, 499), toContainer(shifted, 500), toContainer(shifted, 504)], [undefined, 10, 14]);
});

test('several ranges: each id goes through the range that holds it, both ways', (t) => {
  t.deepEqual(
    [0, 999, 1000, 1001, 65535].map((id) => toHost(SPLIT, id)),
    [100000, 100999, 1000, 200000, 264534],
  );
  for (const id of [0, 1, 999, 1000, 1001, 30000, 65535]) t.is(toContainer(SPLIT, toHost(SPLIT, id)!), id, `container ${id} round trip`);
  // host ids in the gaps between the ranges belong to no container id
  t.deepEqual([999, 1001, 99999, 101000, 199999, 264535].map((id) => toContainer(SPLIT, id)), Array(6).fill(undefined));
  t.is(toHost(SPLIT, 65536), undefined);
});

test('an empty map is the identity, for every id', (t) => {
  for (const id of [0, 1, 65534, 65536, 4294967294]) {
    t.is(toHost([], id), id);
    t.is(toContainer([], id), id);
  }
});

test('the mappers map owners per entry and name the file and the id that has no place', (t) => {
  const m: IdMappings = { uidmap: SPLIT, gidmap: [range(0, 300000, 100)] };
  const toHostIds = hostMapper(m)!;
  const toContainerIds = containerMapper(m)!;
  t.deepEqual(toHostIds(1000, 5, 'etc/passwd'), [1000, 300005]);
  t.deepEqual(toHostIds(0, 0, 'x'), [100000, 300000]);
  t.deepEqual(toContainerIds(200005, 300099, 'x'), [1006, 99]);
  t.throws(() => toHostIds(70000, 0, 'srv/far'), { code: 'EIDMAP', message: 'srv/far: uid 70000 is outside the id mappings' });
  t.throws(() => toHostIds(0, 100, 'srv/group'), { code: 'EIDMAP', message: 'srv/group: gid 100 is outside the id mappings' });
  // the overflow id (the kernel's, 65534) a shift leaves on an owner outside the ranges is itself outside them
  t.is(OVERFLOW_ID, 65534);
  t.throws(() => toContainerIds(OVERFLOW_ID, 300000, 'home/nobody'), { code: 'EIDMAP', message: `home/nobody: uid ${OVERFLOW_ID} is outside the id mappings` });
  t.throws(() => toContainerIds(100000, 1, 'g'), { code: 'EIDMAP', message: 'g: gid 1 is outside the id mappings' });
  // no mappings: nothing to map, no mapper
  t.is(hostMapper(undefined), undefined);
  t.is(containerMapper({ uidmap: [], gidmap: [] }), undefined);
});

test('isIdentity and sameMappings: absent and empty are the same; ranges compare field by field, in order', (t) => {
  const a: IdMappings = { uidmap: [range(0, 1000, 10)], gidmap: [range(0, 2000, 10)] };
  t.true(isIdentity(undefined));
  t.true(isIdentity({ uidmap: [], gidmap: [] }));
  t.false(isIdentity({ uidmap: [], gidmap: [range(0, 1, 1)] }));
  t.false(isIdentity(a));
  t.true(sameMappings(undefined, { uidmap: [], gidmap: [] }));
  t.false(sameMappings(undefined, a));
  t.false(sameMappings(a, undefined));
  t.true(sameMappings(a, { uidmap: [range(0, 1000, 10)], gidmap: [range(0, 2000, 10)] }));
  t.false(sameMappings(a, { uidmap: [range(0, 1000, 11)], gidmap: [range(0, 2000, 10)] }), 'size differs');
  t.false(sameMappings(a, { uidmap: [range(0, 1000, 10)], gidmap: [range(1, 2000, 10)] }), 'a gid range differs');
  t.false(sameMappings(a, { uidmap: [range(0, 1000, 10), range(10, 5000, 1)], gidmap: [range(0, 2000, 10)] }), 'one more range');
  const two = (x: IdMap, y: IdMap): IdMappings => ({ uidmap: [x, y], gidmap: [] });
  t.false(sameMappings(two(range(0, 1, 1), range(1, 9, 1)), two(range(1, 9, 1), range(0, 1, 1))), 'the same ranges in another order');
});

test('parseIdMap reads containerID:hostID:size lists and refuses anything else, naming the part', (t) => {
  t.deepEqual(parseIdMap('0:100000:65536'), [range(0, 100000, 65536)]);
  t.deepEqual(parseIdMap('0:100000:1000, 1000:1000:1 ,1001:200000:64535'), SPLIT);
  t.deepEqual(parseIdMap(''), []);
  t.deepEqual(parseIdMap('0:1:2,,'), [range(0, 1, 2)], 'empty parts are skipped');
  // the peer's syntax: ranges joined by ':' in threes (containers/storage's ParseIDMap)
  t.deepEqual(parseIdMap('0:100000:1000:1000:1000:1:1001:200000:64535'), SPLIT);
  t.deepEqual(parseIdMap('0:100000:1000:1000:1000:1,1001:200000:64535'), SPLIT, 'both joined');
  for (const [spec, part] of [
    ['0::5', '0::5'],
    [' : :1', ' : :1'],
    ['0:4294967295:2', '0:4294967295:2'],
    ['0:4294967296:1', '0:4294967296:1'],
    ['0:100000', '0:100000'],
    ['0:1:2:3', '0:1:2:3'],
    ['0:1:2,a:1:2', 'a:1:2'],
    ['-1:0:5', '-1:0:5'],
    ['0:1.5:5', '0:1.5:5'],
    ['0:100000:0', '0:100000:0'],
  ]) {
    t.throws(() => parseIdMap(spec), { code: 'EIDMAP', message: `bad id mapping "${part}": want containerID:hostID:size[:containerID:hostID:size...]` }, spec);
  }
});

test('composeMap: disk ids through one mapping shown through another, every id paired, nothing when they agree', (t) => {
  const M = [range(0, 100000, 6)];
  const FULL = 2 ** 32 - 1;
  /** every listed id is a bijection of the whole space: sizes sum to it, both sides without overlap */
  const whole = (m: IdMap[]) => {
    t.is(m.reduce((n, r) => n + r.size, 0), FULL);
    for (const side of ['container_id', 'host_id'] as const) {
      const sorted = [...m].sort((a, b) => a[side] - b[side]);
      sorted.forEach((r, i) => i === 0 || t.is(r[side], sorted[i - 1][side] + sorted[i - 1].size));
    }
  };
  const shown = (m: IdMap[], id: number) => toHost(m, id);
  // a mapped layer shown to a plain one: its host ids back to container ids
  const back = composeMap(M, []);
  whole(back);
  t.is(shown(back, 100003), 3);
  t.not(shown(back, 0), 0, 'disk root is paired with a free id (root may pass the home through the view)');
  // a plain layer shown to a mapped one: the mapping itself
  const forth = composeMap([], M);
  whole(forth);
  t.is(shown(forth, 5), 100005);
  // one mapping to another, across a non-contiguous one
  const NC = [range(0, 300000, 2), range(2, 500000, 10)];
  const across = composeMap(M, NC);
  whole(across);
  t.deepEqual([0, 1, 2, 5].map((c) => shown(across, 100000 + c)), [300000, 300001, 500000, 500003]);
  // the same mappings, or the ids both hold agreeing: nothing to map
  t.deepEqual(composeMap(M, M), []);
  t.deepEqual(composeMap([], []), []);
  t.deepEqual(composeMap(M, [range(0, 100000, 65536)]), []);
});
