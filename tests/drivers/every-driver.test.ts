// Every driver in the driver list runs the shared suite: a driver added to driverNames without
// a tests/drivers/<name>.test.ts fails here (harness.ts's table of filesystems fails the type check).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { driverNames } from '../../drivers/index.ts';

test('each driver in driverNames has a suite file that runs the shared suite for it', (t) => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const name of driverNames) {
    const file = path.join(here, `${name}.test.ts`);
    t.true(fs.existsSync(file), `${name}: no ${file}`);
    t.regex(fs.readFileSync(file, 'utf8'), new RegExp(`driverSuite\\('${name}'\\)`), `${name}.test.ts runs the suite for ${name}`);
  }
});
