// Analog-tile primitives on the webgpu backend: the IO stage, the per-row max and the
// pulsed update, all drawing their noise on the GPU from counter-based hashes.
import { AnalogIOOptions, PulsedUpdateOptions, checkAnalogIO, checkPulsedUpdate, checkRowAbsMax } from '../../backend.js';
import { Tensor } from '../../tensor.js';
import { analogIOKernel, analogIOUniforms, pulsedUpdateKernel, pulsedUpdateUniforms, rowAbsMaxKernel } from '../../../kernels/analog.js';
import type { WebGPUBackend } from '../backend.js';

export function analogIO(be: WebGPUBackend, x: Tensor, opts: AnalogIOOptions, rowScale?: Tensor | null, tileScale?: Tensor | null): Tensor {
  const op = 'analogIO';
  const { perRow, step } = checkAnalogIO(x, opts, rowScale, tileScale);
  const ins = [x, ...(rowScale ? [rowScale] : []), ...(tileScale ? [tileScale] : [])];
  const bufs = be.buffers(op, ...ins);
  const out = be.newTensor(x.shape);
  if (x.size === 0) return out;
  const spec = analogIOKernel(x.size, perRow, {
    mode: opts.mode,
    noise: opts.noiseStd > 0,
    clip: Number.isFinite(opts.bound),
    quantize: step > 0,
    rowScale: !!rowScale,
    tileScale: !!tileScale,
  });
  be.rt.dispatch(spec, [...bufs, out.storage(op).buffer], new Uint32Array(analogIOUniforms(opts.key, opts.noiseStd, opts.bound, step, opts.maxHalvings ?? 0)));
  return out;
}

export function rowAbsMax(be: WebGPUBackend, x: Tensor): Tensor {
  const { rows, perRow } = checkRowAbsMax(x);
  const [bx] = be.buffers('rowAbsMax', x);
  const out = be.newTensor([rows]);
  if (rows === 0) return out;
  if (perRow === 0) {
    be.rt.fillWords(out.storage('rowAbsMax').buffer, rows, 0);
    return out;
  }
  be.rt.dispatch(rowAbsMaxKernel(rows, perRow), [bx, out.storage('rowAbsMax').buffer]);
  return out;
}

export function pulsedUpdate(be: WebGPUBackend, w: Tensor, dw: Tensor, tileScale: Tensor, opts: PulsedUpdateOptions): void {
  checkPulsedUpdate(w, dw, tileScale, opts);
  const bufs = be.buffers('pulsedUpdate', w, dw, tileScale);
  if (w.size === 0) return;
  be.rt.dispatch(pulsedUpdateKernel(w.size, opts.softBounds), bufs, new Uint32Array(pulsedUpdateUniforms(opts)));
}
