// The decryption itself: key.age opened with the passphrase, file.age
// decrypted as a stream with the transfer identity inside it, the
// plaintext's size and SHA-256 checked against what the gateway recorded
// when it sealed the file. Nothing here talks to the server or the page.

import { Decrypter, armor } from "age-encryption";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";

/**
 * IntegrityError: the plaintext is not the file that was sealed. sha256 is
 * the hash of what was decrypted, when all of it was.
 */
export class IntegrityError extends Error {
  constructor(message, sha256 = "") {
    super(message);
    this.name = "IntegrityError";
    this.sha256 = sha256;
  }
}

/**
 * openKeyFile decrypts key.age (armored, encrypted with the passphrase
 * alone) and returns the transfer identity it holds ("AGE-SECRET-KEY-1…"),
 * or null when the passphrase does not open it. Any other failure throws.
 *
 * @param {string} keyFile the armored key.age
 * @param {string} passphrase the canonical passphrase
 * @returns {Promise<string | null>}
 */
export async function openKeyFile(keyFile, passphrase) {
  const d = new Decrypter();
  d.addPassphrase(passphrase);
  let content;
  try {
    content = await d.decrypt(armor.decode(keyFile), "text");
  } catch (e) {
    // age-encryption's error when no stanza opens with the passphrase.
    if (e instanceof Error && e.message.startsWith("no identity matched")) {
      return null;
    }
    throw e;
  }
  const ids = content.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("AGE-SECRET-KEY-1"));
  if (ids.length !== 1) {
    throw new Error("key.age does not hold exactly one identity");
  }
  return ids[0];
}

/**
 * decryptFile returns the plaintext of file.age read from body, as a
 * stream that fails — before its end, so that whoever consumes it can
 * discard what it wrote — unless the plaintext has exactly the size and
 * SHA-256 recorded at sealing (an IntegrityError) or a chunk does not
 * authenticate (age). onProgress is called with the plaintext bytes so
 * far. Once the stream has ended, sha256 holds the hash computed.
 *
 * @param {ReadableStream<Uint8Array>} body file.age
 * @param {string} identity the transfer identity
 * @param {{size: number, sha256: string}} want
 * @param {(n: number) => void} onProgress
 * @returns {Promise<{stream: ReadableStream<Uint8Array>, sha256: string}>}
 */
export async function decryptFile(body, identity, want, onProgress) {
  const d = new Decrypter();
  d.addIdentity(identity);
  const plain = await d.decrypt(body);
  const h = sha256.create();
  let n = 0;
  const result = { stream: null, sha256: "" };
  result.stream = plain.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      n += chunk.length;
      if (n > want.size) {
        throw new IntegrityError(`the file is larger than the ${want.size} bytes recorded`);
      }
      h.update(chunk);
      onProgress(n);
      controller.enqueue(chunk);
    },
    flush() {
      if (n !== want.size) {
        throw new IntegrityError(`the file has ${n} bytes, ${want.size} were recorded`);
      }
      const got = bytesToHex(h.digest());
      if (got !== want.sha256.toLowerCase()) {
        throw new IntegrityError(`SHA-256 ${got}, ${want.sha256} was recorded`, got);
      }
      result.sha256 = got;
    },
  }));
  return result;
}
