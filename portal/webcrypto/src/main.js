// The download page's decryption in the recipient's browser (portal/
// templates/link.html, section#browser-decrypt; the flow and its lockout
// rule are described in portal/browser.go).
//
//  1. The passphrase is checked for its form here; it is never sent.
//  2. POST …/key: key.age — the transfer identity encrypted with the
//     passphrase, the contract key's layer removed by the server. The
//     server counts the request as one passphrase attempt (it cannot see
//     whether the passphrase is right). Opened here; kept in memory for the
//     page's lifetime, so the other files of the page need no new attempt.
//  3. Where to write: a file the recipient picks (File System Access API),
//     or the browser's memory up to the limit the page states.
//  4. POST …/age (mode=browser): file.age, through the counted download
//     endpoint, decrypted as it streams in, its size and SHA-256 checked
//     against the ones recorded at sealing before the file is kept.
//  5. POST …/decrypted: the SHA-256 this page computed, for the ledger;
//     the answer holds the attempts left, the key fetch's given back.
//
// Every text the recipient reads comes from the page (Japanese or
// English, as the page is); none is written here.

import { decryptFile, IntegrityError, openKeyFile } from "./core.js";
import { normalizePassphrase } from "./passphrase.js";
import { chooseSink } from "./sink.js";

const root = document.getElementById("browser-decrypt");
if (root !== null && usable()) {
  start(root);
}

// usable reports whether this browser has what the page needs: WebCrypto
// (X25519; secure contexts only) and streams.
function usable() {
  return window.isSecureContext && typeof crypto === "object" && crypto.subtle !== undefined &&
    typeof ReadableStream === "function" && typeof TransformStream === "function" &&
    typeof WritableStream === "function" && typeof fetch === "function";
}

function start(root) {
  const $ = (id) => document.getElementById(id);
  const status = $("bd-status");
  const bar = $("bd-progress");
  const input = $("bd-passphrase");
  const attempts = $("bd-attempts");
  const canPickFile = typeof window.showSaveFilePicker === "function";
  const memoryLimit = Number(root.dataset.memoryLimit);
  const buttons = [...root.querySelectorAll("button[data-file]")];
  let identity = null; // the opened transfer identity
  let busy = false;
  let stopped = false; // the link can no longer be used

  // text returns the page's text for key with {name} placeholders filled.
  const text = (key, vars = {}) => {
    const el = root.querySelector(`[data-text="${key}"]`);
    let t = el === null ? key : el.textContent;
    for (const [k, v] of Object.entries(vars)) {
      t = t.replaceAll(`{${k}}`, String(v));
    }
    return t;
  };
  const say = (message, kind = "") => {
    status.textContent = message;
    status.className = kind;
  };
  const post = (url, fields) => fetch(url, {
    method: "POST",
    body: new URLSearchParams({ csrf: root.dataset.csrf, ...fields }),
    credentials: "same-origin",
    cache: "no-store",
    redirect: "error",
  });
  // refusal returns the message of the server's answer (its message
  // page), as text.
  const refusal = async (resp) => {
    try {
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const p = doc.querySelector("main .notice, main .error");
      if (p !== null) {
        return p.textContent.trim();
      }
    } catch {
      // fall through
    }
    return text("unavailable");
  };
  const mib = (n) => (n / (1 << 20)).toFixed(1);

  $(canPickFile ? "bd-save-file" : "bd-save-memory").hidden = false;
  for (const b of buttons) {
    b.addEventListener("click", () => run(b));
  }
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      if (buttons.length === 1) {
        buttons[0].click();
      }
    }
  });
  root.hidden = false;

  // unlock returns the transfer identity, fetching and opening key.age
  // with the passphrase typed; null when it cannot (the page says why).
  async function unlock() {
    if (identity !== null) {
      return identity;
    }
    const pass = normalizePassphrase(input.value);
    if (pass === null) {
      say(text("shape"), "error");
      input.focus();
      return null;
    }
    say(text("checking"));
    const resp = await post(root.dataset.key, {});
    if (!resp.ok) {
      stopped = resp.status === 403 || resp.status === 410;
      say(await refusal(resp), "error");
      return null;
    }
    const left = resp.headers.get("X-Sealgate-Attempts-Left");
    if (left !== null) {
      attempts.textContent = left;
    }
    const id = await openKeyFile(await resp.text(), pass);
    if (id === null) {
      say(left === "0" ? text("nomore") : text("wrongpass", { n: left ?? "?" }), "error");
      input.focus();
      return null;
    }
    identity = id;
    return id;
  }

  // spend counts one download of button's file down in the page, as the
  // server did.
  function spend(button) {
    const left = button.parentElement.querySelector("[data-left]");
    if (left === null) {
      return; // unlimited
    }
    const n = Math.max(0, Number(left.dataset.left) - 1);
    left.dataset.left = String(n);
    left.querySelector("span").textContent = String(n);
    if (n === 0) {
      button.dataset.spent = "true";
    }
  }

  async function run(button) {
    if (busy || stopped) {
      return;
    }
    const f = {
      index: button.dataset.file,
      name: button.dataset.name,
      size: Number(button.dataset.size),
      sha256: button.dataset.sha256,
    };
    const sink = chooseSink(f.size, canPickFile, memoryLimit);
    if (sink === "too-large") {
      say(text("toolarge", { name: f.name, size: mib(f.size) }), "error");
      return;
    }
    busy = true;
    buttons.forEach((b) => { b.disabled = true; });
    let out = null;
    try {
      const id = await unlock();
      if (id === null) {
        return;
      }
      let chunks = null;
      if (sink === "file") {
        let handle;
        try {
          handle = await window.showSaveFilePicker({ suggestedName: f.name });
        } catch (e) {
          // AbortError: the recipient cancelled; SecurityError or
          // NotAllowedError: the click is too long ago (a new click
          // opens the picker at once: the identity is open).
          say(e.name === "AbortError" ? text("cancelled") : text("clickagain"));
          return;
        }
        out = await handle.createWritable();
      } else {
        chunks = [];
        out = new WritableStream({ write(c) { chunks.push(c); } });
      }
      bar.max = f.size;
      bar.value = 0;
      bar.hidden = false;
      say(text("progress", { name: f.name, done: mib(0), size: mib(f.size) }));
      const resp = await post(root.dataset.age, { file: f.index, mode: "browser" });
      if (!resp.ok) {
        await out.abort();
        out = null;
        stopped = resp.status === 410;
        say(await refusal(resp), "error");
        return;
      }
      // The bar moves with every chunk; the text (read out by screen
      // readers) every tenth of the file.
      let next = f.size / 10;
      const plain = await decryptFile(resp.body, id, f, (n) => {
        bar.value = n;
        if (n >= next) {
          next += f.size / 10;
          say(text("progress", { name: f.name, done: mib(n), size: mib(f.size) }));
        }
      });
      const w = out;
      out = null; // pipeTo closes it, or aborts it (the file is discarded)
      await plain.stream.pipeTo(w);
      if (chunks !== null) {
        const url = URL.createObjectURL(new Blob(chunks, { type: "application/octet-stream" }));
        chunks = null;
        const a = document.createElement("a");
        a.href = url;
        a.download = f.name;
        document.body.append(a);
        a.click();
        a.remove();
        // The download holds its own reference; the page's goes soon.
        setTimeout(() => URL.revokeObjectURL(url), 60000);
      }
      spend(button);
      // The report's answer holds the attempts left: the download gave
      // back the one the key fetch took.
      const report = await post(root.dataset.done, { file: f.index, sha256: plain.sha256 }).catch(() => null);
      const left = report?.ok ? report.headers.get("X-Sealgate-Attempts-Left") : null;
      if (left !== null) {
        attempts.textContent = left;
      }
      say(text(sink === "memory" ? "donememory" : "done", { name: f.name }), "done");
    } catch (e) {
      if (out !== null) {
        await out.abort().catch(() => {});
      }
      if (e instanceof IntegrityError) {
        say(text("mismatch", { name: f.name }), "error");
        await post(root.dataset.done, { file: f.index, sha256: e.sha256 }).catch(() => {});
      } else {
        say(text("failed", { name: f.name }), "error");
      }
    } finally {
      busy = false;
      bar.hidden = true;
      buttons.forEach((b) => { b.disabled = stopped || b.dataset.spent === "true"; });
    }
  }
}
