// Recovery keys: round trips, and what a one-symbol typo does.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FormatError } from "../../src/format/errors.js";
import { formatRecoveryKey, parseRecoveryKey } from "../../src/format/recovery.js";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

describe("recovery keys", () => {
  it("any 32-byte key formats to 11 groups of 5 Crockford symbols and parses back", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const text = formatRecoveryKey(bytes);
        expect(text).toMatch(/^([0-9A-HJKMNP-TV-Z]{5}-){10}[0-9A-HJKMNP-TV-Z]{5}$/);
        expect([...parseRecoveryKey(text)]).toEqual([...bytes]);
        expect([...parseRecoveryKey(text.replace(/-/g, "").toLowerCase())]).toEqual([...bytes]);
      }),
      { numRuns: 200 },
    );
  });

  it("every one-symbol substitution of a key is caught, except in the 3 padding bits of the last symbol", () => {
    const key = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 53 + 11) & 0xff));
    const text = formatRecoveryKey(key).replace(/-/g, "");
    let harmless = 0;
    for (let at = 0; at < text.length; at++) {
      for (const symbol of ALPHABET) {
        if (symbol === text[at]) continue;
        const typo = text.slice(0, at) + symbol + text.slice(at + 1);
        let parsed: Buffer | undefined;
        try {
          parsed = parseRecoveryKey(typo);
        } catch (err) {
          expect((err as FormatError).code).toBe("RECOVERY_KEY_INVALID");
          continue;
        }
        // Accepted: only possible when the change hit nothing but padding, so the key is unchanged.
        expect(at).toBe(text.length - 1);
        expect(parsed).toEqual(key);
        harmless++;
      }
    }
    expect(harmless).toBe(7); // the 8 symbols sharing the top 2 bits of the last one, minus itself
  });

  it("refuses wrong lengths", () => {
    const text = formatRecoveryKey(Buffer.alloc(32, 9));
    expect(() => parseRecoveryKey(text + "0")).toThrow(FormatError);
    expect(() => parseRecoveryKey(text.slice(0, -1))).toThrow(FormatError);
    expect(() => parseRecoveryKey("")).toThrow(FormatError);
    expect(() => formatRecoveryKey(Buffer.alloc(31))).toThrow(RangeError);
  });
});
