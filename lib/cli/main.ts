// Entry point of the `layers` command (bin/layers.js loads it through tsx).
import { main } from './cli.ts';

// SIGINT/SIGTERM (docs/cli.md, "Signals"): while this process changes a store under its write
// lock, the native loops are told to stop before their next file and the operation fails through
// its normal path (the half-made layer removed, the locks released); then, or at once when it
// only reads or waits for a lock, or at a second signal, the process ends by the signal itself.
let signalled: NodeJS.Signals | undefined;

/** The default action of the signal: the caller (a shell: 128+n) sees what ended us. Not exit():
 *  libuv joins its worker threads at exit, and one may be blocked waiting for a lock. */
function dieBy(signal: NodeJS.Signals): void {
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
}

/** The lock and addon modules (lockfile.ts loads node:crypto), imported by the first signal,
 *  not at start-up: `layers version` starts about as fast as node (docs/performance.md,
 *  "Start-up"). A command that opened a store has loaded them already, so they come at once;
 *  before that no lock is held and the signal ends the process. */
async function onSignal(signal: NodeJS.Signals): Promise<void> {
  const [{ writingUnderLock }, { native }] = await Promise.all([import('../lockfile.ts'), import('../native.ts')]);
  if (signalled !== undefined || !writingUnderLock()) return dieBy(signal);
  signalled = signal;
  try {
    native().cancel();
  } catch {
    dieBy(signal);
  }
}
process.on('SIGINT', (signal) => void onSignal(signal));
process.on('SIGTERM', (signal) => void onSignal(signal));

const code = await main(process.argv.slice(2));
if (signalled !== undefined) dieBy(signalled);
// exitCode, not exit(): output still queued for a pipe gets written before the process ends
else process.exitCode = code;
