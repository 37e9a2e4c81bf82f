// Entry point of the `layers` command (bin/layers.js loads it through tsx).
import { main } from './cli.ts';

// exitCode, not exit(): output still queued for a pipe gets written before the process ends
process.exitCode = await main(process.argv.slice(2));
