// The in-process L1 tier: a bounded LRU map with per-entry expiry.
interface Slot<T> {
  value: T;
  /** `performance.now()` after which the slot is dead. */
  expiresAt: number;
}

/**
 * The in-process tier: a Map kept in least-recently-used order (a hit re-inserts its key at the end), so
 * the first key is always the one to evict. Expiry is checked on read.
 */
export class MemoryTier<T> {
  private readonly slots = new Map<string, Slot<T>>();
  hits = 0;

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.slots.size;
  }

  get(key: string): T | undefined {
    const slot = this.slots.get(key);
    if (slot === undefined) return undefined;
    this.slots.delete(key);
    if (slot.expiresAt <= performance.now()) return undefined;
    this.slots.set(key, slot);
    this.hits++;
    return slot.value;
  }

  /** Whether a live slot is there, without counting a hit or moving it. */
  has(key: string): boolean {
    const slot = this.slots.get(key);
    return slot !== undefined && slot.expiresAt > performance.now();
  }

  set(key: string, value: T, expiresAt: number): void {
    this.slots.delete(key);
    if (this.slots.size >= this.maxEntries) this.slots.delete(this.slots.keys().next().value!);
    this.slots.set(key, { value, expiresAt });
  }

  delete(key: string): void {
    this.slots.delete(key);
  }

  clear(): void {
    this.slots.clear();
  }
}
