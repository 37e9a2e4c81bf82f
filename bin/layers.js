#!/usr/bin/env node
// The `layers` command. The CLI is TypeScript run through tsx; its loader is registered here, so
// this works from any cwd and through an npm-link symlink (Node resolves the real path of the
// main module, so 'tsx' is found in this package's node_modules).
import { register } from 'tsx/esm/api';

register();
await import('../lib/cli/main.ts');
