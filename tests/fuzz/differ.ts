// The differential run (docs/tar-engine.md, "Differential fuzzing"): each case's tar is applied
// by `layers` (the library, in-process, vfs driver) and by the peer `containers-storage` (vfs),
// each in a store of its own, and the two layer trees are compared. A canary directory beside
// the stores must never change. Used by tests/fuzz/tar-fuzz.test.ts and hack/fuzz-tar.ts.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore, type Store } from '../../lib/index.ts';
import { LayersError } from '../../lib/errors.ts';
import { baseTar, generate, type Case } from './gen.ts';
import { differences, listing, snapshot } from './compare.ts';

export type Kind = 'equal' | 'refused' | 'both-refused' | 'ours-refused' | 'peer-refused' | 'peer-hung' | 'known' | 'differ' | 'escape' | 'crash';

/**
 * A case ours refuses needs no peer run (a refusal is an allowed outcome whatever the peer does):
 * the peer runs on 1 in PEER_SAMPLE of them only, for the statistics (both refused, or the peer
 * accepted); the others are 'refused'. The peer is the slow side (~0.1 s per import-layer).
 */
export const PEER_SAMPLE = 20;

/**
 * Disagreements found by this fuzzer that wait for a fix outside the files it may change (each
 * is described in docs/tar-engine.md, "Differential fuzzing"). A difference line they explain
 * is counted as 'known' and printed with its rule, not hidden; remove a rule when its fix lands.
 */
export const KNOWN: Array<{ id: string; what: string; explains(line: string, c: Case): boolean }> = [
  // none open: K9 (a hardlink's target as written that the peer cannot lstat) is fixed
];

export interface Outcome {
  seed: number;
  kind: Kind;
  /** ours-refused: our error, reduced to a reason (numbers and names taken out) */
  reason?: string;
  /** the full details for a failure or a peer refusal */
  detail?: string;
  /** peer-refused: whether our tree is the one GNU tar builds (undefined: not comparable) */
  sameAsGnuTar?: boolean;
}

const CASE_TIMEOUT_MS = 30_000;
/** the peer's layers.json grows with every layer; a fresh peer store after this many cases */
const PEER_STORE_CASES = 100;

function run(cmd: string, args: string[], timeoutMs = CASE_TIMEOUT_MS): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; killed?: boolean }) | null;
      resolve({ code: e ? (e.killed ? -1 : typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr });
    });
  });
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: timed out after ${CASE_TIMEOUT_MS} ms (a hang)`)), CASE_TIMEOUT_MS))),
  ]);
}

/** an error message without the entry names, numbers and ids that make each one unique */
export function reasonOf(message: string): string {
  const last = message.split('\n')[0].replace(/^.*?(applying [^:]*: )/, '');
  return last
    .replace(/"[^"]*"/g, '"…"')
    .replace(/\b[0-9a-f]{64}\b/g, 'ID')
    .replace(/\d+/g, 'N')
    .replace(/^[^ ]*(\(header at byte N\))?: /, '')
    .slice(0, 140);
}

/** One worker: a directory with our store, the peer's store, the canary and the case tars. */
export class Differ {
  private ours!: Store;
  private oursBase!: string;
  private peerBase!: string;
  private peerCases = 0;
  /** our refusals so far: every PEER_SAMPLE-th is also run by the peer */
  private sampled = 0;
  private canaryListing!: string[];
  readonly canary: string;

  private constructor(readonly dir: string) {
    this.canary = path.join(dir, 'canary');
  }

  static async create(): Promise<Differ> {
    const d = new Differ(fs.mkdtempSync(path.join(os.tmpdir(), 'layers-fuzz-')));
    fs.mkdirSync(path.join(d.canary, 'x'), { recursive: true });
    fs.writeFileSync(path.join(d.canary, 'sentinel'), 'untouched\n');
    d.canaryListing = listing(d.canary);
    fs.writeFileSync(path.join(d.dir, 'base.tar'), baseTar());
    d.ours = await openStore({ root: path.join(d.dir, 'ours/root'), runroot: path.join(d.dir, 'ours/run'), driver: 'vfs' });
    d.oursBase = (await d.ours.createLayer({}, path.join(d.dir, 'base.tar'))).id;
    await d.resetPeer();
    return d;
  }

  private peerArgs(): string[] {
    return ['--graph', path.join(this.dir, 'peer/root'), '--run', path.join(this.dir, 'peer/run'), '--storage-driver', 'vfs'];
  }

  private async resetPeer(): Promise<void> {
    fs.rmSync(path.join(this.dir, 'peer'), { recursive: true, force: true });
    const r = await run('containers-storage', [...this.peerArgs(), 'import-layer', '-f', path.join(this.dir, 'base.tar')]);
    if (r.code !== 0) throw new Error(`the peer cannot import the base layer: ${r.stderr}`);
    this.peerBase = r.stdout.trim().split('\n')[0];
    this.peerCases = 0;
  }

  close(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async runCase(seed: number): Promise<Outcome> {
    const c = generate(seed, { canary: this.canary });
    try {
      return await this.apply(c);
    } catch (err) {
      return { seed, kind: 'crash', detail: `${c.notes.join('; ')}: ${(err as Error).stack}` };
    }
  }

  private async apply(c: Case): Promise<Outcome> {
    const { seed } = c;
    if (this.peerCases >= PEER_STORE_CASES) await this.resetPeer();
    const tar = path.join(this.dir, 'case.tar');
    fs.writeFileSync(tar, c.tar);
    let oursId: string | undefined;
    let oursErr: unknown;
    try {
      oursId = (await withTimeout(this.ours.createLayer({ parent: c.onBase ? this.oursBase : undefined }, tar), `case ${seed}`)).id;
    } catch (err) {
      oursErr = err;
    }
    // ours first: the peer runs only when ours built a tree, or on the sample of our refusals
    const peerRuns = oursErr === undefined || this.sampled++ % PEER_SAMPLE === 0;
    if (peerRuns) this.peerCases++;
    const peer = peerRuns ? await run('containers-storage', [...this.peerArgs(), 'import-layer', '-f', tar, ...(c.onBase ? [this.peerBase] : [])]) : undefined;
    const peerId = peer?.code === 0 ? peer.stdout.trim().split('\n')[0] : undefined;
    const oursDir = oursId && path.join(this.dir, 'ours/root/vfs/dir', oursId);
    const peerDir = peerId && path.join(this.dir, 'peer/root/vfs/dir', peerId);
    try {
      const now = listing(this.canary);
      if (now.join('\n') !== this.canaryListing.join('\n')) {
        fs.rmSync(this.canary, { recursive: true, force: true });
        fs.mkdirSync(path.join(this.canary, 'x'), { recursive: true });
        fs.writeFileSync(path.join(this.canary, 'sentinel'), 'untouched\n');
        return { seed, kind: 'escape', detail: `canary changed (ours ${oursId ? 'accepted' : 'refused'}, peer ${peerId ? 'accepted' : 'refused'}): ${now.join(', ')}` };
      }
      // the peer's own hang is no failure of ours, but counted and printed
      if (oursErr !== undefined && !(oursErr instanceof LayersError)) return { seed, kind: 'crash', detail: `${c.notes.join('; ')}: ${(oursErr as Error)?.stack ?? String(oursErr)}` };
      if (!peer) return { seed, kind: 'refused', reason: reasonOf((oursErr as Error).message) };
      if (peer.code === -1) return { seed, kind: 'peer-hung', detail: `the peer hung: ${c.notes.join('; ')}; ours ${oursErr ? 'refused' : 'accepted'}` };
      if (oursErr !== undefined && !(oursErr instanceof LayersError)) return { seed, kind: 'crash', detail: `${c.notes.join('; ')}: ${(oursErr as Error)?.stack ?? String(oursErr)}` };
      if (oursErr !== undefined) {
        const msg = (oursErr as Error).message;
        if (!peerDir) return { seed, kind: 'both-refused', reason: reasonOf(msg) };
        return { seed, kind: 'ours-refused', reason: reasonOf(msg), detail: msg };
      }
      if (!peerDir) {
        const gnu = c.onBase ? undefined : await this.sameAsGnuTar(tar, oursDir!);
        return { seed, kind: 'peer-refused', detail: `peer: ${peer!.stderr.trim().split('\n').pop()}`, sameAsGnuTar: gnu };
      }
      const diff = differences(snapshot(oursDir!, { times: true }), snapshot(peerDir, { times: true }));
      const unexplained = diff.filter((l) => !KNOWN.some((k) => k.explains(l, c)));
      if (diff.length > 0 && unexplained.length === 0) {
        const ids = [...new Set(diff.map((l) => KNOWN.find((k) => k.explains(l, c))!.id))];
        return { seed, kind: 'known', reason: ids.join('+'), detail: diff.slice(0, 5).join('; ') };
      }
      if (diff.length > 0) return { seed, kind: 'differ', detail: `${c.notes.join('; ')}\n  ${diff.slice(0, 20).join('\n  ')}` };
      return { seed, kind: 'equal' };
    } finally {
      if (oursId) await this.ours.deleteLayer(oursId);
      if (peerDir) fs.rmSync(peerDir, { recursive: true, force: true });
    }
  }

  /** GNU tar's tree of the tar against ours (whiteouts aside: GNU tar keeps them as files) */
  private async sameAsGnuTar(tar: string, oursDir: string): Promise<boolean | undefined> {
    const dir = path.join(this.dir, 'gnutar');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { mode: 0o555 });
    try {
      const r = await run('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', tar, '-C', dir]);
      if (r.code !== 0) return false;
      const a = snapshot(oursDir, { times: true });
      if ([...a.keys()].some((n) => n.includes('.wh.'))) return undefined;
      return differences(a, snapshot(dir, { times: true })).length === 0;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** the counts of a run and the failures' seeds */
export class Tally {
  readonly counts: Record<Kind, number> = { equal: 0, refused: 0, 'both-refused': 0, 'ours-refused': 0, 'peer-refused': 0, 'peer-hung': 0, known: 0, differ: 0, escape: 0, crash: 0 };
  readonly reasons = new Map<string, number>();
  readonly known = new Map<string, number>();
  readonly bothRefused = new Map<string, number>();
  /** our refusals the peer did not run (PEER_SAMPLE), by reason */
  readonly refused = new Map<string, number>();
  readonly peerRefused = { sameAsGnuTar: 0, notGnuTar: 0, notComparable: 0 };
  readonly failures: Outcome[] = [];
  readonly hung: Outcome[] = [];
  readonly peerRefusedCases: Outcome[] = [];

  add(o: Outcome): void {
    this.counts[o.kind]++;
    if (o.kind === 'ours-refused') this.reasons.set(o.reason!, (this.reasons.get(o.reason!) ?? 0) + 1);
    if (o.kind === 'peer-hung') this.hung.push(o);
    if (o.kind === 'known') this.known.set(o.reason!, (this.known.get(o.reason!) ?? 0) + 1);
    if (o.kind === 'refused') this.refused.set(o.reason!, (this.refused.get(o.reason!) ?? 0) + 1);
    if (o.kind === 'both-refused') this.bothRefused.set(o.reason!, (this.bothRefused.get(o.reason!) ?? 0) + 1);
    if (o.kind === 'peer-refused') {
      if (o.sameAsGnuTar === true) this.peerRefused.sameAsGnuTar++;
      else if (o.sameAsGnuTar === false) this.peerRefused.notGnuTar++;
      else this.peerRefused.notComparable++;
      this.peerRefusedCases.push(o);
    }
    if (o.kind === 'differ' || o.kind === 'escape' || o.kind === 'crash') this.failures.push(o);
  }

  total(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }

  report(top = 10): string {
    const lines = [
      `cases ${this.total()}: equal ${this.counts.equal}, ours refused without a peer run ${this.counts.refused}, and on the 1-in-${PEER_SAMPLE} sample: both refused ${this.counts['both-refused']}, ours refused (peer accepted) ${this.counts['ours-refused']}, ` +
        `peer refused (ours accepted) ${this.counts['peer-refused']} [same as GNU tar ${this.peerRefused.sameAsGnuTar}, not ${this.peerRefused.notGnuTar}, not comparable ${this.peerRefused.notComparable}], ` +
        `peer hung ${this.counts['peer-hung']}, known disagreements ${this.counts.known} [${[...this.known].map(([k, n]) => `${k} ${n}`).join(', ')}], differ ${this.counts.differ}, escape ${this.counts.escape}, crash ${this.counts.crash}`,
    ];
    const reasons = [...this.reasons].sort((a, b) => b[1] - a[1]).slice(0, top);
    if (reasons.length) lines.push('top reasons we refused a tar the peer accepted:', ...reasons.map(([r, n]) => `  ${String(n).padStart(6)}  ${r}`));
    const both = [...this.bothRefused].sort((a, b) => b[1] - a[1]).slice(0, top);
    if (both.length) lines.push('top reasons of ours when both refused:', ...both.map(([r, n]) => `  ${String(n).padStart(6)}  ${r}`));
    const unsampled = [...this.refused].sort((a, b) => b[1] - a[1]).slice(0, top);
    if (unsampled.length) lines.push('top reasons of ours refusing without a peer run:', ...unsampled.map(([r, n]) => `  ${String(n).padStart(6)}  ${r}`));
    for (const h of this.hung.slice(0, 5)) lines.push(`peer hung: seed ${h.seed}: ${h.detail}`);
    for (const f of this.failures.slice(0, 20)) lines.push(`FAIL ${f.kind} seed ${f.seed}: ${f.detail}`);
    return lines.join('\n');
  }
}

/** run cases seeds[0..] over `workers` differs at once; onOutcome sees each as it ends */
export async function runCases(seeds: Iterable<number>, workers: number, onOutcome: (o: Outcome) => void): Promise<void> {
  const it = seeds[Symbol.iterator]();
  const differs = await Promise.all(Array.from({ length: workers }, () => Differ.create()));
  try {
    await Promise.all(
      differs.map(async (d) => {
        for (let n = it.next(); !n.done; n = it.next()) onOutcome(await d.runCase(n.value));
      }),
    );
  } finally {
    for (const d of differs) d.close();
  }
}
