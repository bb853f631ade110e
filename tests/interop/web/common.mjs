// Shared pieces of the web interop tests: counted checks with the same `N passed, M failed`
// summary as the Python scripts, a hard overall deadline, bounded waits, and the slixmpp
// TCP peer (tcp_peer.py) driven over its stdin/stdout.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const counts = { passed: 0, failed: 0 };

export function check(name, ok, detail = "") {
  counts[ok ? "passed" : "failed"] += 1;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${ok || !detail ? "" : ": " + detail}`);
  return ok;
}

export function summary() {
  console.log(`${counts.passed} passed, ${counts.failed} failed`);
  return counts.failed === 0 && counts.passed > 0 ? 0 : 1;
}

// Ends the process with a failed check if the test has not finished by then, whatever it
// is waiting on. `onExpire` (best effort, bounded by the deadline's own 5 s) saves artefacts.
export function hardDeadline(seconds, onExpire = async () => {}) {
  const timer = setTimeout(async () => {
    check("finished in time", false, `hard timeout of ${seconds}s`);
    setTimeout(() => process.exit(summary() || 1), 5000).unref();
    try {
      await onExpire();
    } catch {
      // artefacts are best effort
    }
    process.exit(summary() || 1);
  }, seconds * 1000);
  timer.unref();
  return timer;
}

// `promise`, or rejects with `what` after `ms`.
export function within(ms, what, promise) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

export function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return v;
}

// The slixmpp user on TCP. `events` keeps every line it printed; waitFor() looks through
// them (past and future) for one matching `pred`.
export class TcpPeer {
  constructor({ python, host, port, jid, password, verbose }) {
    this.jid = jid;
    this.events = [];
    this.waiters = [];
    this.proc = spawn(python, [join(HERE, "tcp_peer.py"), "--host", host, "--port", String(port), "--jid", jid], {
      env: { ...process.env, PEER_PASSWORD: password },
      stdio: ["pipe", "pipe", verbose ? "inherit" : "ignore"],
    });
    this.exited = new Promise((resolve) => this.proc.on("exit", (code) => resolve(code)));
    this.exited.then((code) => this._push({ event: "exit", code }));
    createInterface({ input: this.proc.stdout }).on("line", (line) => {
      try {
        this._push(JSON.parse(line));
      } catch {
        this._push({ event: "garbage", line });
      }
    });
  }

  _push(ev) {
    this.events.push(ev);
    for (const w of [...this.waiters]) {
      if (w.pred(ev)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(ev);
      }
    }
  }

  // The first event matching pred, or null after `ms`; an exit of the peer also ends the wait.
  waitFor(pred, ms) {
    const found = this.events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => {
      const w = { pred: (ev) => pred(ev) || ev.event === "exit", resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(null);
      }, ms);
    }).then((ev) => (ev && pred(ev) ? ev : null));
  }

  async ready(ms) {
    const ev = await this.waitFor((e) => e.event === "ready" || e.event === "error", ms);
    return ev && ev.event === "ready" ? ev : { error: ev ? ev.detail : this.describeEnd() };
  }

  describeEnd() {
    const exit = this.events.find((e) => e.event === "exit");
    return exit ? `peer exited with ${exit.code}` : "no answer from the peer";
  }

  send(to, body) {
    this.proc.stdin.write(JSON.stringify({ cmd: "send", to, body }) + "\n");
  }

  // Joins a room (XEP-0045) as `nick`; the peer answers with a joined or join_error event.
  join(room, nick) {
    this.proc.stdin.write(JSON.stringify({ cmd: "join", room, nick }) + "\n");
  }

  groupSend(room, body) {
    this.proc.stdin.write(JSON.stringify({ cmd: "groupsend", room, body }) + "\n");
  }

  async quit() {
    if (this.proc.exitCode !== null) return;
    this.proc.stdin.end(JSON.stringify({ cmd: "quit" }) + "\n");
    const code = await Promise.race([this.exited, new Promise((r) => setTimeout(() => r("timeout"), 5000))]);
    if (code === "timeout") this.proc.kill("SIGKILL");
  }
}

export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
