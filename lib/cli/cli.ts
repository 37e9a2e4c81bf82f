// `layers`: a thin shell over the public API (lib/index.ts) with containers-storage's command
// names, flags and output. Exit 0 ok, 1 failed, 2 usage; errors are one line on stderr,
// "layers: <command>: <what failed>: <why>".
import { isLayersError } from '../errors.ts';
import { defaultRoot, defaultRunroot } from '../index.ts';
import { flagUsage, list, parseArgs, type FlagSpec, usageError } from './args.ts';
import { commands, type Globals } from './commands.ts';

const globalFlags: FlagSpec[] = [
  { names: ['root', 'graph', 'g'], value: true, help: `root of the storage tree (default ${defaultRoot})` },
  { names: ['runroot', 'run', 'R'], value: true, help: `root of the runtime state tree (default ${defaultRunroot})` },
  { names: ['driver', 'storage-driver', 's'], value: true, help: 'storage driver to use ($STORAGE_DRIVER; default vfs)' },
  { names: ['storage-opt'], value: true, multi: true, help: 'storage driver option, key=value; repeatable ($STORAGE_OPTS, comma-separated)' },
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

function commandUsage(c: (typeof commands)[number]): string {
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

export async function main(argv: string[]): Promise<number> {
  let cmdName = '';
  let debug = argv.includes('--debug') || argv.includes('-D');
  try {
    const head = parseArgs(argv, globalFlags, true);
    const [name, ...rest] = head.positionals;
    if (!name) {
      process.stdout.write(mainUsage());
      return head.flags.has('help') ? 0 : 2;
    }
    cmdName = name;
    const cmd = commands.find((c) => c.names.includes(name));
    if (!cmd) throw usageError(`unknown command "${name}"; see layers --help`);
    // global flags may also follow the command; the command's own flags win on a clash (-f, -l)
    const own = new Set(cmd.flags.flatMap((f) => f.names));
    const globalsAfter = globalFlags.map((g) => ({ ...g, names: g.names.filter((n) => !own.has(n)) })).filter((g) => g.names.length > 0);
    const parsed = parseArgs(rest, [...cmd.flags, ...globalsAfter]);
    const merged = new Map([...head.flags, ...parsed.flags]);
    // multi-valued globals add up from both places
    const opts = [...list(head, 'storage-opt'), ...list(parsed, 'storage-opt')];
    if (merged.has('help')) {
      process.stdout.write(commandUsage(cmd));
      return 0;
    }
    debug = merged.has('debug');
    const envOpts = process.env.STORAGE_OPTS ? process.env.STORAGE_OPTS.split(',').filter(Boolean) : [];
    const g: Globals = {
      root: (merged.get('root') as string | undefined) ?? defaultRoot,
      runroot: (merged.get('runroot') as string | undefined) ?? defaultRunroot,
      driver: (merged.get('driver') as string | undefined) ?? process.env.STORAGE_DRIVER ?? 'vfs',
      storageOpts: opts.length > 0 ? opts : envOpts,
      json: merged.has('json'),
    };
    const { positionals } = parsed;
    if (positionals.length < cmd.min) throw usageError(`${cmd.names[0]} needs ${cmd.args}`);
    if (cmd.max !== undefined && positionals.length > cmd.max) throw usageError(`too many arguments (${positionals.slice(cmd.max).join(' ')})`);
    return await cmd.run(g, { flags: merged, positionals }, cmd.names[0]);
  } catch (err) {
    const e = err as Error;
    const where = cmdName ? `${cmdName}: ` : '';
    process.stderr.write(`layers: ${where}${e.message}\n`);
    if (debug && e.stack) process.stderr.write(e.stack + '\n');
    if (isLayersError(err, 'EUSAGE')) return 2;
    return 1;
  }
}
