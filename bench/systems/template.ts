// Fills a config template of bench/peers/ (`{{NAME}}` placeholders) and writes it to a run's temp dir.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function renderTemplate(name: string, values: Record<string, string | number>, to: string): void {
  const text = readFileSync(fileURLToPath(new URL(`../peers/${name}`, import.meta.url)), 'utf8');
  const rendered = text.replace(/\{\{([A-Z_]+)\}\}/g, (whole, key: string) => {
    if (!(key in values)) throw new Error(`template ${name}: no value for ${whole}`);
    return String(values[key]);
  });
  writeFileSync(to, rendered);
}
