// The shared driver suite (suite.ts) for the overlay driver, on the filesystem harness.ts gives it.
import { driverSuite } from './suite.ts';

driverSuite('overlay');
