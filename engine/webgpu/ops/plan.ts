// Records a kernel plan (kernels/algorithm.ts KernelPlan): its scratch buffers are taken from
// the pool, its steps dispatched in order, and the scratch given back.
import type { BufferRef, KernelPlan } from '../../../kernels/algorithm.js';
import type { WebGPUBackend } from '../backend.js';

export function runPlan(be: WebGPUBackend, op: string, plan: KernelPlan, inputs: GPUBuffer[], outputs: GPUBuffer[]): void {
  const tmp = plan.tmp.map((n) => be.newTensor([n]));
  try {
    const scratch = tmp.map((t) => t.storage(op).buffer);
    const at = (r: BufferRef) => ('in' in r ? inputs[r.in] : 'out' in r ? outputs[r.out] : scratch[r.tmp]);
    for (const s of plan.steps) be.rt.dispatch(s.kernel, s.args.map(at), s.uniform);
  } finally {
    // Safe before the GPU ran: any later write to a pooled buffer is queue-ordered after these reads.
    for (const t of tmp) t.dispose();
  }
}

/** The device's workgroup memory, which the shared-tile configs may use (the tuner's spaces do). */
export function storageLimit(be: WebGPUBackend): number | undefined {
  const limit = be.rt.device.limits?.maxComputeWorkgroupStorageSize;
  return typeof limit === 'number' ? limit : undefined;
}
