// storage.conf, read as containers/storage v1.43 reads it (types/options.go, pkg/config), so that
// with no flags `layers` and the peer (containers-storage, podman) pick the same store and
// driver (docs/sharing.md, "storage.conf"). Only the root (rootful) case is implemented; the
// rootless paths are documented there.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { LayersError } from './errors.ts';

/** The peer's built-in roots, used when no file names one. */
export const DEFAULT_GRAPHROOT = '/var/lib/containers/storage';
export const DEFAULT_RUNROOT = '/run/containers/storage';
/** The system file and the administrator's override (types/options_linux.go). */
export const SYSTEM_CONF = '/usr/share/containers/storage.conf';
export const OVERRIDE_CONF = '/etc/containers/storage.conf';

/** `[storage.options]` as the peer decodes it: the keys it knows, typed as it types them. */
export interface StorageOptionsTable {
  additionalimagestores: string[];
  additionallayerstores: string[];
  size?: string;
  'remap-uids'?: string;
  'remap-gids'?: string;
  'remap-user'?: string;
  'remap-group'?: string;
  ignore_chown_errors?: string;
  /** a number (os.FileMode) at this level; the overlay table's force_mask is a string */
  force_mask?: number;
  'root-auto-userns-user'?: string;
  'auto-userns-min-size'?: number;
  'auto-userns-max-size'?: number;
  skip_mount_home?: string;
  mount_program?: string;
  mountopt?: string;
  pull_options?: Record<string, string>;
  'disable-volatile'?: boolean;
  /** the per-driver tables, `[storage.options.<driver>]`: key -> string value */
  drivers: Record<string, Record<string, string>>;
}

/** What the peer stores in StoreOptions: the parts `layers` uses. */
export interface StoreOptions {
  /** '' when nothing names one: the peer then probes drivers in its priority order */
  driver: string;
  graphroot: string;
  runroot: string;
  /** '<driver>.<key>=<value>' strings, in the peer's order (also what `--storage-opt` adds) */
  driverOptions: string[];
}

/** One storage.conf read the peer's way (its ReloadConfigurationFile), env vars applied. */
export interface StorageConf extends StoreOptions {
  /** the file read */
  file: string;
  rootlessStoragePath: string;
  options: StorageOptionsTable;
}

type Env = Record<string, string | undefined>;

function fail(file: string, message: string): never {
  throw new LayersError('EUSAGE', `${file}: ${message}`);
}

function table(file: string, v: unknown, where: string): Record<string, unknown> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(file, `${where} must be a table`);
  return v as Record<string, unknown>;
}

function str(file: string, t: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') fail(file, `${where}.${key} must be a string`);
  return v;
}

function strList(file: string, t: Record<string, unknown>, key: string, where: string): string[] {
  const v = t[key];
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) fail(file, `${where}.${key} must be an array of strings`);
  return v as string[];
}

function uint(file: string, t: Record<string, unknown>, key: string, where: string): number | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0xffffffff) fail(file, `${where}.${key} must be an unsigned integer`);
  return n;
}

/** The per-driver keys the peer reads (pkg/config: OverlayOptionsConfig, ...), all strings. */
const DRIVER_TABLE_KEYS: Record<string, string[]> = {
  aufs: ['mountopt'],
  btrfs: ['min_space', 'size'],
  thinpool: [
    'autoextend_percent', 'autoextend_threshold', 'basesize', 'blocksize', 'directlvm_device', 'directlvm_device_force',
    'fs', 'log_level', 'metadatasize', 'min_free_space', 'mkfsarg', 'mountopt', 'size', 'use_deferred_deletion',
    'use_deferred_removal', 'xfs_nospace_max_retries',
  ],
  overlay: ['ignore_chown_errors', 'mountopt', 'mount_program', 'size', 'inodes', 'skip_mount_home', 'force_mask'],
  vfs: ['ignore_chown_errors'],
  zfs: ['mountopt', 'fsname', 'size'],
};

function optionsTable(file: string, raw: Record<string, unknown>): StorageOptionsTable {
  const w = 'storage.options';
  const drivers: Record<string, Record<string, string>> = {};
  for (const [name, keys] of Object.entries(DRIVER_TABLE_KEYS)) {
    const t = table(file, raw[name], `${w}.${name}`);
    const out: Record<string, string> = {};
    for (const k of keys) {
      const v = str(file, t, k, `${w}.${name}`);
      if (v !== undefined) out[k] = v;
    }
    drivers[name] = out;
  }
  const pull = table(file, raw.pull_options, `${w}.pull_options`);
  const pullOptions: Record<string, string> = {};
  for (const k of Object.keys(pull)) pullOptions[k] = str(file, pull, k, `${w}.pull_options`)!;
  const dv = raw['disable-volatile'];
  if (dv !== undefined && typeof dv !== 'boolean') fail(file, `${w}.disable-volatile must be a boolean`);
  return {
    additionalimagestores: strList(file, raw, 'additionalimagestores', w),
    additionallayerstores: strList(file, raw, 'additionallayerstores', w),
    size: str(file, raw, 'size', w),
    'remap-uids': str(file, raw, 'remap-uids', w),
    'remap-gids': str(file, raw, 'remap-gids', w),
    'remap-user': str(file, raw, 'remap-user', w),
    'remap-group': str(file, raw, 'remap-group', w),
    ignore_chown_errors: str(file, raw, 'ignore_chown_errors', w),
    force_mask: uint(file, raw, 'force_mask', w),
    'root-auto-userns-user': str(file, raw, 'root-auto-userns-user', w),
    'auto-userns-min-size': uint(file, raw, 'auto-userns-min-size', w),
    'auto-userns-max-size': uint(file, raw, 'auto-userns-max-size', w),
    skip_mount_home: str(file, raw, 'skip_mount_home', w),
    mount_program: str(file, raw, 'mount_program', w),
    mountopt: str(file, raw, 'mountopt', w),
    pull_options: raw.pull_options === undefined ? undefined : pullOptions,
    'disable-volatile': dv as boolean | undefined,
    drivers,
  };
}

/** Go's os.FileMode.String() for permission bits, which the peer prints for a numeric force_mask in the overlay case. */
function fileModeString(mode: number): string {
  const rwx = 'rwxrwxrwx';
  let s = '-';
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? rwx[i] : '-';
  return s;
}

/** The per-driver options (pkg/config GetGraphDriverOptions): the driver's table first, else the
 *  same key of [storage.options]. Only the peer's drivers have any. */
function perDriverOptions(driver: string, o: StorageOptionsTable): string[] {
  const out: string[] = [];
  const add = (key: string, v: string | undefined, prefix = driver) => {
    if (v) out.push(`${prefix}.${key}=${v}`);
  };
  const d = (name: string) => o.drivers[name] ?? {};
  switch (driver) {
    case 'aufs':
      if (d('aufs').mountopt) return [`aufs.mountopt=${d('aufs').mountopt}`];
      add('mountopt', o.mountopt);
      break;
    case 'btrfs':
      if (d('btrfs').min_space) return [`btrfs.min_space=${d('btrfs').min_space}`];
      add('size', d('btrfs').size || o.size);
      break;
    case 'devicemapper': {
      const tp = d('thinpool');
      const dm: Array<[string, string]> = [
        ['thinp_autoextend_percent', 'autoextend_percent'], ['thinp_autoextend_threshold', 'autoextend_threshold'],
        ['basesize', 'basesize'], ['blocksize', 'blocksize'], ['directlvm_device', 'directlvm_device'],
        ['directlvm_device_force', 'directlvm_device_force'], ['fs', 'fs'], ['libdm_log_level', 'log_level'],
        ['metadata_size', 'metadatasize'], ['min_free_space', 'min_free_space'], ['mkfsarg', 'mkfsarg'],
      ];
      for (const [opt, key] of dm) add(opt, tp[key], 'dm');
      add('mountopt', tp.mountopt || o.mountopt);
      add('size', tp.size || o.size);
      add('use_deferred_deletion', tp.use_deferred_deletion, 'dm');
      add('use_deferred_removal', tp.use_deferred_removal, 'dm');
      add('xfs_nospace_max_retries', tp.xfs_nospace_max_retries, 'dm');
      break;
    }
    case 'overlay':
    case 'overlay2': {
      const ov = d('overlay');
      add('ignore_chown_errors', ov.ignore_chown_errors || o.ignore_chown_errors);
      add('mount_program', ov.mount_program || o.mount_program);
      add('mountopt', ov.mountopt || o.mountopt);
      add('size', ov.size || o.size);
      add('inodes', ov.inodes);
      add('skip_mount_home', ov.skip_mount_home || o.skip_mount_home);
      if (ov.force_mask) add('force_mask', ov.force_mask);
      else if (o.force_mask) add('force_mask', fileModeString(o.force_mask));
      break;
    }
    case 'vfs':
      add('ignore_chown_errors', d('vfs').ignore_chown_errors || o.ignore_chown_errors);
      break;
    case 'zfs': {
      const z = d('zfs');
      add('fsname', z.fsname);
      add('mountopt', z.mountopt || o.mountopt);
      add('size', z.size || o.size);
      break;
    }
  }
  return out;
}

/**
 * storage.conf text, read as the peer's ReloadConfigurationFile reads it: `STORAGE_DRIVER`
 * replaces the file's driver, `overlay2` becomes `overlay`, and `STORAGE_OPTS`, when set (even
 * empty), replaces every driver option the file gave. Driver options come in the peer's order:
 * one `<driver>.imagestore=` per additional image store, `<driver>.additionallayerstore=`, the
 * generic `[storage.options]` keys, then the driver's own table (where the generic key can
 * appear a second time, as in the peer). Paths are returned as written (see defaultStoreOptions).
 */
/** smol-toml, loaded when a storage.conf is parsed, not at start-up (`layers version` reads none; docs/api.md, "Installing") */
function parseToml(text: string): unknown {
  return (createRequire(import.meta.url)('smol-toml') as typeof import('smol-toml')).parse(text);
}

export function parseStorageConf(text: string, file: string, env: Env = process.env): StorageConf {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    fail(file, (err as Error).message);
  }
  const storage = table(file, doc.storage, 'storage');
  const options = optionsTable(file, table(file, storage.options, 'storage.options'));
  // The generic options are prefixed with the driver as written (or STORAGE_DRIVER), the
  // per-driver ones with the normalized name: both as the peer does.
  const fileDriver = env.STORAGE_DRIVER || (str(file, storage, 'driver', 'storage') ?? '');
  const driver = fileDriver === 'overlay2' ? 'overlay' : fileDriver;
  let driverOptions: string[] = [
    ...options.additionalimagestores.map((s) => `${fileDriver}.imagestore=${s}`),
    ...options.additionallayerstores.map((s) => `${fileDriver}.additionallayerstore=${s}`),
  ];
  const generic: Array<[string, string | undefined]> = [
    ['size', options.size],
    ['mount_program', options.mount_program],
    ['skip_mount_home', options.skip_mount_home],
    ['ignore_chown_errors', options.ignore_chown_errors],
    ['force_mask', options.force_mask ? options.force_mask.toString(8) : undefined],
    ['mountopt', options.mountopt],
  ];
  for (const [key, v] of generic) if (v) driverOptions.push(`${fileDriver}.${key}=${v}`);
  driverOptions.push(...perDriverOptions(driver, options));
  const envOpts = env.STORAGE_OPTS;
  if (envOpts !== undefined) driverOptions = envOpts === '' ? [] : envOpts.split(',');
  return {
    file,
    driver,
    graphroot: str(file, storage, 'graphroot', 'storage') ?? '',
    runroot: str(file, storage, 'runroot', 'storage') ?? '',
    rootlessStoragePath: str(file, storage, 'rootless_storage_path', 'storage') ?? '',
    options,
    driverOptions,
  };
}

/** parseStorageConf on a file. */
export function readStorageConf(file: string, env: Env = process.env): StorageConf {
  return parseStorageConf(fs.readFileSync(file, 'utf8'), file, env);
}

/** Go's os.ExpandEnv: $NAME, ${NAME}, and the one-character shell names ($1, $$, ...); unset is ''. */
function expandEnv(s: string, env: Env): string {
  return s.replace(/\$\{([^}]*)\}|\$([A-Za-z0-9_]+|[*#$@!?-])/g, (_m, braced: string | undefined, bare: string) => {
    let name = braced ?? bare;
    // a bare name starting with a digit is the one digit, as in the shell
    let rest = '';
    if (braced === undefined && /^[0-9]/.test(name)) {
      rest = name.slice(1);
      name = name[0]!;
    }
    return (env[name] ?? '') + rest;
  });
}

/** The peer's expandEnvPath for root: $UID is 0, env vars expanded, symlinks resolved where the path exists. */
function expandRoot(p: string, env: Env): string {
  const expanded = expandEnv(p.replaceAll('$UID', '0'), env);
  try {
    return fs.realpathSync(expanded);
  } catch {
    return path.normalize(expanded).replace(/(.)\/$/, '$1');
  }
}

function exists(file: string): boolean {
  try {
    fs.statSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Which file the peer takes its store from, for root: `$CONTAINERS_STORAGE_CONF` when set (a
 * missing file is then an error), else `/usr/share/containers/storage.conf` if it exists, else
 * `/etc/containers/storage.conf` if it exists, else none. Yes, /usr/share before /etc: v1.43's
 * DefaultStoreOptions first reads /etc (preferring it), then reads the file DefaultConfigFile()
 * named before that first read, the /usr/share one, over the result whenever it exists
 * (verified with Debian's containers-storage 1.43.0 in tests/config.test.ts; docs/sharing.md).
 */
export function storageConfPath(env: Env = process.env): string | undefined {
  const explicit = env.CONTAINERS_STORAGE_CONF;
  if (explicit !== undefined) return explicit;
  if (exists(SYSTEM_CONF)) return SYSTEM_CONF;
  if (exists(OVERRIDE_CONF)) return OVERRIDE_CONF;
  return undefined;
}

/** The peer's first read (loadDefaultStoreOptions): the explicit file, else /etc, else /usr/share,
 *  with the built-in roots where the file names none. The peer fills a root missing from the
 *  flags from this, and fails to start when this file is broken. */
function baseDefaults(env: Env): StoreOptions {
  const withRoots = (o: StoreOptions): StoreOptions => ({
    ...o,
    graphroot: o.graphroot || DEFAULT_GRAPHROOT,
    runroot: o.runroot || DEFAULT_RUNROOT,
  });
  const explicit = env.CONTAINERS_STORAGE_CONF;
  if (explicit !== undefined) {
    if (!exists(explicit)) throw new LayersError('EUSAGE', `${explicit} (CONTAINERS_STORAGE_CONF): no such file`);
    return withRoots(readStorageConf(explicit, env));
  }
  for (const file of [OVERRIDE_CONF, SYSTEM_CONF]) if (exists(file)) return withRoots(readStorageConf(file, env));
  return { driver: '', graphroot: DEFAULT_GRAPHROOT, runroot: DEFAULT_RUNROOT, driverOptions: [] };
}

/**
 * What the peer's CLI uses when no store flag is given (DefaultStoreOptions for root, then
 * GetStore): the file storageConfPath() names, `$UID` and env vars expanded in its roots and
 * symlinks resolved, built-in roots where it names none, and `file` saying which file it was
 * (undefined: none).
 */
export function defaultStoreOptions(env: Env = process.env): StoreOptions & { file: string | undefined } {
  const base = baseDefaults(env);
  const file = storageConfPath(env);
  const conf: StoreOptions = file === undefined ? base : readStorageConf(file, env);
  return {
    file,
    driver: conf.driver,
    graphroot: path.resolve(conf.graphroot ? expandRoot(conf.graphroot, env) : base.graphroot),
    runroot: path.resolve(conf.runroot ? expandRoot(conf.runroot, env) : base.runroot),
    driverOptions: conf.driverOptions,
  };
}

/** The store flags of the peer's CLI, given before the command: --graph/-g, --run/-R,
 *  --storage-driver/-s, --storage-opt (repeatable). */
export interface StoreFlags {
  graphroot?: string;
  runroot?: string;
  driver?: string;
  storageOpts?: string[];
}

/**
 * The store the peer's CLI opens (cmd/containers-storage main.go, then GetStore): with no store
 * flag at all, defaultStoreOptions(); with any, the flags alone: storage.conf's driver and driver
 * options are then not used (nor STORAGE_DRIVER / STORAGE_OPTS), a missing graph or run root is
 * taken from the defaults, and neither root given is an error. An empty driver means: probe.
 */
export function resolveStoreOptions(flags: StoreFlags, env: Env = process.env): StoreOptions {
  const opts = flags.storageOpts ?? [];
  if (!flags.graphroot && !flags.runroot && !flags.driver && opts.length === 0) {
    const { driver, graphroot, runroot, driverOptions } = defaultStoreOptions(env);
    return { driver, graphroot, runroot, driverOptions };
  }
  if (!flags.graphroot && !flags.runroot) {
    throw new LayersError('EUSAGE', 'no storage runroot or graphroot specified: missing necessary StoreOptions');
  }
  const base = !flags.graphroot || !flags.runroot ? baseDefaults(env) : undefined;
  return {
    driver: flags.driver ?? '',
    graphroot: path.resolve(flags.graphroot || base!.graphroot),
    runroot: path.resolve(flags.runroot || base!.runroot),
    driverOptions: [...opts],
  };
}
