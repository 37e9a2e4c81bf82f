// Entry point of the `layers` command (bin/layers.js loads it through tsx).
import { writingUnderLock } from '../lockfile.ts';
import { native } from '../native.ts';
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

function onSignal(signal: NodeJS.Signals): void {
  if (signalled !== undefined || !writingUnderLock()) return dieBy(signal);
  signalled = signal;
  try {
    native().cancel();
  } catch {
    dieBy(signal);
  }
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const code = await main(process.argv.slice(2));
if (signalled !== undefined) dieBy(signalled);
// exitCode, not exit(): output still queued for a pipe gets written before the process ends
else process.exitCode = code;
