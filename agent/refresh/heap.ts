// A binary min-heap keyed by due time: O(log n) per schedule, so a thousand
// secrets on their own schedules cost nothing per tick.
export class DueHeap<T> {
  readonly #items: { due: number; value: T }[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): { due: number; value: T } | undefined {
    return this.#items[0];
  }

  push(due: number, value: T): void {
    const a = this.#items;
    a.push({ due, value });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.due <= a[i]!.due) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }

  pop(): { due: number; value: T } | undefined {
    const a = this.#items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.due < a[m]!.due) m = l;
        if (r < a.length && a[r]!.due < a[m]!.due) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }

  clear(): void {
    this.#items.length = 0;
  }
}
