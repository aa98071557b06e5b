import { parseHostPort, type HostPort } from "./cluster/address.js";
import { ConfigError } from "./errors.js";

// Readers of one flag value each: a wrong value is a ConfigError naming the flag, in one sentence.

/** Repeatable values may come as arrays, or (from env) as one string separated by spaces or ';'. */
export function list<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  const items: T[] = Array.isArray(value) ? value : [value];
  return items.flatMap((v): T[] => (typeof v === "string" ? (v.split(/[\s;]+/).filter((s) => s !== "") as T[]) : [v]));
}

export function oneOf<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(`--${flag} must be one of ${allowed.join(", ")} (got '${value}')`);
  }
  return value as T;
}

/** Seconds in, milliseconds out. */
export function seconds(flag: string, value: number | string | undefined, fallback: number, min = 0): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isFinite(n) || n < min) throw new ConfigError(`--${flag} must be a number of seconds >= ${min} (got '${value}')`);
  return Math.round(n * 1000);
}

export function positiveInt(flag: string, value: number | string | undefined, fallback: number): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`--${flag} must be a positive integer (got '${value}')`);
  return n;
}

/** A limit: a whole number, 0 for none. */
export function count(flag: string, value: number | string | undefined, fallback: number): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--${flag} must be a whole number, 0 for no limit (got '${value}')`);
  return n;
}

export function hostPort(flag: string, text: string): HostPort {
  const hp = parseHostPort(text);
  if (hp === null) throw new ConfigError(`--${flag}: '${text}' is not HOST:PORT`);
  return hp;
}
