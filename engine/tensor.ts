// Tensors: a shape, a dtype and storage owned by one backend.
// GPU memory is owned explicitly: call dispose(), or create tensors inside scope()
// and they are disposed when the scope ends unless returned or kept.

export type DType = 'f32' | 'u32';
export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

/** A user mistake detected before any GPU work: the message names the op and the shapes. */
export class ShapeError extends Error {
  constructor(op: string, detail: string) {
    super(`${op}: ${detail}`);
    this.name = 'ShapeError';
  }
}

export class DisposedTensorError extends Error {
  constructor(op: string, t: Tensor) {
    super(`${op}: tensor #${t.id} ${shapeStr(t.shape)} was already disposed`);
    this.name = 'DisposedTensorError';
  }
}

let nextTensorId = 1;

/** Backend-specific storage behind a tensor. */
export interface Storage {
  /** Frees (or returns to a pool) the memory. Called once. */
  release(): void;
}

type ScopeFrame = Set<Tensor>;
const scopeStack: ScopeFrame[] = [];

export class Tensor<S extends Storage = Storage> {
  readonly id = nextTensorId++;
  readonly size: number;
  private _storage: S | null;
  private _kept = false;

  constructor(
    readonly shape: Shape,
    readonly dtype: DType,
    storage: S,
    /** Name of the backend that owns the storage. */
    readonly backendName: string,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError('tensor', `invalid shape ${shapeStr(shape)}`);
    }
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    this._storage = storage;
    const frame = scopeStack[scopeStack.length - 1];
    if (frame) frame.add(this);
  }

  get disposed(): boolean {
    return this._storage === null;
  }

  /** The backend storage; throws a clear error when the tensor was disposed. */
  storage(op: string): S {
    if (this._storage === null) throw new DisposedTensorError(op, this);
    return this._storage;
  }

  /** Releases the memory now. Safe to call twice. */
  dispose(): void {
    if (this._storage === null) return;
    const s = this._storage;
    this._storage = null;
    s.release();
  }

  /** Excludes this tensor from disposal by the enclosing scopes. */
  keep(): this {
    this._kept = true;
    for (const f of scopeStack) f.delete(this);
    return this;
  }

  get kept(): boolean {
    return this._kept;
  }

  toString(): string {
    return `Tensor#${this.id}(${this.dtype}${shapeStr(this.shape)}, ${this.backendName})`;
  }
}

type Tensors = Tensor | Tensor[] | Record<string, Tensor> | void | undefined | null | number;

function collectTensors(result: unknown, into: Set<Tensor>): void {
  if (result instanceof Tensor) into.add(result);
  else if (Array.isArray(result)) for (const r of result) collectTensors(r, into);
  else if (result && typeof result === 'object') for (const v of Object.values(result)) collectTensors(v, into);
}

/**
 * Runs fn; every tensor created inside it is disposed afterwards, except those in the
 * returned value (a tensor, an array or a plain object of tensors) and those kept.
 * Synchronous only: GPU ops are recorded synchronously, so this covers a training step.
 */
export function scope<T extends Tensors | unknown>(fn: () => T): T {
  const frame: ScopeFrame = new Set();
  scopeStack.push(frame);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new Error('scope(): fn must be synchronous; await outside the scope');
  } catch (e) {
    // Nothing created by a failed step survives it.
    for (const t of frame) if (!t.kept) t.dispose();
    throw e;
  } finally {
    scopeStack.pop();
  }
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors);
  const parent = scopeStack[scopeStack.length - 1];
  for (const t of frame) {
    if (survivors.has(t)) {
      if (parent) parent.add(t);
    } else if (!t.kept) t.dispose();
  }
  return result;
}
