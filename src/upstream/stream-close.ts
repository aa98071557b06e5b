/**
 * Whether a relayed client closed its XMPP stream itself: the last bytes it
 * sent are `</stream:stream>`, maybe followed by whitespace. A session closed
 * so cannot be resumed (XEP-0198), so its account needs no resumption window
 * on its node. The relay does not parse what it carries: it keeps one small
 * integer per connection and looks at the end of each chunk only (at most the
 * tag's length, whatever the chunk's size), allocating nothing.
 *
 * The integer holds how many leading bytes of the tag the bytes so far end
 * with (0-16), and a flag for "they end with the whole tag and whitespace".
 * Since `<` occurs in the tag only at its start, the bytes so far end with the
 * tag's first k bytes exactly when that count is k: a tag split across chunks
 * is followed with no buffer.
 */

const TAG = Buffer.from("</stream:stream>");
const LENGTH = TAG.length;
const LT = 0x3c;
/** Set when the bytes so far end with the whole tag and whitespace only. */
const CLOSED = 0x20;
const MATCHED = 0x1f;

/** The state of a stream that has sent nothing. */
export const STREAM_OPEN = 0;

const isSpace = (byte: number): boolean => byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;

/** The state after `chunk`, given the state before it. */
export function afterChunk(state: number, chunk: Buffer): number {
  const n = chunk.length;
  if (n === 0) return state;
  let end = n;
  while (end > 0 && isSpace(chunk[end - 1]!)) end--;
  if (end === 0) return state & CLOSED; // whitespace only: still closed if it was, and no tag under way
  const matched = state & MATCHED;

  // Closed: the bytes so far, then chunk[0, end), end with the whole tag.
  const closed =
    end >= LENGTH
      ? chunk.compare(TAG, 0, LENGTH, end - LENGTH, end) === 0
      : matched === LENGTH - end && chunk.compare(TAG, LENGTH - end, LENGTH, 0, end) === 0;
  if (end < n) return closed ? CLOSED : 0; // trailing whitespace: no tag under way

  // How much of the tag the chunk leaves begun: from its last `<` among the final bytes, else continuing the one before.
  let begun = 0;
  let lt = -1;
  for (let i = n - 1; i >= 0 && i >= n - LENGTH; i--) {
    if (chunk[i] === LT) {
      lt = i;
      break;
    }
  }
  if (lt >= 0) {
    if (chunk.compare(TAG, 0, n - lt, lt, n) === 0) begun = n - lt;
  } else if (matched > 0 && matched + n <= LENGTH && chunk.compare(TAG, matched, matched + n) === 0) {
    begun = matched + n;
  }
  return begun | (closed ? CLOSED : 0);
}

/** Whether the stream ended with its closing tag (and whitespace). */
export const streamClosed = (state: number): boolean => (state & CLOSED) !== 0;
