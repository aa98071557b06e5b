/**
 * A count per key of what one worker holds in the primary (open connections,
 * admitted clients), so that what a dead worker held can be given back.
 */
export class Tally<K> {
  private readonly counts = new Map<K, number>();

  add(key: K): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Takes one away; false when there was none (nothing to give back for it then). */
  remove(key: K): boolean {
    const count = this.counts.get(key);
    if (count === undefined) return false;
    if (count > 1) this.counts.set(key, count - 1);
    else this.counts.delete(key);
    return true;
  }

  /** Every key once per count, emptying the tally. */
  *takeAll(): Generator<K> {
    const all = [...this.counts];
    this.counts.clear();
    for (const [key, count] of all) for (let i = 0; i < count; i++) yield key;
  }
}
