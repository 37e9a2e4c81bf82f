// The shared driver suite (suite.ts) for the vfs driver, on the filesystem harness.ts gives it.
import { driverSuite } from './suite.ts';

driverSuite('vfs');
