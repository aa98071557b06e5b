import { TOKENS } from "./corpus.js";

/** A small seeded PRNG (mulberry32): the same seed gives the same inputs on every machine. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A generator for case `index` of a run: each case can be replayed alone. */
  static forCase(seed: number, index: number): Random {
    return new Random(Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35));
  }

  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}

type Mutation = (input: Buffer, random: Random) => Buffer;

const at = (input: Buffer, random: Random): number => random.int(input.length + 1);

const MUTATIONS: Mutation[] = [
  // a random byte
  (input, random) => {
    const out = Buffer.from(input);
    if (out.length > 0) out[random.int(out.length)] = random.int(256);
    return out;
  },
  // a token spliced in
  (input, random) => {
    const i = at(input, random);
    return Buffer.concat([input.subarray(0, i), Buffer.from(random.pick(TOKENS)), input.subarray(i)]);
  },
  // a range deleted
  (input, random) => {
    const i = at(input, random);
    return Buffer.concat([input.subarray(0, i), input.subarray(i + 1 + random.int(32))]);
  },
  // a range repeated (up to deep nesting or a long run)
  (input, random) => {
    const i = at(input, random);
    const piece = input.subarray(i, i + 1 + random.int(24));
    const times = random.chance(0.2) ? 500 + random.int(5000) : 1 + random.int(8);
    return Buffer.concat([input.subarray(0, i), Buffer.alloc(piece.length * times, piece), input.subarray(i)]);
  },
  // truncated
  (input, random) => input.subarray(0, at(input, random)),
  // an attribute value made huge
  (input, random) => {
    const text = input.toString("latin1");
    const quote = text.indexOf("'", random.int(Math.max(1, text.length)));
    if (quote === -1) return input;
    return Buffer.concat([input.subarray(0, quote + 1), Buffer.alloc(1000 + random.int(40_000), "A"), input.subarray(quote + 1)]);
  },
  // element content replaced with valid base64 of random bytes (garbage SASL that decodes)
  (input, random) => {
    const text = input.toString("latin1");
    const open = text.indexOf("'>", random.int(Math.max(1, text.length)));
    const close = open === -1 ? -1 : text.indexOf("</", open);
    if (close === -1) return input;
    const bytes = Buffer.from(Array.from({ length: random.int(200) }, () => random.int(256)));
    return Buffer.concat([input.subarray(0, open + 2), Buffer.from(bytes.toString("base64")), input.subarray(close)]);
  },
  // a byte of invalid UTF-8 or a forbidden control character
  (input, random) => {
    const i = at(input, random);
    return Buffer.concat([input.subarray(0, i), Buffer.from([random.pick([0x00, 0x01, 0x0b, 0x1f, 0x80, 0xc0, 0xfe, 0xff, 0xed])]), input.subarray(i)]);
  },
];

/** 1 to 6 mutations of `seed`, or (one case in ten) the seed as it is, so valid paths are walked too. */
export function mutate(seed: Buffer, random: Random): Buffer {
  if (random.chance(0.1)) return seed;
  let out = seed;
  for (let n = 1 + random.int(6); n > 0; n--) out = random.pick(MUTATIONS)(out, random);
  return out;
}

/** Where to cut the input into writes: whole, in random pieces, or dripped a byte at a time. */
export function cuts(length: number, random: Random): number[] {
  const roll = random.next();
  if (roll < 0.5 || length === 0) return [length];
  const size = roll < 0.95 ? () => 1 + random.int(300) : () => 1;
  const out: number[] = [];
  for (let done = 0; done < length; ) {
    done = Math.min(length, done + size());
    out.push(done);
    if (out.length > 200) return [...out, length]; // drip a prefix, then the rest
  }
  return out;
}
