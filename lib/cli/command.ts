// How a command of `layers` is declared and what every command shares to run. Each command is one
// `Command` value in the file of its area under commands/ (layers.ts, images.ts, mount.ts, ...);
// commands/index.ts lists them in the order `layers --help` prints them.
import type { RecordStore } from '../store/store.ts';
import type { FlagSpec, Parsed } from './args.ts';

/** The global flags, resolved (cli.ts): what every command runs against. */
export interface Globals {
  root: string;
  runroot: string;
  driver: string;
  /** --storage-opt (repeatable) or else $STORAGE_OPTS (comma-separated), or storage.conf's; handed to openStore */
  storageOpts: string[];
  /** set when the store came from storage.conf (no store flag): the file read, '' for none (built-in defaults) */
  storageConf?: string;
  json: boolean;
  debug: boolean;
}

export interface Command {
  /** the name `layers --help` lists, then the peer's other spellings (createlayer, umount) */
  names: string[];
  /** the positional arguments, for usage */
  args: string;
  help: string;
  /** how many positional arguments it takes; cli.ts checks before run */
  min: number;
  max?: number;
  flags: FlagSpec[];
  /** false: the command never opens a store, so no storage.conf is read for it (`version`: its
   *  start-up, docs/performance.md "Start-up"); its Globals' root, runroot and driver are '' */
  store?: false;
  /** `name` is the spelling used, for error lines. Returns the exit code. */
  run(g: Globals, p: Parsed, name: string): Promise<number>;
}

/** The peer's two spellings of a command: list-image-data and listimagedata. */
export const spellings = (name: string): string[] => [name, name.replaceAll('-', '')];

/** The store, with the library loaded only now: `--help`, `version` and usage errors never load
 *  it, so they start about as fast as `node` itself (docs/api.md, "Installing"). Its records are
 *  the peer's (docs/api.md, "Records"), which `--json` prints. */
export async function open(g: Globals): Promise<RecordStore> {
  const { openRecordStore } = await import('../store/store.ts');
  return openRecordStore({ root: g.root, runroot: g.runroot, driver: g.driver, storageOpts: g.storageOpts });
}

/** One argument of several failed: say which and why; the command goes on with the others. */
function reportFailure(cmd: string, arg: string, err: unknown): void {
  process.stderr.write(`layers: ${cmd}: ${arg}: ${errorMessage(err)}\n`);
}

const errorMessage = (err: unknown): string => (err as Error).message ?? String(err);

/** What became of one argument of a command that takes several. */
export type Outcome<T> = { ref: string; ok: true; value: T } | { ref: string; ok: false; error: string };

/**
 * The peer's way with several arguments: `act` on each in turn, a failure reported on stderr
 * (`layers: <command>: <argument>: <why>`) and the others gone on with. `quiet` leaves failures
 * off stderr, for a command whose --json output carries them.
 */
export async function eachArg<T>(cmd: string, refs: string[], act: (ref: string) => Promise<T>, opts: { quiet?: boolean } = {}): Promise<Array<Outcome<T>>> {
  const outcomes: Array<Outcome<T>> = [];
  for (const ref of refs) {
    try {
      outcomes.push({ ref, ok: true, value: await act(ref) });
    } catch (err) {
      outcomes.push({ ref, ok: false, error: errorMessage(err) });
      if (!opts.quiet) reportFailure(cmd, ref, err);
    }
  }
  return outcomes;
}

/** The values of the arguments that went. */
export const succeeded = <T>(outcomes: Array<Outcome<T>>): T[] => outcomes.flatMap((o) => (o.ok ? [o.value] : []));

/** 1 if any argument failed, else 0 */
export const exitCode = (outcomes: Array<Outcome<unknown>>): number => (outcomes.every((o) => o.ok) ? 0 : 1);
