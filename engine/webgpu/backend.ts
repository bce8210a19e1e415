// The webgpu backend: shape checks, then WGSL kernels from kernels/ recorded on the runtime.
import {
  AnalogIOOptions,
  Backend,
  ConvBlockGates,
  ConvBlockOptions,
  ConvBlockResult,
  Conv2dOptions,
  PulsedUpdateOptions,
  MatmulOptions,
  MaxPoolResult,
  SgdOptions,
  SoftmaxCrossEntropyResult,
  checkBackend,
  checkDtype,
  checkFromArray,
  checkLive,
  checkConcat,
  checkReshape,
  checkSameShape,
  checkAddBias,
  checkAccumulate,
  checkOneHot,
  checkScaleRows,
  checkU32Values,
} from '../backend.js';
import type { Tuner } from '../tune/tuner.js';
import { composeConvBlock, composeConvBlockBackwardData } from '../fused.js';
import { DType, Shape, Tensor, sizeOf } from '../tensor.js';
import { uniformValues } from '../random.js';
import { accumulateKernel, addBiasKernel, scaleRowsKernel, binaryKernel, unaryKernel, BinaryOp, UnaryOp } from '../../kernels/elementwise.js';
import { GpuStorage, GpuTensor, Runtime, RuntimeOptions } from './runtime.js';
import { oneHotKernel } from '../../kernels/loss.js';
import { DeviceError, Gpu } from '../device.js';
import type { KernelPrecision, SubgroupMatrixShape, SubgroupMatrixTile } from '../../kernels/matmul/sharedTile.js';
import { FamilyConfig, KernelFamily, configKey, configUses } from '../../kernels/candidates.js';
import * as convOps from './ops/conv.js';
import * as linalgOps from './ops/linalg.js';
import * as miscOps from './ops/misc.js';
import * as analogOps from './ops/analog.js';
import * as imageOps from './ops/image.js';

export class WebGPUBackend implements Backend {
  readonly name = 'webgpu';
  readonly rt: Runtime;
  /** Chooses conv/matmul kernel configs (cached winners; with autotune, tunes on first use). */
  tuner: Tuner | null = null;
  /**
   * Run convBlock / convBlockBackwardData as fused kernels (default) or as their composition
   * of separate ops (engine/fused.ts), for comparison (NUDGE_FUSE=0 through createBackend).
   */
  fuse = true;
  /**
   * With `fuse`: apply convBlockBackwardData's gates (ReLU mask, pool routing) in the
   * transposed conv's loads. Each dy element is loaded once per tap and column block there,
   * so the gate is re-evaluated as often; on lavapipe that made the fused kernel ~2x slower
   * than routing once (maxPool2x2Backward) and then the plain kernel (bench fused, 2026-11-27),
   * so CPU adapters route first by default. On a GPU the fused loads save writing and
   * re-reading the conv-shaped gradient (not yet measured there). NUDGE_GATED_LOADS=0|1.
   */
  gatedLoads: boolean;
  /**
   * The subgroup size the conv kernels may share activation loads over (ConvTileConfig
   * `subgroup`): the device's, when it has the 'subgroups' feature and one fixed size; else
   * null, and no such config runs. The tuner's spaces include those tiles when it is set.
   */
  subgroupTiles: number | null;
  /**
   * Whether the untuned defaults use the subgroup-shared tiles (needs subgroupTiles). On
   * lavapipe, where every activation load is a per-lane loop, they made the forward conv
   * ~2x faster, so CPU adapters use them by default; GPUs (not yet measured) leave them to
   * the tuner. NUDGE_SUBGROUP_TILES=0 turns the tiles off entirely, =1 makes them the default.
   */
  subgroupDefaults: boolean;

  /**
   * Invocations the untuned kernels aim to keep busy (the register backward-filter's split of
   * its reduction): 256 on a CPU adapter (measured on lavapipe), 65536 on a GPU (not yet
   * measured; an H200 runs ~270K threads at once, and 256 left it at 16 GFLOP/s).
   */
  parallelism: number;

  /**
   * Whether the untuned 3x3 stride-1 convs (forward, and backward-data without gates) with
   * at least 64 reduction channels and 32 output tiles run Winograd F(2x2, 3x3) (kernels/conv/winograd.ts,
   * winogradPreferred). On lavapipe it was 1.2-2.2x the register default on VGG shapes, so CPU
   * adapters use it by default; on GPUs (not yet measured) it is one of the tuner's
   * candidates. Results differ from the direct sum in the last bits. NUDGE_WINOGRAD=0|1.
   */
  winogradDefaults: boolean;

  /**
   * The subgroup-matrix shapes this device runs (tensor cores on NVIDIA): the adapter's
   * f16/f32 configs when the device has chromium-experimental-subgroup-matrix (Dawn offers it
   * only with the toggle allow_unsafe_apis; f16 on NVIDIA also needs vulkan_enable_f16_on_nvidia),
   * on subgroups of matrixSubgroup invocations. The tuner's spaces then include subgroup-matrix
   * tiles (kernels/matmul/sharedTile.ts); else empty and no such config runs (but emulated ones).
   */
  subgroupMatrices: SubgroupMatrixShape[];
  matrixSubgroup: number | null;

  /** The subgroup size the untuned conv tiles share activation loads over, if they do. */
  get defaultTileSubgroup(): number | undefined {
    return this.subgroupDefaults && this.subgroupTiles ? this.subgroupTiles : undefined;
  }

  /**
   * Refuses a config this backend cannot run, from what it uses (kernels/candidates.ts
   * configUses): f16 math unless the precision is 'f16', a subgroup-shared tile for any
   * subgroup size but this device's (subgroupTiles), a subgroup-matrix shape the device does
   * not offer.
   */
  checkKernelConfig<F extends KernelFamily>(op: string, family: F, config: FamilyConfig[F]): void {
    const uses = configUses(family, config);
    // Named only for a message: this runs on every conv and matmul call.
    const what = () => `${op} config ${configKey(family, config)}`;
    if (uses.f16 && this.precision !== 'f16') {
      throw new Error(`${what()} computes in f16, but the backend's precision is '${this.precision}' (set precision 'f16' to allow it)`);
    }
    if (uses.matrix) this.checkMatrixTile(what, uses.matrix, uses.f16 !== undefined);
    const sg = uses.subgroup;
    if (sg === undefined || sg === this.subgroupTiles) return;
    const has = this.subgroupTiles ? `subgroups of ${this.subgroupTiles}` : 'no fixed-size subgroups (or the subgroups feature is off)';
    throw new Error(`${what()} shares loads over subgroups of ${String(sg)}, but this device has ${has}`);
  }

  /**
   * A subgroup-matrix tile runs only where the device offers its shape (f16 components with an
   * f16 config, f32 without) on subgroups of its size; an emulated one only where subgroups
   * have one fixed size equal to its own (it spreads stores over the lanes).
   */
  private checkMatrixTile(what: () => string, m: SubgroupMatrixTile, f16: boolean): void {
    if (m.emulated) {
      if (m.subgroup !== this.subgroupTiles) throw new Error(`${what()} emulates subgroup matrices on subgroups of ${m.subgroup}, but this device has ${this.subgroupTiles ? `subgroups of ${this.subgroupTiles}` : 'no fixed-size subgroups'}`);
      return;
    }
    const component = f16 ? 'f16' : 'f32';
    const offered = this.subgroupMatrices.some((s) => s.component === component && s.M === m.M && s.N === m.N && s.K === m.K);
    if (!offered || m.subgroup !== this.matrixSubgroup) {
      const has = this.subgroupMatrices.length
        ? this.subgroupMatrices.map((s) => `${s.component}->${s.result} ${s.M}x${s.N}x${s.K}`).join(', ') + ` on subgroups of ${this.matrixSubgroup}`
        : 'no subgroup matrices (chromium-experimental-subgroup-matrix needs the Dawn toggle allow_unsafe_apis and a device that has it)';
      throw new Error(`${what()} multiplies ${component} subgroup matrices ${m.M}x${m.N}x${m.K} on subgroups of ${m.subgroup}, but this device offers ${has}`);
    }
  }

  private kernelPrecision: KernelPrecision = 'f32';

  constructor(readonly gpu: Gpu, opts: RuntimeOptions & { precision?: KernelPrecision } = {}) {
    this.rt = new Runtime(gpu, opts);
    this.gatedLoads = !gpu.info.isSoftware;
    const sg = gpu.info.subgroupMinSize;
    this.subgroupTiles = gpu.features.has('subgroups') && sg > 0 && sg === gpu.info.subgroupMaxSize ? sg : null;
    this.subgroupDefaults = gpu.info.isSoftware;
    this.parallelism = gpu.info.isSoftware ? 256 : 65536;
    this.winogradDefaults = gpu.info.isSoftware;
    const matrices = gpu.features.has('chromium-experimental-subgroup-matrix') && gpu.features.has('subgroups');
    this.subgroupMatrices = matrices
      ? (gpu.info.subgroupMatrixConfigs.filter(
          (c) => (c.component === 'f32' || (c.component === 'f16' && gpu.features.has('shader-f16'))) && (c.result === 'f32' || c.result === 'f16'),
        ) as SubgroupMatrixShape[])
      : [];
    this.matrixSubgroup = this.subgroupMatrices.length > 0 && gpu.info.subgroupMaxSize > 0 ? gpu.info.subgroupMaxSize : null;
    if (opts.precision) this.precision = opts.precision;
  }

  /**
   * The arithmetic conv/matmul kernels may use. 'f32' (default): f32 throughout. 'f16'
   * (opt-in, NUDGE_PRECISION=f16 through createBackend; needs shader-f16): the tuner may
   * also pick kernels that round operands to f16 and multiply (and maybe accumulate) in
   * f16, so results change at the 1e-3 level. Tensors stay f32 in memory either way, and
   * f32 and f16 tunings are cached apart.
   */
  get precision(): KernelPrecision {
    return this.kernelPrecision;
  }

  set precision(p: KernelPrecision) {
    if (p !== 'f32' && p !== 'f16') throw new DeviceError(`precision must be 'f32' or 'f16', got '${String(p)}'`);
    if (p === 'f16' && !this.gpu.features.has('shader-f16')) {
      throw new DeviceError(`precision 'f16' needs the WebGPU feature shader-f16, which ${this.gpu.info.name} does not offer: use precision 'f32'`);
    }
    this.kernelPrecision = p;
  }

  /** Checks that every tensor is live and lives here; returns their buffers. */
  buffers(op: string, ...ts: Tensor[]): GPUBuffer[] {
    checkLive(op, ...ts);
    checkBackend(op, this.name, ...ts);
    return ts.map((t) => (t as GpuTensor).storage(op).buffer);
  }

  newTensor(shape: Shape, dtype: DType = 'f32'): GpuTensor {
    return this.rt.newTensor(shape, dtype, this.name);
  }

  fromArray(data: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): Tensor {
    checkFromArray('fromArray', data, shape);
    if (dtype === 'u32') checkU32Values(data, shape);
    const t = this.rt.newTensor(shape, dtype, this.name);
    const host = dtype === 'u32' ? Uint32Array.from(data) : Float32Array.from(data);
    if (host.length > 0) this.rt.upload(t.storage('fromArray').buffer, host);
    return t;
  }

  zeros(shape: Shape): Tensor {
    const t = this.rt.newTensor(shape, 'f32', this.name);
    this.rt.fillWords(t.storage('zeros').buffer, Math.max(1, t.size), 0);
    return t;
  }

  uniform(shape: Shape, low: number, high: number, seed: string | number): Tensor {
    const vals = uniformValues(sizeOf(shape), low, high, seed);
    return this.fromArray(vals, shape);
  }

  async read(t: Tensor): Promise<Float64Array> {
    const [buf] = this.buffers('read', t);
    if (t.size === 0) return new Float64Array(0);
    const bytes = await this.rt.readBytes(buf, t.size * 4);
    // Shapes first seen since the last read are tuned now that the caller waits anyway.
    if (this.tuner?.hasPending) await this.tuner.tunePending();
    return Float64Array.from(t.dtype === 'u32' ? new Uint32Array(bytes) : new Float32Array(bytes));
  }

  clone(t: Tensor): Tensor {
    const [buf] = this.buffers('clone', t);
    const out = this.newTensor(t.shape, t.dtype);
    if (t.size > 0) this.rt.copy(buf, out.storage('clone').buffer, t.size * 4);
    return out;
  }

  concat(ts: Tensor[]): Tensor {
    const shape = checkConcat(ts);
    const bufs = this.buffers('concat', ...ts);
    const out = this.newTensor(shape, ts[0].dtype);
    let offset = 0;
    ts.forEach((t, i) => {
      if (t.size > 0) this.rt.copy(bufs[i], out.storage('concat').buffer, t.size * 4, 0, offset);
      offset += t.size * 4;
    });
    return out;
  }

  reshape(t: Tensor, shape: Shape): Tensor {
    checkReshape('reshape', t, shape);
    const [buf] = this.buffers('reshape', t);
    const out = this.newTensor(shape, t.dtype);
    if (t.size > 0) this.rt.copy(buf, out.storage('reshape').buffer, t.size * 4);
    return out;
  }

  private binary(op: BinaryOp, a: Tensor, b: Tensor, alpha?: number): Tensor {
    const shape = checkSameShape(op, a, b);
    const [ba, bb] = this.buffers(op, a, b);
    const out = this.newTensor(shape);
    if (out.size > 0) {
      const spec = binaryKernel(op, out.size);
      this.rt.dispatch(spec, [ba, bb, out.storage(op).buffer], alpha === undefined ? undefined : new Float32Array([alpha, 0, 0, 0]));
    }
    return out;
  }

  private unary(op: UnaryOp, a: Tensor, alpha?: number): Tensor {
    const shape = checkSameShape(op, a);
    const [ba] = this.buffers(op, a);
    const out = this.newTensor(shape);
    if (out.size > 0) {
      const spec = unaryKernel(op, out.size);
      this.rt.dispatch(spec, [ba, out.storage(op).buffer], alpha === undefined ? undefined : new Float32Array([alpha, 0, 0, 0]));
    }
    return out;
  }

  add(a: Tensor, b: Tensor): Tensor {
    return this.binary('add', a, b);
  }
  sub(a: Tensor, b: Tensor): Tensor {
    return this.binary('sub', a, b);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.binary('mul', a, b);
  }
  scale(a: Tensor, s: number): Tensor {
    return this.unary('scale', a, s);
  }
  axpy(alpha: number, x: Tensor, y: Tensor): Tensor {
    return this.binary('axpy', x, y, alpha);
  }
  relu(a: Tensor): Tensor {
    return this.unary('relu', a);
  }
  reluMask(g: Tensor, x: Tensor): Tensor {
    return this.binary('reluMask', g, x);
  }

  accumulate(acc: Tensor, x: Tensor): void {
    checkAccumulate(acc, x);
    const [ba, bx] = this.buffers('accumulate', acc, x);
    if (acc.size > 0) this.rt.dispatch(accumulateKernel(acc.size), [bx, ba]);
  }

  addBias(x: Tensor, bias: Tensor): Tensor {
    const C = checkAddBias(x, bias);
    const [bx, bb] = this.buffers('addBias', x, bias);
    const out = this.newTensor(x.shape);
    if (out.size > 0) this.rt.dispatch(addBiasKernel(out.size, C), [bx, bb, out.storage('addBias').buffer]);
    return out;
  }

  scaleRows(x: Tensor, sc: Tensor): Tensor {
    const per = checkScaleRows(x, sc);
    const [bx, bs] = this.buffers('scaleRows', x, sc);
    const out = this.newTensor(x.shape);
    if (out.size > 0) this.rt.dispatch(scaleRowsKernel(out.size, per), [bx, bs, out.storage('scaleRows').buffer]);
    return out;
  }

  sum(a: Tensor, axes: number[]): Tensor {
    return miscOps.sum(this, a, axes);
  }
  biasGrad(g: Tensor): Tensor {
    return miscOps.biasGrad(this, g);
  }
  // The conv/matmul ops check the shapes once and ask the tuner for a cached config themselves.
  matmul(a: Tensor, b: Tensor, opts?: MatmulOptions): Tensor {
    return linalgOps.matmul(this, a, b, opts);
  }
  conv2d(x: Tensor, w: Tensor, bias: Tensor | null, opts?: Conv2dOptions): Tensor {
    return convOps.conv2d(this, x, w, bias, opts);
  }
  conv2dBackwardData(dy: Tensor, w: Tensor, inputShape: Shape, opts?: Conv2dOptions): Tensor {
    return convOps.conv2dBackwardData(this, dy, w, inputShape, opts);
  }
  conv2dBackwardFilter(x: Tensor, dy: Tensor, filterShape: Shape, opts?: Conv2dOptions): Tensor {
    return convOps.conv2dBackwardFilter(this, x, dy, filterShape, opts);
  }
  convBlock(x: Tensor, w: Tensor, bias: Tensor | null, opts: ConvBlockOptions): ConvBlockResult {
    if (!this.fuse) return composeConvBlock(this, x, w, bias, opts);
    return convOps.convBlock(this, x, w, bias, opts);
  }
  convBlockBackwardData(dy: Tensor, w: Tensor, inputShape: Shape, gates?: ConvBlockGates): Tensor {
    if (!this.fuse || (!this.gatedLoads && (gates?.argmax || gates?.reluAt))) return composeConvBlockBackwardData(this, dy, w, inputShape, gates);
    return convOps.convBlockBackwardData(this, dy, w, inputShape, gates);
  }
  maxPool2x2(x: Tensor): MaxPoolResult {
    return miscOps.maxPool2x2(this, x);
  }
  maxPool2x2Backward(dy: Tensor, argmax: Tensor, inputShape: Shape): Tensor {
    return miscOps.maxPool2x2Backward(this, dy, argmax, inputShape);
  }
  softmaxCrossEntropy(logits: Tensor, labels: Tensor, reduction: 'mean' | 'sum' = 'mean'): SoftmaxCrossEntropyResult {
    return miscOps.softmaxCrossEntropy(this, logits, labels, reduction);
  }
  softmaxCrossEntropyGrad(logits: Tensor, labels: Tensor, scale: number): Tensor {
    return miscOps.softmaxCrossEntropyGrad(this, logits, labels, scale);
  }
  topkCorrect(logits: Tensor, labels: Tensor, k: number): Tensor {
    return miscOps.topkCorrect(this, logits, labels, k);
  }
  oneHot(labels: Tensor, classes: number): Tensor {
    const N = checkOneHot(labels, classes);
    const [bl] = this.buffers('oneHot', labels);
    const out = this.newTensor([N, classes]);
    if (N > 0) this.rt.dispatch(oneHotKernel(N, classes), [bl, out.storage('oneHot').buffer]);
    return out;
  }
  imagesFromU8(data: Uint8Array, shape: Shape, mean: readonly number[], std: readonly number[]): Tensor {
    return imageOps.imagesFromU8(this, data, shape, mean, std);
  }
  sgdNesterov(param: Tensor, grad: Tensor, velocity: Tensor, opts: SgdOptions): void {
    checkDtype('sgdNesterov', param, 'f32', 'param');
    miscOps.sgdNesterov(this, param, grad, velocity, opts);
  }

  analogIO(x: Tensor, opts: AnalogIOOptions, rowScale?: Tensor | null, tileScale?: Tensor | null): Tensor {
    return analogOps.analogIO(this, x, opts, rowScale, tileScale);
  }
  rowAbsMax(x: Tensor): Tensor {
    return analogOps.rowAbsMax(this, x);
  }
  pulsedUpdate(w: Tensor, dw: Tensor, tileScale: Tensor, opts: PulsedUpdateOptions): void {
    analogOps.pulsedUpdate(this, w, dw, tileScale, opts);
  }

  async sync(): Promise<void> {
    await this.rt.sync();
    if (this.tuner?.hasPending) await this.tuner.tunePending();
  }

  destroy(): void {
    this.rt.destroy();
  }
}


export type { GpuStorage };
