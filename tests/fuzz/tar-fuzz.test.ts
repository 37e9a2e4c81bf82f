// The bounded differential fuzz run (docs/tar-engine.md, "Differential fuzzing"): 2,000 generated
// tars (LAYERS_FUZZ_CASES to change it), each applied by `layers` and by `containers-storage` on
// vfs. Every case must end with both trees equal, both refusing, or ours refusing; no tree may
// differ beyond the known disagreements listed in differ.ts (KNOWN), nothing may be written outside
// the layer root, and nothing may throw anything but a LayersError or hang. A failure prints the
// seed: `node --import tsx hack/fuzz-tar.ts --replay SEED` runs that one case again.
import test from 'ava';
import { caseSeed } from './gen.ts';
import { KNOWN, runCases, Tally } from './differ.ts';

const CASES = Number(process.env.LAYERS_FUZZ_CASES ?? 2000);
const RUN_SEED = 20261203;

test(`${CASES} generated tars: the peer's tree, a refusal, or a known disagreement; no escape, no crash`, async (t) => {
  t.timeout(4.5 * 60_000);
  const tally = new Tally();
  const seeds = Array.from({ length: CASES }, (_, i) => caseSeed(RUN_SEED, i));
  await runCases(seeds, 4, (o) => tally.add(o));
  t.log(tally.report());
  for (const k of KNOWN) t.log(`known ${k.id}: ${k.what}`);
  t.is(tally.total(), CASES);
  t.is(tally.counts.escape, 0);
  t.is(tally.counts.crash, 0);
  t.is(tally.counts.differ, 0);
  // a generator that only made refused tars would compare nothing
  t.true(tally.counts.equal > CASES / 10, `only ${tally.counts.equal} cases built equal trees`);
});
