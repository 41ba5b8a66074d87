// The problems a soak found: counted by kind, with a few examples of each.

const EXAMPLES_PER_KIND = 5;

export class Failures {
  readonly counts = new Map<string, number>();
  readonly #examples = new Map<string, string[]>();

  add(kind: string, example: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    const list = this.#examples.get(kind) ?? [];
    if (list.length < EXAMPLES_PER_KIND) list.push(example);
    this.#examples.set(kind, list);
  }

  lines(): string[] {
    return [...this.counts].map(([kind, count]) => `${kind}: ${count} (e.g. ${this.#examples.get(kind)!.join('; ')})`);
  }
}
