// The passphrase rules of package crypto (crypto/passphrase.go), for the
// page that decrypts in the browser: 25 symbols of Crockford's base32
// alphabet in five groups of five. What a person types — lower case,
// spaces, missing hyphens, full-width characters from a Japanese IME, O
// for 0, I or L for 1 — is turned into the canonical form that key.age
// was encrypted with. portal/webcrypto_test.go checks that this function
// and crypto.NormalizePassphrase agree.

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const symbols = 25;
const group = 5;

/**
 * normalizePassphrase returns the canonical form of what was typed, or
 * null when it cannot be a passphrase.
 *
 * @param {string} typed
 * @returns {string | null}
 */
export function normalizePassphrase(typed) {
  const sym = [];
  for (const ch of typed) {
    let c = ch.codePointAt(0);
    if (c === 0x2d || c === 0x20 || c === 0x09 || c === 0x3000 || c === 0x30fc || c === 0xff0d) {
      continue;
    }
    if (c >= 0x61 && c <= 0x7a) {
      c -= 0x20;
    } else if (c >= 0xff01 && c <= 0xff5e) {
      // Full-width ASCII.
      c -= 0xff01 - 0x21;
      if (c >= 0x61 && c <= 0x7a) {
        c -= 0x20;
      }
    }
    if (c === 0x4f) {
      c = 0x30; // O → 0
    } else if (c === 0x49 || c === 0x4c) {
      c = 0x31; // I, L → 1
    }
    if (c > 127 || !alphabet.includes(String.fromCharCode(c))) {
      if (c === 0x2d) {
        continue;
      }
      return null;
    }
    sym.push(String.fromCharCode(c));
    if (sym.length > symbols) {
      return null;
    }
  }
  if (sym.length !== symbols) {
    return null;
  }
  let out = "";
  for (let i = 0; i < sym.length; i++) {
    if (i > 0 && i % group === 0) {
      out += "-";
    }
    out += sym[i];
  }
  return out;
}
