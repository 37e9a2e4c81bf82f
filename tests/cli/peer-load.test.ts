// The 16-process load test (docs/sharing.md, "Locks"): 8 `layers` and 8 `containers-storage`
// writers on one store, each creating and deleting named layers and images, while random writers
// of both tools are killed with SIGKILL. Afterwards the next command of either tool finds one
// consistent store: both list the same records, every record a writer reported made (and did not
// go on to delete) exists, nothing half made is left after our next open, no reference dangles.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { bash, BIN, tempStore } from '../fixtures/store.ts';

const names = (out: string) => [...out.matchAll(/^\tname: (.*)$/gm)].map((m) => m[1]!).sort();

test('8 layers and 8 containers-storage writers at once, random ones killed with SIGKILL: both tools then see one consistent store', async (t) => {
  const s = tempStore(t);
  await s.cli(['create-layer', '-n', 'seed']);
  const ROUNDS = 3;
  const t0 = Date.now();
  const log = path.join(s.dir, 'log');
  fs.mkdirSync(log);
  // Each step runs in the background so its pid can be published (the killer reads it) and is
  // logged only when it succeeded: "+L name" made, "-I name" deleted; "?X name" an attempt
  // whose outcome is unknown until then (it may fail or be killed), written before it starts.
  const worker = (tool: string, w: string) => `
    st() { ${tool} -g "$ROOT" -R "$RUN" -s vfs "$@" >/dev/null 2>&1 & echo $! > "$LOG/${w}.pid"; wait $!; }
    step() { echo "?$1 $2" >> "$LOG/${w}"; shift 2; st "$@"; }
    for r in $(seq 1 ${ROUNDS}); do
      step L ${w}-l$r create-layer -n ${w}-l$r seed && echo "+L ${w}-l$r" >> "$LOG/${w}"
      step I ${w}-i$r create-image -n ${w}-i$r ${w}-l$r && echo "+I ${w}-i$r" >> "$LOG/${w}"
      step L ${w}-x$r create-layer -n ${w}-x$r && echo "+L ${w}-x$r" >> "$LOG/${w}"
      step L ${w}-x$r delete-layer ${w}-x$r && echo "-L ${w}-x$r" >> "$LOG/${w}"
      # an image's deletion takes its layer with it: both uncertain until it succeeded
      if [ $r -gt 1 ]; then step I "${w}-i$((r-1)) ?L ${w}-l$((r-1))" delete-image ${w}-i$((r-1)) && echo "-I ${w}-i$((r-1)) -L ${w}-l$((r-1))" >> "$LOG/${w}"; fi
    done
    rm -f "$LOG/${w}.pid"`;
  const env = { ROOT: s.root, RUN: s.runroot, LOG: log };
  const peers = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `p${i}`);
  const ours = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `o${i}`);
  const workers = [...peers.map((w) => bash(worker('containers-storage', w), env)), ...ours.map((w) => bash(worker(`node ${BIN}`, w), env))];
  let done = false;
  const all = Promise.all(workers).finally(() => (done = true));

  // the killer: every 150-400 ms a random writer's current step, mostly ours; only a process
  // this test started (its command line names this test's store)
  let killed = 0;
  const killer = (async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 250));
      const w = Math.random() < 0.7 ? ours[Math.floor(Math.random() * 8)]! : peers[Math.floor(Math.random() * 8)]!;
      const pid = Number(fs.readFileSync(path.join(log, `${w}.pid`), { encoding: 'utf8', flag: 'a+' }).trim());
      if (!pid) continue;
      try {
        if (!fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(s.root)) continue;
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // gone already
      }
    }
  })();
  const results = await all;
  await killer;
  t.log(`${killed} writers killed; the writers took ${Date.now() - t0} ms`);
  t.true(killed > 0, 'some writers were killed');
  for (const r of results) t.is(r.code, 0, r.out);

  // what the writers reported: made and not deleted must exist; what may exist besides
  const must = new Set<string>(['L seed']);
  const may = new Set<string>(['L seed']);
  for (const w of [...peers, ...ours])
    for (const line of fs.readFileSync(path.join(log, w), 'utf8').split('\n')) {
      for (const m of line.matchAll(/([+?-])([LI]) (\S+)/g)) {
        const key = `${m[2]} ${m[3]}`;
        if (m[1] === '+') must.add(key), may.add(key);
        else if (m[1] === '-') must.delete(key), may.delete(key);
        else must.delete(key), may.add(key);
      }
    }

  // the next command of ours repairs what a killed writer left; then both tools agree
  const ourLayers = await s.cli(['layers']);
  t.is(ourLayers.code, 0, ourLayers.stderr);
  const ourImages = await s.cli(['images']);
  const peerLayers = s.peer(['layers']);
  const peerImages = s.peer(['images']);
  t.is(peerLayers.code, 0, peerLayers.stderr);
  t.deepEqual(names(peerLayers.stdout), names(ourLayers.stdout), 'both tools list the same layers');
  t.deepEqual(names(peerImages.stdout), names(ourImages.stdout), 'both tools list the same images');
  const have = new Set([...names(ourLayers.stdout).map((n) => `L ${n}`), ...names(ourImages.stdout).map((n) => `I ${n}`)]);
  t.deepEqual([...must].filter((k) => !have.has(k)), [], 'every record reported made and not deleted exists');
  t.deepEqual([...have].filter((k) => !may.has(k)), [], 'nothing exists that no writer tried to make');

  // nothing half made, no dangling reference, one directory per layer
  const layers = s.records() as Array<{ id: string; parent?: string; flags?: Record<string, unknown> }>;
  t.deepEqual(layers.filter((l) => l.flags?.incomplete), [], 'no incomplete layer after our open');
  const ids = new Set(layers.map((l) => l.id));
  t.deepEqual(layers.filter((l) => l.parent && !ids.has(l.parent)), [], 'every parent exists');
  const images = JSON.parse(fs.readFileSync(path.join(s.root, 'vfs-images', 'images.json'), 'utf8')) as Array<{ id: string; layer?: string }>;
  t.deepEqual(images.filter((i) => i.layer && !ids.has(i.layer)), [], 'every top layer exists');
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')).sort(), [...ids].sort(), 'one directory per layer record');
});
