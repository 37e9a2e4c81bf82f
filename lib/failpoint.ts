// Named points between the steps of multi-step store operations, where a test can have the
// process SIGKILLed (LAYERS_FAILPOINT=<name>) to show that the next command repairs what a
// crash at exactly that point leaves (docs/images-and-containers.md, "Crashes"). The points sit
// in lib/store/containers.ts and lib/store/images.ts. Unset, a failpoint costs one environment lookup.

/** Every failpoint, by the operation it sits in, in the order they are passed. */
export const FAILPOINTS = {
  createContainer: [
    'mapped-layer-recorded',
    'mapped-layer-registered',
    'mapped-layer-copied',
    'mapped-layer-shifted',
    'mapped-layer-complete',
    'container-layer-recorded',
    'container-recorded',
    'container-layer-made',
  ],
  removeImage: ['containers-removed', 'image-marked', 'image-layers-marked', 'image-layer-removed', 'image-layers-removed'],
} as const;

export type Failpoint = (typeof FAILPOINTS)[keyof typeof FAILPOINTS][number];

/** SIGKILL this process when LAYERS_FAILPOINT names this point (for the nth time, with name:n). */
export function failpoint(name: Failpoint): void {
  const want = process.env.LAYERS_FAILPOINT;
  if (!want) return;
  const [point, nth] = want.split(':');
  if (point !== name) return;
  const seen = (counts.get(name) ?? 0) + 1;
  counts.set(name, seen);
  if (seen >= Number(nth ?? 1)) process.kill(process.pid, 'SIGKILL');
}

const counts = new Map<string, number>();
