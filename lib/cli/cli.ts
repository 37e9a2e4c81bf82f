// `layers`: a thin shell over the public API (lib/index.ts) with containers-storage's command
// names, flags and output. Exit 0 ok, 1 failed, 2 usage; errors are one line on stderr,
// "layers: <command>: <what failed>: <why>". The commands are in commands/ (see commands/index.ts).
import fs from 'node:fs';
import path from 'node:path';
import { defaultStoreOptions, resolveStoreOptions } from '../config.ts';
import { isLayersError, LayersError, printable, setDebugOutput } from '../errors.ts';
import { flagUsage, list, parseArgs, str, usageError, type FlagSpec, type Parsed } from './args.ts';
import type { Command, Globals } from './command.ts';
import { commands } from './commands/index.ts';

/** containers-storage's global flags, with its spellings (--graph, --run, --storage-driver, -D) */
export const globalFlags: FlagSpec[] = [
  { names: ['root', 'graph', 'g'], value: true, help: 'root of the storage tree (default: storage.conf\'s graphroot)' },
  { names: ['runroot', 'run', 'R'], value: true, help: 'root of the runtime state tree (default: storage.conf\'s runroot)' },
  { names: ['driver', 'storage-driver', 's'], value: true, help: 'storage driver to use (default: storage.conf\'s driver, $STORAGE_DRIVER)' },
  { names: ['storage-opt'], value: true, multi: true, help: 'storage driver option, key=value; repeatable (default: storage.conf\'s, $STORAGE_OPTS)' },
  { names: ['json', 'j'], help: 'print one JSON document' },
  { names: ['debug', 'D'], help: 'print debugging information (stack traces)' },
  { names: ['help', 'h'], help: 'print usage' },
];

/** Flags and their help in two columns, the second starting past the longest flag. */
function flagLines(flags: FlagSpec[]): string[] {
  const width = Math.max(0, ...flags.map((f) => flagUsage(f).length)) + 2;
  return flags.map((f) => `  ${flagUsage(f).padEnd(width)}${f.help}`);
}

function mainUsage(): string {
  const width = Math.max(...commands.map((c) => c.names[0].length)) + 2;
  return [
    'Usage: layers [global flags] COMMAND [flags] [arguments]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.names[0].padEnd(width)}${c.help}`),
    '',
    'Global flags (accepted before or after the command):',
    ...flagLines(globalFlags),
    '',
  ].join('\n');
}

function commandUsage(c: Command): string {
  return [
    `Usage: layers ${c.names[0]} [flags] ${c.args}`,
    '',
    c.help + (c.names.length > 1 ? ` (also: ${c.names.slice(1).join(', ')})` : ''),
    '',
    'Flags:',
    ...flagLines(c.flags),
    '',
  ].join('\n');
}

/** What a command line asks for. */
export type CommandLine =
  /** no command: the main usage; exit 0 when asked for with --help, else 2 */
  | { kind: 'usage'; asked: boolean }
  /** COMMAND --help */
  | { kind: 'command-help'; cmd: Command }
  /** `name` as given (createlayer or create-layer), for the error line */
  | { kind: 'run'; cmd: Command; name: string; globals: Globals; args: Parsed }
  /** a usage error, and the command it concerns when it got that far */
  | { kind: 'error'; command?: string; error: LayersError };

/**
 * Parse argv: global flags before the command, then the command's own flags, arguments and global
 * flags in any order (a command's own flag of the same spelling wins over a global one). Values
 * of --storage-opt given before and after add up; without any, $STORAGE_OPTS (comma-separated)
 * holds them. Pure but for the commands' table: tests call it with their own env.
 */
export function parseCommandLine(argv: string[], env: Record<string, string | undefined> = process.env): CommandLine {
  let name: string | undefined;
  try {
    const head = parseArgs(argv, globalFlags, true);
    const [first, ...rest] = head.positionals;
    name = first;
    if (name === undefined) return { kind: 'usage', asked: head.flags.has('help') };
    const cmd = commands.find((c) => c.names.includes(name!));
    if (!cmd) throw usageError(`unknown command "${name}"; see layers --help`);
    const own = new Set(cmd.flags.flatMap((f) => f.names));
    const globalsAfter = globalFlags.map((g) => ({ ...g, names: g.names.filter((n) => !own.has(n)) })).filter((g) => g.names.length > 0);
    const parsed = parseArgs(rest, [...cmd.flags, ...globalsAfter]);
    const merged: Parsed = { flags: new Map([...head.flags, ...parsed.flags]), positionals: parsed.positionals };
    if (merged.flags.has('help')) return { kind: 'command-help', cmd };
    const opts = [...list(head, 'storage-opt'), ...list(parsed, 'storage-opt')];
    const globals: Globals = {
      ...(cmd.store === false
        ? { root: '', runroot: '', driver: '', storageOpts: [] }
        : storeFromFlags({ root: str(merged, 'root') || undefined, runroot: str(merged, 'runroot') || undefined, driver: str(merged, 'driver') || undefined, storageOpts: opts }, env)),
      json: merged.flags.has('json'),
      debug: merged.flags.has('debug'),
    };
    const { positionals } = parsed;
    if (positionals.length < cmd.min) throw usageError(`${cmd.names[0]} needs ${cmd.args}`);
    if (cmd.max !== undefined && positionals.length > cmd.max) throw usageError(`too many arguments (${positionals.slice(cmd.max).join(' ')})`);
    return { kind: 'run', cmd, name, globals, args: merged };
  } catch (err) {
    if (!(err instanceof LayersError)) throw err;
    return { kind: 'error', command: name, error: err };
  }
}

/** Drivers whose home in the graph root says the store is theirs, in the peer's priority order. */
const PROBE_ORDER = ['overlay', 'btrfs', 'vfs'];

/**
 * The store a command runs against (docs/sharing.md, "storage.conf"; docs/cli.md). With no store
 * flag: storage.conf as the peer reads it (lib/config.ts: $CONTAINERS_STORAGE_CONF, else the
 * system files; $STORAGE_DRIVER and $STORAGE_OPTS replace its driver and options), so `layers`
 * and `containers-storage` open the same store. With flags: the flags, a root not given taken
 * from storage.conf as the peer takes it, and, unlike the peer (which then ignores them),
 * $STORAGE_DRIVER and $STORAGE_OPTS for a driver and options not given. No driver named: the one
 * whose home already exists in the graph root (the peer's first probe), else vfs.
 */
export function storeFromFlags(
  flags: { root?: string; runroot?: string; driver?: string; storageOpts: string[] },
  env: Record<string, string | undefined>,
): Pick<Globals, 'root' | 'runroot' | 'driver' | 'storageOpts' | 'storageConf'> {
  const probe = (graphroot: string) => PROBE_ORDER.find((d) => fs.existsSync(path.join(graphroot, d))) ?? 'vfs';
  if (!flags.root && !flags.runroot && !flags.driver && flags.storageOpts.length === 0) {
    const conf = defaultStoreOptions(env);
    return { root: conf.graphroot, runroot: conf.runroot, driver: conf.driver || probe(conf.graphroot), storageOpts: conf.driverOptions, storageConf: conf.file ?? '' };
  }
  // a driver or option flag alone: the peer refuses (no root given); we take the roots from storage.conf
  const roots = flags.root || flags.runroot ? resolveStoreOptions({ graphroot: flags.root, runroot: flags.runroot }, env) : defaultStoreOptions(env);
  const envOpts = env.STORAGE_OPTS ? env.STORAGE_OPTS.split(',').filter(Boolean) : [];
  return {
    root: roots.graphroot,
    runroot: roots.runroot,
    driver: flags.driver || env.STORAGE_DRIVER || probe(roots.graphroot),
    storageOpts: flags.storageOpts.length > 0 ? flags.storageOpts : envOpts,
  };
}

/** The one error line, and with --debug the stack; the exit code: 2 for usage, else 1. */
function fail(command: string | undefined, err: unknown, debug: boolean): number {
  const e = err as Error;
  // every name in a message may come from a tar or a layer: escaped before a terminal sees it
  process.stderr.write(`layers: ${printable(`${command ? `${command}: ` : ''}${e.message}`)}\n`);
  // with --debug: the stack, and those of the errors it wraps (lib/errors.ts, wrapError)
  for (let c: unknown = err; debug && c instanceof Error; c = c.cause) process.stderr.write(`${c === err ? '' : 'caused by: '}${c.stack ?? c.message}\n`);
  return isLayersError(err, 'EUSAGE') ? 2 : 1;
}

export async function main(argv: string[]): Promise<number> {
  const line = parseCommandLine(argv);
  switch (line.kind) {
    case 'usage':
      process.stdout.write(mainUsage());
      return line.asked ? 0 : 2;
    case 'command-help':
      process.stdout.write(commandUsage(line.cmd));
      return 0;
    case 'error':
      return fail(line.command, line.error, argv.includes('--debug') || argv.includes('-D'));
  }
  const { cmd, name, globals, args } = line;
  // failed cleanups (lib/errors.ts, cleanupFailed) are printed with --debug, not dropped
  if (globals.debug) setDebugOutput((text) => process.stderr.write(text + '\n'));
  try {
    return await cmd.run(globals, args, cmd.names[0]);
  } catch (err) {
    return fail(name, err, globals.debug);
  }
}
