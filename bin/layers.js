#!/usr/bin/env node
// The `layers` command. It runs the compiled JavaScript in dist/ (`npm run build`), which is all
// an installed package has. A git checkout also has the TypeScript sources: there dist/ runs only
// while it is at least as new as every source file, and otherwise (a fresh checkout, or a source
// edited since) the TypeScript runs through tsx, a development dependency, whose loader is
// registered here, so this works from any cwd and through an npm-link symlink (Node resolves the
// real path of the main module, so 'tsx' is found in this package's node_modules).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Whether dist/ was built after the last change to any .ts file under lib/ and drivers/. */
function distIsFresh() {
  let built;
  try {
    built = fs.statSync(path.join(root, 'dist', '.built')).mtimeMs;
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

const checkout = fs.existsSync(path.join(root, 'lib', 'cli', 'main.ts'));
if (!checkout || distIsFresh()) {
  await import('../dist/cli/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../lib/cli/main.ts');
}
