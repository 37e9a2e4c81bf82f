// The long differential fuzz run (docs/tar-engine.md, "Differential fuzzing"): N generated tars,
// each applied by `layers` and (where ours accepted it, or on a sample of our refusals) by
// `containers-storage` on vfs, trees compared. SIGINT/SIGTERM end it early with the report. Prints progress,
// the counts, the top reasons of our refusals of tars the peer accepts, and the seed of every
// failure; `--replay SEED` runs that one case and prints everything about it. Root only:
//   node --import tsx hack/fuzz-tar.ts [--cases 100000] [--seed 1] [--workers 4] [--replay SEED]
import fs from 'node:fs';
import { caseSeed, generate } from '../tests/fuzz/gen.ts';
import { runCases, Tally } from '../tests/fuzz/differ.ts';

function opt(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name}: expected a whole number, got ${process.argv[i + 1]}`);
  return v;
}

const replay = process.argv.includes('--replay') ? opt('--replay', 0) : undefined;
const cases = opt('--cases', 100_000);
const runSeed = opt('--seed', 1);
const workers = opt('--workers', 4);
const tally = new Tally();
const started = Date.now();

if (replay !== undefined) {
  const c = generate(replay, { canary: '/tmp/layers-fuzz-XXXXXX/canary' });
  const out = `/tmp/fuzz-case-${replay}.tar`;
  fs.writeFileSync(out, c.tar);
  console.log(`case ${replay}: ${c.tar.length} bytes, on the base layer: ${c.onBase}, ${c.notes.join('; ') || 'not mutated'} (written to ${out}; its canary paths differ from the run's)`);
  await runCases([replay], 1, (o) => console.log(JSON.stringify(o, null, 2)));
} else {
  let last = started;
  // SIGINT or SIGTERM: no new case; the running ones end, then the report of the cases done
  let stop = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ((stop = true), console.log(`${sig}: stopping after the running cases`)));
  const seeds = function* () {
    for (let i = 0; i < cases && !stop; i++) yield caseSeed(runSeed, i);
  };
  await runCases(seeds(), workers, (o) => {
    tally.add(o);
    if (o.kind === 'differ' || o.kind === 'escape' || o.kind === 'crash') console.log(`FAIL ${o.kind} seed ${o.seed}: ${o.detail}`);
    if (Date.now() - last > 10_000) {
      last = Date.now();
      const n = tally.total();
      console.log(`${n}/${cases} cases, ${((last - started) / 1000).toFixed(0)} s, ${(n / ((last - started) / 1000)).toFixed(1)} cases/s; failures ${tally.failures.length}`);
    }
  });
  console.log(`run seed ${runSeed}, ${tally.total()} of ${cases} cases${stop ? ' (stopped)' : ''}, ${workers} workers, ${((Date.now() - started) / 1000).toFixed(0)} s`);
  console.log(tally.report(15));
  const notGnu = tally.peerRefusedCases.filter((o) => o.sameAsGnuTar === false);
  if (notGnu.length) console.log(`peer refused, ours accepted, not GNU tar's tree: ${notGnu.slice(0, 20).map((o) => `${o.seed} (${o.detail})`).join('\n  ')}`);
  process.exitCode = tally.failures.length > 0 ? 1 : 0;
}
