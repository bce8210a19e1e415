// The WebGPU runtime: buffer pool, command recorder, pipeline and bind-group caches,
// uniform arena and pooled readback. Ops are recorded synchronously into one command
// encoder (many dispatches per compute pass, many passes per submit); reads flush.
import { KernelSpec, grid } from '../../kernels/spec.js';
import { checkDeviceHealthy, Gpu } from '../device.js';
import { DType, Shape, Storage, Tensor, sizeOf } from '../tensor.js';

/** Pool size classes: powers of two split in quarters, so at most 25% is wasted. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 16) * 16);
  const p = 2 ** Math.floor(Math.log2(b));
  if (p === b) return b;
  const q = p / 4;
  return p + Math.ceil((b - p) / q) * q;
}

const STORAGE_USAGE = 0x0080 | 0x0004 | 0x0008; // STORAGE | COPY_SRC | COPY_DST
const READBACK_USAGE = 0x0001 | 0x0008; // MAP_READ | COPY_DST
const UNIFORM_USAGE = 0x0040 | 0x0008; // UNIFORM | COPY_DST

export interface MemoryStats {
  /** Bytes of GPU buffers the pool holds (in use + free). */
  allocatedBytes: number;
  /** Bytes held by live tensors. */
  inUseBytes: number;
  /** Peak of inUseBytes since the last resetPeak(). */
  peakInUseBytes: number;
  liveBuffers: number;
}

export class GpuStorage implements Storage {
  constructor(
    readonly buffer: GPUBuffer,
    readonly bytes: number,
    private readonly rt: Runtime,
  ) {}
  release(): void {
    this.rt.releaseBuffer(this.buffer, this.bytes);
  }
}

export type GpuTensor = Tensor<GpuStorage>;

interface CachedPipeline {
  id: number;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  spec: KernelSpec;
}

export interface RuntimeOptions {
  /** Fill every new output buffer with NaN bits before use, so unwritten elements show. For tests. */
  poison?: boolean;
  /** Dispatches recorded before a submit is forced. */
  maxDispatchesPerSubmit?: number;
}

export class Runtime {
  readonly device: GPUDevice;
  /** Poison new buffers (see RuntimeOptions); the tuner turns it on around its probe runs. */
  poison: boolean;
  private maxDispatches: number;
  private free = new Map<number, GPUBuffer[]>();
  private stagingFree = new Map<number, GPUBuffer[]>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private pipelines = new Map<string, CachedPipeline>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  // Uniform arena: CPU copy filled during recording, written to the GPU buffer right
  // before the submit that uses it (queue order makes one buffer enough).
  private readonly uniformAlign: number;
  private readonly arenaBytes = 64 * 1024;
  private arenaCpu: ArrayBuffer;
  private arenaUsed = 0;
  private arenaGpu: GPUBuffer;
  private stats: MemoryStats = { allocatedBytes: 0, inUseBytes: 0, peakInUseBytes: 0, liveBuffers: 0 };
  /** Counters for benches and tests. */
  readonly counters = { submits: 0, dispatches: 0, pipelinesCreated: 0, bindGroupsCreated: 0 };

  constructor(readonly gpu: Gpu, opts: RuntimeOptions = {}) {
    this.device = gpu.device;
    this.poison = opts.poison ?? false;
    this.maxDispatches = opts.maxDispatchesPerSubmit ?? 512;
    this.uniformAlign = Math.max(256, this.device.limits.minUniformBufferOffsetAlignment);
    this.arenaCpu = new ArrayBuffer(this.arenaBytes);
    this.arenaGpu = this.device.createBuffer({ size: this.arenaBytes, usage: UNIFORM_USAGE, label: 'uniform-arena' });
  }

  // ---- memory ------------------------------------------------------------

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) {
      id = this.nextBufferId++;
      this.bufferIds.set(b, id);
    }
    return id;
  }

  acquireBuffer(bytes: number): { buffer: GPUBuffer; bytes: number } {
    const cls = sizeClass(bytes);
    const list = this.free.get(cls);
    let buffer = list?.pop();
    if (!buffer) {
      buffer = this.device.createBuffer({ size: cls, usage: STORAGE_USAGE });
      this.stats.allocatedBytes += cls;
    }
    this.stats.inUseBytes += cls;
    this.stats.liveBuffers++;
    if (this.stats.inUseBytes > this.stats.peakInUseBytes) this.stats.peakInUseBytes = this.stats.inUseBytes;
    return { buffer, bytes: cls };
  }

  releaseBuffer(buffer: GPUBuffer, cls: number): void {
    // Reuse is safe without waiting: every later GPU write to it is queue-ordered after
    // the work recorded so far; only CPU uploads could overtake, and upload() flushes first.
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(buffer);
    this.stats.inUseBytes -= cls;
    this.stats.liveBuffers--;
  }

  memory(): MemoryStats {
    return { ...this.stats };
  }

  resetPeak(): void {
    this.stats.peakInUseBytes = this.stats.inUseBytes;
  }

  /** Frees the pooled buffers no tensor uses. */
  trim(): void {
    this.flush();
    for (const list of this.free.values()) for (const b of list) {
      this.stats.allocatedBytes -= b.size;
      b.destroy();
    }
    this.free.clear();
    this.bindGroups.clear();
  }

  /** A new tensor with uninitialized (or, with poison, NaN-filled) storage. */
  newTensor(shape: Shape, dtype: DType = 'f32', backendName = 'webgpu'): GpuTensor {
    const { buffer, bytes } = this.acquireBuffer(Math.max(4, sizeOf(shape) * 4));
    const t = new Tensor<GpuStorage>(shape, dtype, new GpuStorage(buffer, bytes, this), backendName);
    if (this.poison) this.fillWords(buffer, bytes / 4, 0xffffffff);
    return t;
  }

  /** Writes host data into a buffer. Flushes first so the write cannot overtake recorded work. */
  upload(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    if (this.encoder) this.flush();
    this.device.queue.writeBuffer(buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  // ---- pipelines and dispatch ---------------------------------------------

  pipeline(spec: KernelSpec): CachedPipeline {
    const hit = this.pipelines.get(spec.wgsl);
    if (hit) return hit;
    const module = this.device.createShaderModule({ code: spec.wgsl, label: spec.name });
    const layout = this.device.createBindGroupLayout({
      label: spec.name,
      entries: spec.bindings.map((kind, binding) => ({
        binding,
        visibility: 0x4, // COMPUTE
        buffer:
          kind === 'uniform'
            ? { type: 'uniform' as const, hasDynamicOffset: true }
            : { type: kind === 'read' ? ('read-only-storage' as const) : ('storage' as const) },
      })),
    });
    const pipeline = this.device.createComputePipeline({
      label: spec.name,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    const entry = { id: this.pipelines.size + 1, pipeline, layout, spec };
    this.pipelines.set(spec.wgsl, entry);
    this.counters.pipelinesCreated++;
    return entry;
  }

  private ensurePass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (!this.pass) this.pass = this.encoder.beginComputePass(this.timedPasses >= 0 ? this.timedPass() : undefined);
    return this.pass;
  }

  /** Passes timeGpu() can time in one call (each takes two queries). */
  private static readonly MAX_TIMED_PASSES = 1024;
  private querySet: GPUQuerySet | null = null;
  private queryResolve: GPUBuffer | null = null;
  /** Passes begun since timeGpu() started recording; -1 when it is not recording. */
  private timedPasses = -1;

  /**
   * Stands in for the GPU clock when set: maps each raw timestamp (ns) to the one timeGpu()
   * uses. Tests simulate coarse or stuck timers with it.
   */
  timestampClock: ((ns: bigint) => bigint) | null = null;

  /** The timestamp writes of the next timed pass: its own pair of queries (none past the set's size). */
  private timedPass(): GPUComputePassDescriptor | undefined {
    const k = this.timedPasses++;
    if (k >= Runtime.MAX_TIMED_PASSES) return undefined;
    return { timestampWrites: { querySet: this.querySet!, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 } };
  }

  /** Whether timeGpu() measures with timestamp queries (else it returns null). */
  get hasTimestamps(): boolean {
    return this.gpu.features.has('timestamp-query');
  }

  /**
   * GPU time in milliseconds of the dispatches `record` makes, measured with timestamp
   * queries around each compute pass they fill (summed, so copies between passes and the
   * gaps between submits are not counted); null when the adapter has no timestamp-query.
   * 0 when nothing was dispatched; NaN when the reading is unusable (a pass that ends before
   * it begins, or more passes than can be timed). A span shorter than the timer's resolution
   * reads as 0 or one tick: callers repeat short work (engine/tune/timer.ts).
   */
  async timeGpu(record: () => void): Promise<number | null> {
    if (!this.hasTimestamps) {
      record();
      return null;
    }
    if (!this.querySet) {
      this.querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 * Runtime.MAX_TIMED_PASSES });
      this.queryResolve = this.device.createBuffer({ size: 16 * Runtime.MAX_TIMED_PASSES, usage: 0x0200 | 0x0004 }); // QUERY_RESOLVE | COPY_SRC
    }
    this.flush();
    const saved = this.maxDispatches;
    this.maxDispatches = Number.MAX_SAFE_INTEGER; // no forced submits between the dispatches
    let passes: number;
    this.timedPasses = 0;
    try {
      record();
      this.endPass();
    } finally {
      passes = this.timedPasses;
      this.timedPasses = -1;
      this.maxDispatches = saved;
    }
    if (passes === 0) return 0;
    if (passes > Runtime.MAX_TIMED_PASSES) return NaN;
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.encoder.resolveQuerySet(this.querySet, 0, 2 * passes, this.queryResolve!, 0);
    const stamps = new BigUint64Array(await this.readBytes(this.queryResolve!, 16 * passes));
    const clock = this.timestampClock ?? ((t: bigint) => t);
    let ns = 0n;
    for (let k = 0; k < passes; k++) {
      const begin = clock(stamps[2 * k]);
      const end = clock(stamps[2 * k + 1]);
      if (end < begin) return NaN;
      ns += end - begin;
    }
    return Number(ns) / 1e6;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /**
   * Records one dispatch. buffers lists the storage buffers in binding order, skipping the
   * uniform binding; uniforms holds the uniform block (4-byte words) when the spec has one.
   */
  dispatch(spec: KernelSpec, buffers: GPUBuffer[], uniforms?: ArrayBufferView): void {
    const p = this.pipeline(spec);
    let uniformOffset = -1;
    if (spec.bindings.includes('uniform')) {
      if (!uniforms) throw new Error(`${spec.name}: kernel needs a uniform block`);
      if (this.arenaUsed + this.uniformAlign > this.arenaBytes) this.flush();
      uniformOffset = this.arenaUsed;
      new Uint8Array(this.arenaCpu, uniformOffset, uniforms.byteLength).set(
        new Uint8Array(uniforms.buffer, uniforms.byteOffset, uniforms.byteLength),
      );
      this.arenaUsed += this.uniformAlign;
    }
    let key = `${p.id}`;
    for (const b of buffers) key += `:${this.bufferId(b)}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      let bi = 0;
      const uniformSize = Math.max(16, Math.ceil((spec.uniformBytes ?? uniforms?.byteLength ?? 16) / 16) * 16);
      const entries = spec.bindings.map((kind, binding) =>
        kind === 'uniform'
          ? { binding, resource: { buffer: this.arenaGpu, offset: 0, size: uniformSize } }
          : { binding, resource: { buffer: buffers[bi++] } },
      );
      if (bi !== buffers.length) throw new Error(`${spec.name}: ${buffers.length} buffers given for ${bi} storage bindings`);
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      bg = this.device.createBindGroup({ layout: p.layout, entries });
      this.bindGroups.set(key, bg);
      this.counters.bindGroupsCreated++;
    }
    const pass = this.ensurePass();
    pass.setPipeline(p.pipeline);
    if (uniformOffset >= 0) pass.setBindGroup(0, bg, [uniformOffset]);
    else pass.setBindGroup(0, bg);
    const [x, y, z] = spec.workgroups;
    pass.dispatchWorkgroups(x, y, z);
    this.pending++;
    this.counters.dispatches++;
    if (this.pending >= this.maxDispatches) this.flush();
  }

  /** Records a buffer-to-buffer copy. */
  copy(src: GPUBuffer, dst: GPUBuffer, bytes: number, srcOffset = 0, dstOffset = 0): void {
    this.endPass();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, Math.ceil(bytes / 4) * 4);
    this.pending++;
  }

  /** Fills `words` 32-bit words of a buffer with one bit pattern. */
  fillWords(buffer: GPUBuffer, words: number, value: number): void {
    const wg = 256;
    const groups = Math.ceil(words / wg);
    const spec: KernelSpec = {
      name: 'fill',
      bindings: ['rw'],
      workgroups: grid(groups),
      wgsl: `@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * ${wg}u + li;
  if (i < ${words}u) { out[i] = ${value >>> 0}u; }
}`,
    };
    this.dispatch(spec, [buffer]);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    this.endPass();
    if (this.arenaUsed > 0) {
      this.device.queue.writeBuffer(this.arenaGpu, 0, this.arenaCpu, 0, this.arenaUsed);
      this.arenaUsed = 0;
    }
    if (this.encoder) {
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
      this.counters.submits++;
    }
    this.pending = 0;
  }

  /** Waits for all submitted work; throws on device errors. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    checkDeviceHealthy();
  }

  /** Copies `bytes` of a buffer back to the host through a pooled staging buffer. */
  async readBytes(src: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    const cls = sizeClass(bytes);
    const staging = this.stagingFree.get(cls)?.pop() ?? this.device.createBuffer({ size: cls, usage: READBACK_USAGE });
    this.copy(src, staging, bytes);
    this.flush();
    try {
      await staging.mapAsync(0x0001); // READ
    } catch (e) {
      checkDeviceHealthy();
      throw e;
    }
    const out = staging.getMappedRange(0, cls).slice(0, bytes);
    staging.unmap();
    let list = this.stagingFree.get(cls);
    if (!list) this.stagingFree.set(cls, (list = []));
    list.push(staging);
    checkDeviceHealthy();
    return out;
  }

  destroy(): void {
    this.flush();
    for (const list of this.free.values()) for (const b of list) b.destroy();
    for (const list of this.stagingFree.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stagingFree.clear();
    this.arenaGpu.destroy();
  }
}
