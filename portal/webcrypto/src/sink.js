// Where the page writes the plaintext it decrypts.

/**
 * chooseSink decides where a file of size bytes goes: "file" — straight
 * to a file the recipient picks (the File System Access API, in Chrome and
 * Edge), in constant memory whatever the size; "memory" — assembled in the
 * browser's memory and then downloaded, for files up to memoryLimit
 * bytes; "too-large" — neither, and the page says so.
 *
 * @param {number} size plaintext size in bytes
 * @param {boolean} canPickFile whether window.showSaveFilePicker exists
 * @param {number} memoryLimit the largest file assembled in memory
 * @returns {"file" | "memory" | "too-large"}
 */
export function chooseSink(size, canPickFile, memoryLimit) {
  if (canPickFile) {
    return "file";
  }
  if (size <= memoryLimit) {
    return "memory";
  }
  return "too-large";
}
