// Two sets of test files. Most run two files at a time. The *.timed.test.ts files assert that
// something takes well under a stated time (a snapshot, an O(1) template copy); each of them
// commits a filesystem transaction through a loop device, whose flush waits on the host disk,
// so beside another file writing a GiB they measure that file's writeback, not our code.
// hack/test.sh runs them after the rest, one at a time: LAYERS_TESTS=timed picks them,
// LAYERS_TESTS=all takes every file (for a run of named files).
const which = process.env.LAYERS_TESTS ?? 'untimed';
const files = {
  untimed: ['tests/**/*.test.ts', '!tests/**/*.timed.test.ts'],
  timed: ['tests/**/*.timed.test.ts'],
  all: ['tests/**/*.test.ts'],
}[which];
if (!files) throw new Error(`LAYERS_TESTS=${which}: expected untimed, timed or all`);

export default {
  files,
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  timeout: '5m',
  concurrency: which === 'timed' ? 1 : 2,
};
