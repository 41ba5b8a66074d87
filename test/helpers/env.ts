// Sizes of the long tests, raised by environment variables (FUZZ_RUNS, …) for the long runs.

/** The variable's integer (≥ 1), or the fallback when it is unset or empty; anything else stops the test run. */
export function envInteger(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name}=${JSON.stringify(text)} is invalid: expected an integer >= 1`);
  return value;
}
