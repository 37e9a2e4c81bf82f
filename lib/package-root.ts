// The package's root directory (where package.json is), found from this file: the same whether
// the code runs as TypeScript from lib/ or as the JavaScript compiled into
// dist/lib/ (`npm run build`; one level deeper), so paths to build/, prebuilds/ and package.json
// hold in both.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function find(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`layers: no package.json above ${from}`);
  }
}

export const packageRoot: string = find(path.dirname(fileURLToPath(import.meta.url)));
