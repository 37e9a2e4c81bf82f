// Benchmark: the store's commands beside the peer (containers-storage 1.43) on the same data, one
// driver per filesystem (overlay on ext4, btrfs on btrfs, vfs on xfs), in one run; GNU tar does
// the tar-moving work beside them as a floor. Whole-process wall times, so our Node start-up
// (the `version` row) is in every one of ours: that is what a user of the CLI waits for.
// Prints medians and the ratio peer / ours (above 1: we are faster). Root only; run it in a
// private mount namespace:
//   unshare -m --propagation private node --import tsx hack/bench-store.ts
//     [--gib N] [--files N] [--drivers overlay,btrfs,vfs] [--rounds N] [--disk]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeBulkTree } from '../tests/fixtures/tree.ts';
import { imageDir, listOpt, median, numOpt, settle, Table, timeProc, withLoopFs, type FsKind } from './bench-lib.ts';

const total = Math.round(numOpt('--gib', 1) * (1 << 30));
const files = numOpt('--files', 50_000);
const drivers = listOpt('--drivers', ['overlay', 'btrfs', 'vfs']) as Array<'overlay' | 'btrfs' | 'vfs'>;
const ROUNDS = numOpt('--rounds', 3);
const FS: Record<(typeof drivers)[number], FsKind> = { overlay: 'ext4', btrfs: 'btrfs', vfs: 'xfs' };
const BIN = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'bin', 'layers.js');
const MAP = ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'];
/** two ranges each: the peer cannot mount these idmapped (its canUseShifting wants one contiguous map) */
const NON_CONTIGUOUS_MAP = ['--uidmap', '0:100000:1000:1000:300000:64536', '--gidmap', '0:200000:1001:1001:400000:64535'];
/** our switches between idmapped mounts and mapped top layers (docs/images-and-containers.md, "Idmapped mounts") */
const IDMAP_ENV: Record<'on' | 'off', Record<string, Record<string, string>>> = {
  on: { overlay: {}, btrfs: { LAYERS_IDMAPPED_MOUNTS: 'yes' }, vfs: { LAYERS_IDMAPPED_MOUNTS: 'yes' } },
  off: { overlay: { _CONTAINERS_OVERLAY_DISABLE_IDMAP: 'yes' }, btrfs: { _CONTAINERS_BTRFS_DISABLE_IDMAP: 'yes' }, vfs: { _CONTAINERS_VFS_DISABLE_IDMAP: 'yes' } },
};

const table = new Table(['driver (fs)', 'operation', 'GNU tar', 'peer', 'ours', 'peer/ours', 'notes']);
// the sources, the tars, both stores and up to two copies of the layer each (vfs and the peer's
// overlay shift copy every body; xfs shares them)
const size = total * 10 + 2 * 2 ** 30;
const images = imageDir(size);
try {
  for (const driver of drivers) {
    withLoopFs(path.join(images.base, driver), FS[driver], size, (mnt) => {
      const src = path.join(mnt, 'src');
      fs.mkdirSync(src);
      makeBulkTree(src, files, total);
      const tar = path.join(mnt, 'layer.tar');
      execFileSync('tar', ['-cf', tar, '-C', src, '.']);
      settle(mnt);
      const g = (who: string) => ['-g', path.join(mnt, who), '-R', path.join(mnt, `${who}-run`), '--storage-driver', driver];
      const tools = {
        peer: (a: string[]) => ['containers-storage', [...g('peer'), ...a]] as const,
        ours: (a: string[]) => [process.execPath, [BIN, ...g('ours'), ...a]] as const,
      };
      const run = (who: keyof typeof tools, a: string[], env: Record<string, string> = {}) => {
        const [cmd, args] = tools[who](a);
        return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      };
      const time = (who: keyof typeof tools, a: string[]) => {
        const [cmd, args] = tools[who](a);
        const ms = timeProc(cmd, [...args]);
        settle(mnt);
        return ms;
      };
      const firstLine = (s: string) => s.trim().split('\n')[0];
      const warm = (p: string) => execFileSync('sh', ['-c', fs.statSync(p).isDirectory() ? 'tar -cf - -C "$1" . | cat > /dev/null' : 'cat "$1" > /dev/null', 'warm', p]);

      /**
       * One row: GNU tar's part (if any), then the peer and ours, alternating ROUNDS times; `step`
       * times one run of a tool and undoes what it made (untimed), so each round starts alike.
       */
      const compare = (label: string, step: (who: keyof typeof tools) => number, gnu?: () => number, note = '') => {
        const times: Record<'gnu' | 'peer' | 'ours', number[]> = { gnu: [], peer: [], ours: [] };
        for (let r = 0; r < ROUNDS; r++) {
          if (gnu) times.gnu.push(gnu());
          times.peer.push(step('peer'));
          times.ours.push(step('ours'));
        }
        const [gm, pm, om] = [times.gnu.length ? median(times.gnu) : NaN, median(times.peer), median(times.ours)];
        const runs = times.peer.map((p, i) => `${p.toFixed(0)}/${times.ours[i].toFixed(0)}`).join(' ');
        table.row([`${driver} (${FS[driver]})`, label, gnu ? `${gm.toFixed(0)} ms` : '', `${pm.toFixed(0)} ms`, `${om.toFixed(0)} ms`, (pm / om).toFixed(2), `${note}runs peer/ours ${runs}`]);
      };

      compare('start-up (`version`)', (who) => time(who, ['version']));

      const extracted = path.join(mnt, 'gnu-x');
      compare(
        'import-layer of a 1-layer tar',
        (who) => {
          warm(tar);
          const t0 = process.hrtime.bigint();
          const id = firstLine(run(who, ['import-layer', '-f', tar]));
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          run(who, ['delete-layer', id]);
          settle(mnt);
          return ms;
        },
        () => {
          fs.mkdirSync(extracted);
          warm(tar);
          const ms = timeProc('tar', ['-xf', tar, '-C', extracted]);
          fs.rmSync(extracted, { recursive: true });
          settle(mnt);
          return ms;
        },
        'GNU tar: tar -xf into a directory; ours and the peer also hash the tar; ',
      );

      // one layer per store for the rest, and an image on it that stays (so removing the
      // per-round images keeps the layer)
      for (const who of ['peer', 'ours'] as const) {
        run(who, ['import-layer', '-n', 'base', '-f', tar]);
        run(who, ['create-image', '-n', 'keeper', 'base']);
      }
      settle(mnt);
      const out = path.join(mnt, 'diff.tar');
      compare(
        'diff of that layer to a file',
        (who) => {
          const ms = time(who, ['diff', ...(who === 'peer' ? ['-u'] : []), '-f', out, 'base']);
          fs.rmSync(out);
          settle(mnt);
          return ms;
        },
        () => {
          warm(src);
          const ms = timeProc('tar', ['-cf', out, '-C', src, '.']);
          fs.rmSync(out);
          settle(mnt);
          return ms;
        },
        'GNU tar: tar -cf of the same tree; ',
      );
      compare('create-layer: a child of that layer', (who) => {
        const t0 = process.hrtime.bigint();
        const id = firstLine(run(who, ['create-layer', 'base']));
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        run(who, ['delete-layer', id]);
        settle(mnt);
        return ms;
      });
      let n = 0;
      for (const [shape, map] of [
        ['contiguous', MAP],
        ['non-contiguous', NON_CONTIGUOUS_MAP],
      ] as const)
        for (const idmap of ['on', 'off'] as const)
          compare(
            `create-container, ${shape} mapping, idmapped ${idmap}`,
            (who) => {
              const env = who === 'ours' ? IDMAP_ENV[idmap][driver] : {};
              const image = `img${n++}`;
              run(who, ['create-image', '-n', image, 'base']);
              settle(mnt);
              const t0 = process.hrtime.bigint();
              run(who, ['create-container', '-n', `c-${image}`, ...map, image], env);
              const ms = Number(process.hrtime.bigint() - t0) / 1e6;
              run(who, ['delete-container', `c-${image}`], env);
              run(who, ['delete-image', image], env);
              settle(mnt);
              return ms;
            },
            undefined,
            idmap === 'on' ? 'ours: no mapped top layer where idmapped mounts work; ' : 'ours: a new mapped top layer each time (copy and shift); the peer as it chooses; ',
          );
      for (const who of ['peer', 'ours'] as const) run(who, ['shutdown']);
    });
  }
} finally {
  images.done();
}
table.print(
  `store benchmark: a layer of ${files} files, ${(total / 2 ** 30).toFixed(2)} GiB; loop images ${images.inRam ? 'in RAM' : 'on disk'}; whole-process times, median of ${ROUNDS} alternating runs; peer/ours above 1: ours is faster`,
);
