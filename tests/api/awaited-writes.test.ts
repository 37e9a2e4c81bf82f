// Record writes are asynchronous (lib/atomic.ts; docs/api.md, "Record writes and the event
// loop"), and the crash ordering of lib/store/store.ts holds only if each is awaited before the
// next step. A call that drops its promise still type-checks, so this reads the sources: every
// call of a function that writes records is awaited or returned.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../lib/package-root.ts';
import { tempDir } from '../fixtures/fs.ts';

/** The functions that write a record file (directly or through one another), all async. */
const WRITERS = ['writeFileAtomic', 'writeJsonAtomic', 'recordNewLayer', 'completeLayer', 'markIncomplete', 'saveMounts', 'dropDangling', 'setBigData', 'createImage', 'takeNames', 'save'];
const CALL = new RegExp(`(?:^|[^\\w$])(${WRITERS.join('|')})\\(`, 'g');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => path.join(dir, f));
}

/** `file:line: text` of each call of a writer that is neither awaited nor returned (definitions and comments left out). */
export function unawaitedWrites(files: string[]): string[] {
  const found: string[] = [];
  for (const file of files) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '');
      if (/^\s*(\*|\/\*)/.test(code)) return;
      for (const m of code.matchAll(CALL)) {
        const before = code.slice(0, m.index! + m[0].indexOf(m[1]!));
        // a definition (`async save(`, `function completeLayer(`), or awaited / returned / handed to `return this.locked(...)`
        if (/(function\s+|async\s+|^\s*)$/.test(before) && /\)\s*(:\s*[^=]+)?\{?\s*$/.test(code)) continue;
        // the statement it is in (from the last ';', '{' or '}') awaits, returns, or is an arrow's value
        if (/\bawait\s|\breturn\s|=>/.test(before.split(/[;{}]/).at(-1)!)) continue;
        found.push(`${path.relative(packageRoot, file)}:${i + 1}: ${line.trim()}`);
      }
    });
  }
  return found;
}

test('every record write in lib/ and drivers/ is awaited', (t) => {
  t.deepEqual(unawaitedWrites([...sources(path.join(packageRoot, 'lib')), ...sources(path.join(packageRoot, 'drivers'))]), []);
});

test('the check finds a dropped write', (t) => {
  const file = path.join(tempDir(t), 'x.ts');
  fs.writeFileSync(file, 'async function f(ctx) {\n  completeLayer(ctx, rec);\n  await ctx.layers.save();\n  if (x) ctx.images.save();\n  return markIncomplete(ctx, r);\n}\n');
  t.deepEqual(
    unawaitedWrites([file]).map((l) => l.replace(/^.*x\.ts:/, '')),
    ['2: completeLayer(ctx, rec);', '4: if (x) ctx.images.save();'],
  );
});
