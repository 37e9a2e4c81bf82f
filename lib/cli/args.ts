// Command-line parsing for the containers-storage vocabulary: long flags (--name, --name=v),
// short ones (-n v, -n=v), repeatable ones collected in order, and `--` to end flags. Unlike the
// peer's Go flag package, flags may also follow positional arguments.
import { LayersError } from '../errors.ts';

export interface FlagSpec {
  /** long name first, then aliases; one-letter names are short flags */
  names: string[];
  /** takes a value; otherwise a boolean switch */
  value?: boolean;
  /** may be given several times (values collected) */
  multi?: boolean;
  help: string;
}

export interface Parsed {
  /** by the flag's first name: true for switches, the last value, or every value for multi flags */
  flags: Map<string, true | string | string[]>;
  positionals: string[];
}

export function usageError(message: string): LayersError {
  return new LayersError('EUSAGE', message);
}

function spelled(name: string): string {
  return name.length === 1 ? `-${name}` : `--${name}`;
}

export function flagUsage(f: FlagSpec): string {
  return f.names.map(spelled).join(', ') + (f.value ? ' VALUE' : '');
}

/**
 * Parse argv against specs. With stopAtPositional, parsing stops at the first positional (used
 * for the global flags before the command name); the rest is returned in positionals.
 */
export function parseArgs(argv: string[], specs: FlagSpec[], stopAtPositional = false): Parsed {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) for (const n of s.names) byName.set(n, s);
  const flags: Parsed['flags'] = new Map();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      if (stopAtPositional) {
        positionals.push(...argv.slice(i));
        break;
      }
      positionals.push(a);
      continue;
    }
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    // a single dash takes only one-letter names, a double dash only long ones (as the peer)
    const spec = (a.startsWith('--') ? name.length > 1 : name.length === 1) ? byName.get(name) : undefined;
    if (!spec) throw usageError(`unknown flag ${a.split('=')[0]}`);
    const key = spec.names[0];
    if (!spec.value) {
      if (eq >= 0) {
        const v = body.slice(eq + 1);
        if (v !== 'true' && v !== 'false') throw usageError(`flag ${spelled(name)} takes no value`);
        if (v === 'true') flags.set(key, true);
        else flags.delete(key);
      } else flags.set(key, true);
      continue;
    }
    let value: string;
    if (eq >= 0) value = body.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw usageError(`flag ${spelled(name)} needs a value`);
      value = argv[++i];
    }
    if (spec.multi) {
      const prev = flags.get(key);
      flags.set(key, [...(Array.isArray(prev) ? prev : []), value]);
    } else flags.set(key, value);
  }
  return { flags, positionals };
}

export function str(p: Parsed, key: string): string | undefined {
  const v = p.flags.get(key);
  return typeof v === 'string' ? v : undefined;
}

export function list(p: Parsed, key: string): string[] {
  const v = p.flags.get(key);
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

export function bool(p: Parsed, key: string): boolean {
  return p.flags.get(key) === true;
}
