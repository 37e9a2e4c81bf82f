#!/usr/bin/env node
// The `layers` command. hack/setup.sh compiles lib/ and drivers/ into dist/ (plain JavaScript,
// which starts in a third of the time tsx needs to register and transform the TypeScript); that
// copy runs when it is at least as new as every source file. Otherwise (a fresh checkout, or a
// source edited since) the TypeScript runs through tsx, whose loader is registered here, so this
// works from any cwd and through an npm-link symlink (Node resolves the real path of the main
// module, so 'tsx' is found in this package's node_modules).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const stamp = path.join(root, 'dist', '.built');

/** Whether dist/ was built after the last change to any .ts file under lib/ and drivers/. */
function distIsFresh() {
  let built;
  try {
    built = fs.statSync(stamp).mtimeMs;
  } catch {
    return false;
  }
  const newer = (dir) =>
    fs.readdirSync(dir, { withFileTypes: true }).some((e) => {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) return newer(p);
      return e.name.endsWith('.ts') && fs.statSync(p).mtimeMs > built;
    });
  return !newer(path.join(root, 'lib')) && !newer(path.join(root, 'drivers'));
}

if (distIsFresh()) {
  await import('../dist/lib/cli/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../lib/cli/main.ts');
}
