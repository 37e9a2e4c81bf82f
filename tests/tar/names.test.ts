import test from 'ava';
import { TarError } from '../../lib/tar/errors.ts';
import { normalizeEntryName } from '../../lib/tar/names.ts';

const cases: Array<[string, string]> = [
  ['a', 'a'],
  ['a/b/c', 'a/b/c'],
  ['./a', 'a'],
  ['a/', 'a'],
  ['./a/b/', 'a/b'],
  ['.', '.'],
  ['./', '.'],
  ['.//', '.'],
  ['a//b', 'a/b'],
  ['a/./b', 'a/b'],
  ['a/b/..', 'a'],
  ['a/b/../c', 'a/c'],
  ['a/..', '.'],
  ['a/../b/./c//', 'b/c'],
  ['.wh..wh..opq', '.wh..wh..opq'],
  ['..a/b..', '..a/b..'],
  ['...', '...'],
  ['ünï/ファイル', 'ünï/ファイル'],
];

for (const [raw, want] of cases) {
  test(`normalize ${JSON.stringify(raw)}`, (t) => {
    t.is(normalizeEntryName(raw), want);
  });
}

const refused: Array<[string, RegExp]> = [
  ['/abs', /absolute/],
  ['/', /absolute/],
  ['..', /climbs/],
  ['../x', /climbs/],
  ['a/../../x', /climbs/],
  ['./../x', /climbs/],
  ['a/b/../../..', /climbs/],
  ['a\0b', /NUL/],
  ['', /empty/],
];

for (const [raw, why] of refused) {
  test(`refuse ${JSON.stringify(raw)}`, (t) => {
    const err = t.throws(() => normalizeEntryName(raw), { instanceOf: TarError }) as TarError;
    t.is(err.code, 'ETARPATH');
    t.is(err.entry, raw);
    t.regex(err.message, why);
    if (raw) t.true(err.message.includes(JSON.stringify(raw).slice(1, -1)), err.message);
  });
}

test('a clean name comes back as the same string', (t) => {
  const s = 'usr/lib/x86_64-linux-gnu/libc.so.6';
  t.is(normalizeEntryName(s), s);
});
