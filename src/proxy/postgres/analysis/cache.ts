// A bounded cache with least-recently-used eviction, approximated with two generations (the "hashlru"
// scheme, as in quick-lru): lookups and inserts go to the current Map; when it is full it becomes the old one
// and the previous old one is dropped; a hit in the old generation moves the entry to the current one. A hit in
// the current generation is a single Map.get — no reordering on the hot path — and the bound holds exactly:
// at most `maxEntries` entries and `maxChars` characters of keys in both generations together.

export class GenerationalCache<V> {
  private current = new Map<string, V>();
  private old = new Map<string, V>();
  private currentChars = 0;
  private oldChars = 0;
  private readonly generationEntries: number;
  private readonly generationChars: number;

  constructor(maxEntries: number, maxChars: number) {
    this.generationEntries = Math.max(1, Math.floor(maxEntries / 2));
    this.generationChars = Math.max(1, Math.floor(maxChars / 2));
  }

  get(key: string): V | undefined {
    const v = this.current.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    if (o !== undefined) {
      this.old.delete(key);
      this.oldChars -= key.length;
      this.insert(key, o);
    }
    return o;
  }

  set(key: string, value: V): void {
    if (key.length > this.generationChars) return;
    if (this.current.has(key)) {
      this.current.set(key, value);
      return;
    }
    this.insert(key, value);
  }

  get size(): number {
    return this.current.size + this.old.size;
  }

  get chars(): number {
    return this.currentChars + this.oldChars;
  }

  clear(): void {
    this.current = new Map();
    this.old = new Map();
    this.currentChars = 0;
    this.oldChars = 0;
  }

  private insert(key: string, value: V): void {
    if (
      this.current.size >= this.generationEntries ||
      this.currentChars + key.length > this.generationChars
    ) {
      this.old = this.current;
      this.oldChars = this.currentChars;
      this.current = new Map();
      this.currentChars = 0;
    }
    this.current.set(key, value);
    this.currentChars += key.length;
  }
}
