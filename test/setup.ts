// Every test file that opened the GPU device closes it at the end, so its worker can exit.
import { afterAll } from 'vitest';
import { closeDevice } from '../engine/index.js';

afterAll(() => {
  closeDevice();
});
