// A second process for the lock tests: holds a LockFile on the path in argv[2] and obeys one
// command per stdin line (lock, rlock, trylock, tryrlock, unlock, touch, modified, token),
// answering each with one stdout line: "ok", "true"/"false", or the token in hex.
import readline from 'node:readline';
import { LockFile } from '../../lib/lockfile.ts';

const lock = LockFile.get(process.argv[2]!);
const say = (s: string) => process.stdout.write(`${s}\n`);
for await (const line of readline.createInterface({ input: process.stdin })) {
  try {
    switch (line.trim()) {
      case 'lock': await lock.lock(); say('ok'); break;
      case 'rlock': await lock.rLock(); say('ok'); break;
      case 'trylock': say(String(lock.tryLock())); break;
      case 'tryrlock': say(String(lock.tryRLock())); break;
      case 'unlock': lock.unlock(); say('ok'); break;
      case 'touch': lock.touch(); say('ok'); break;
      case 'modified': say(String(lock.modified())); break;
      case 'token': say(lock.lastWriterToken.toString('hex')); break;
      default: say(`error: unknown command ${line}`);
    }
  } catch (err) {
    say(`error: ${(err as Error).message}`);
  }
}
