// The reference backend: plain TypeScript, float64 inside, written to be obviously
// correct rather than fast. The ground truth for every kernel test.
import { Backend } from '../backend.js';

export class ReferenceBackend implements Partial<Backend> {
  readonly name = 'reference';
}
