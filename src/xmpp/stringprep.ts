/**
 * Stringprep (RFC 3454) profiles for JIDs: Nodeprep (RFC 6122 appendix A) for
 * localparts and Nameprep (RFC 3491) for domains, as Prosody 0.12 applies them
 * (ICU's usprep in non-strict mode, which is what its jid.prep and SASL use).
 * Non-strict means code points unassigned in Unicode 3.2 (table A.1) are let
 * through unchanged instead of refused.
 */

import {
  CASE_FOLD_EXPANSIONS,
  CASE_FOLD_RUNS,
  LCAT,
  MAP_TO_NOTHING,
  NFKC_3_2_EXCEPTIONS,
  PROHIBITED_ASCII,
  PROHIBITED_COMMON,
  RANDALCAT,
  UNASSIGNED,
} from "./stringprep-tables.js";

/** Prepares a string with Nodeprep; null when the result holds a prohibited character or breaks the bidi rule. */
export function nodeprep(input: string): string | null {
  return prepare(input, nodeprepProhibits);
}

/** Prepares a string with Nameprep; null when the result holds a prohibited character or breaks the bidi rule. */
export function nameprep(input: string): string | null {
  return prepare(input, (cp) => inRanges(PROHIBITED_COMMON, cp));
}

/**
 * ASCII letters, digits and `._+-`: no table maps them (but for B.2's A-Z to
 * a-z), NFKC keeps them, neither profile prohibits them, none is right-to-left.
 * Most JIDs are made of nothing else, and take this path: about 15 us less per login.
 */
const PLAIN_ASCII = /^[A-Za-z0-9._+-]*$/;

/** RFC 3454 section 2, in order: map, normalise, prohibit, check bidi. */
function prepare(input: string, prohibits: (cp: number) => boolean): string | null {
  if (PLAIN_ASCII.test(input)) return input.toLowerCase();
  const prepared = normalize(map(input));
  const codePoints = Array.from(prepared, (ch) => ch.codePointAt(0)!);
  if (codePoints.some(prohibits)) return null;
  return bidiOk(codePoints) ? prepared : null;
}

/** RFC 6122 appendix A.5: besides the tables, these ASCII characters cannot be in a localpart. */
const NODEPREP_EXTRA = new Set(Array.from(`"&'/:<>@`, (ch) => ch.codePointAt(0)!));

function nodeprepProhibits(cp: number): boolean {
  return inRanges(PROHIBITED_COMMON, cp) || inRanges(PROHIBITED_ASCII, cp) || NODEPREP_EXTRA.has(cp);
}

const CASE_FOLD = caseFoldMap();

function caseFoldMap(): ReadonlyMap<number, string> {
  const fold = new Map<number, string>(CASE_FOLD_EXPANSIONS);
  for (let i = 0; i < CASE_FOLD_RUNS.length; i += 4) {
    const [start, count, step, delta] = CASE_FOLD_RUNS.slice(i, i + 4) as [number, number, number, number];
    for (let k = 0; k < count; k++) fold.set(start + k * step, String.fromCodePoint(start + k * step + delta));
  }
  return fold;
}

/** Step 1: table B.1 characters vanish, table B.2 case-folds (both profiles use B.2). */
function map(input: string): string {
  let out = "";
  for (const ch of input) {
    const cp = ch.codePointAt(0)!;
    if (!inRanges(MAP_TO_NOTHING, cp)) out += CASE_FOLD.get(cp) ?? ch;
  }
  return out;
}

const NFKC_3_2 = new Map<number, string>(NFKC_3_2_EXCEPTIONS);

/**
 * Step 2: NFKC of Unicode 3.2, as ICU does it for Prosody. String.prototype.normalize
 * follows a newer Unicode, whose normalisation stability policy leaves the NFKC of
 * Unicode 3.2 text unchanged but for five CJK compatibility ideographs (Corrigendum
 * #4), which are swapped for their 3.2 form first. Code points unassigned in 3.2
 * would be normalised with data 3.2 lacks, so they are left as they are and only
 * the runs between them are normalised.
 */
function normalize(s: string): string {
  let out = "";
  let run = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(UNASSIGNED, cp)) {
      out += run.normalize("NFKC") + ch;
      run = "";
    } else {
      run += NFKC_3_2.get(cp) ?? ch;
    }
  }
  return out + run.normalize("NFKC");
}

/**
 * Step 4, RFC 3454 section 6: a string with right-to-left characters (D.1) may
 * hold no left-to-right ones (D.2) and must start and end with right-to-left ones.
 * ICU classes characters by its newer bidi data instead, so Prosody differs only
 * on strings mixing right-to-left letters with Braille, a few Indic, Khmer or
 * Mongolian marks, or code points unassigned in 3.2, which no account registered
 * through Prosody's strict Nodeprep can hold.
 */
function bidiOk(codePoints: readonly number[]): boolean {
  const rtl = (cp: number | undefined): boolean => cp !== undefined && inRanges(RANDALCAT, cp);
  if (!codePoints.some(rtl)) return true;
  return !codePoints.some((cp) => inRanges(LCAT, cp)) && rtl(codePoints[0]) && rtl(codePoints[codePoints.length - 1]);
}

/** Binary search in a sorted, flattened list of inclusive [start, end] ranges. */
function inRanges(ranges: readonly number[], cp: number): boolean {
  let lo = 0;
  let hi = ranges.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < ranges[2 * mid]!) hi = mid - 1;
    else if (cp > ranges[2 * mid + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}
