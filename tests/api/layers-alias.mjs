// `import ... from 'layers'` resolved to this checkout's TypeScript sources (run through tsx),
// so the docs' example runs as written against the code under test (tests/api/example.test.ts).
import { register } from 'node:module';

register('data:text/javascript,' + encodeURIComponent(`
export async function resolve(specifier, context, next) {
  if (specifier === 'layers') return next(${JSON.stringify(new URL('../../lib/index.ts', import.meta.url).href)}, context);
  return next(specifier, context);
}`));
