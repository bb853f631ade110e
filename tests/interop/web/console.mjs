// The admin console in headless Chromium: the set-up wizard from the link confabd printed
// (in 简体中文 by default: language, domain, a database URL whose connection test must fail,
// then SQLite, the administrator), the in-process restart, login, a user created in the
// console, that user logged in over TCP by slixmpp and seen on the sessions page, the session
// kicked (the TCP client must see its stream end), the language switched to English, the
// audit log. Screenshots of every step go to ARTEFACTS, at a desktop width and, for the
// sessions page, a phone's. The REST API is called with node's fetch and a token made on the
// console's page.
//
// Environment: SETUP_LINK (from confabd's log), ADMIN_PORT, C2S_PORT, PYTHON (with slixmpp),
// ARTEFACTS, CHROMIUM (default /usr/bin/chromium), CONSOLE_LANG (zh-CN, the default, or en).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { check, env, hardDeadline, summary, TcpPeer, unique, within } from "./common.mjs";

const STEP_MS = 20000;
const host = "127.0.0.1";
const setupLink = env("SETUP_LINK");
const base = `http://${host}:${env("ADMIN_PORT")}`;
const artefacts = env("ARTEFACTS");
const lang = process.env.CONSOLE_LANG || "zh-CN";
const zh = lang === "zh-CN";
mkdirSync(artefacts, { recursive: true });
// What the pages say, in the language the wizard picks.
const T = zh
  ? { domain: "域名", dbFailed: "无法连接", admin: "请勿跳过", done: "设置完成", online: "在线会话", created: "用户已创建", kicked: "会话已断开" }
  : { domain: "Domain", dbFailed: "Could not connect", admin: "Do not skip it", done: "Set-up complete", online: "Online sessions", created: "User created", kicked: "The session was disconnected" };

let page = null;
let shots = 0;
async function screenshot(name) {
  if (!page) return;
  const file = join(artefacts, `console-${String(++shots).padStart(2, "0")}-${name}.png`);
  await within(10000, `screenshot ${name}`, page.screenshot({ path: file, fullPage: true })).catch((e) =>
    console.error(`screenshot ${file} failed: ${e.message}`));
}

hardDeadline(150, () => screenshot("hard-timeout"));

async function text() {
  return await page.locator("body").innerText();
}

async function step(name, fn) {
  try {
    const ok = await fn();
    check(name, ok !== false);
    return ok !== false;
  } catch (e) {
    check(name, false, e.message.split("\n")[0]);
    await screenshot(`failed-${name.replace(/[^a-z0-9]+/gi, "-").slice(0, 40)}`);
    return false;
  }
}

// The login page of the restarted server: no "set-up complete, restarting" notice any more.
async function waitForRestart() {
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${base}/login`);
      const body = await r.text();
      if (r.status === 200 && !body.includes("class=\"notice info\"")) return true;
    } catch {
      // the listener is down while the server restarts
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  return false;
}

async function main() {
  let browser = null;
  let peer = null;
  try {
    const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
    try {
      browser = await chromium.launch({
        executablePath,
        headless: true,
        timeout: 30000,
        args: [
          "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
          ...(process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : []),
        ],
      });
      check(`headless Chromium ${browser.version()} starts`, true);
    } catch (e) {
      check(`headless Chromium starts (${executablePath})`, false, e.message);
      return;
    }
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(STEP_MS);
    page = await context.newPage();
    page.on("pageerror", (e) => console.error(`page error: ${e}`));
    const adminUser = unique("admin");
    const adminPassword = unique("pw");
    const userJid = `${unique("console-user")}@localhost`;
    const userPassword = unique("pw");

    if (!(await step("the set-up link opens the wizard", async () => {
      await page.goto(setupLink);
      await screenshot("setup-language");
      return new URL(page.url()).pathname === "/setup";
    }))) return;
    await step(`language: ${lang}`, async () => {
      await page.check(`input[name=lang][value="${lang}"]`);
      await page.click("#next");
      await page.waitForSelector("#domain");
      await screenshot("setup-domain");
      return (await text()).includes(T.domain);
    });
    await step("domain: localhost", async () => {
      await page.fill("#domain", "localhost");
      await page.click("#next");
      await page.waitForSelector("#db-sqlite");
      return true;
    });
    await step("database: the connection test reports a database that is not there", async () => {
      await page.check("#db-url");
      await page.fill("#url", "postgres://confab@127.0.0.1:1/none");
      await page.click("#test");
      await page.waitForSelector(".notice.error");
      await screenshot("setup-database-test");
      return (await text()).includes(T.dbFailed);
    });
    await step("database: SQLite", async () => {
      await page.check("#db-sqlite");
      await page.click("#next");
      await page.waitForSelector("#username");
      await screenshot("setup-admin");
      return (await text()).includes(T.admin);
    });
    if (!(await step(`administrator ${adminUser}@localhost`, async () => {
      await page.fill("#username", adminUser);
      await page.fill("#password", adminPassword);
      await page.fill("#password2", adminPassword);
      await page.click("#finish");
      await page.waitForSelector("#to-login");
      await screenshot("setup-done");
      return (await text()).includes(T.done);
    }))) return;
    if (!(await step("the server restarts with the new settings", waitForRestart))) return;
    if (!(await step("the administrator logs in", async () => {
      await page.click("#to-login");
      await page.fill("#jid", `${adminUser}@localhost`);
      await page.fill("#password", adminPassword);
      await page.click("button[type=submit]");
      await page.waitForURL(`${base}/dashboard`);
      await screenshot("dashboard");
      return (await text()).includes(T.online);
    }))) return;
    await step("the dashboard's live chart is drawn", async () => {
      // Attached, not visible: a flat line (no sessions yet) has no height.
      await page.waitForSelector("svg[data-series=sessions] polyline", { state: "attached", timeout: 8000 });
      return true;
    });
    if (!(await step(`a user is created: ${userJid}`, async () => {
      await page.goto(`${base}/users`);
      await page.fill("#new-jid", userJid);
      await page.fill("#new-password", userPassword);
      await page.click("#create");
      await page.waitForURL(/\/user\?/);
      await screenshot("user-created");
      return (await text()).includes(T.created);
    }))) return;
    peer = new TcpPeer({ python: env("PYTHON"), host, port: env("C2S_PORT"), jid: userJid, password: userPassword });
    const ready = await peer.ready(STEP_MS);
    if (!check("the new user logs in over TCP (slixmpp)", !ready.error, ready.error)) return;
    const row = `tr[data-jid="${ready.jid}"]`;
    if (!(await step("the session shows on the sessions page", async () => {
      await page.goto(`${base}/sessions`);
      await page.waitForSelector(row);
      await screenshot("sessions");
      const narrow = await context.newPage();
      await narrow.setViewportSize({ width: 390, height: 844 });
      await narrow.goto(`${base}/sessions`);
      await narrow.screenshot({ path: join(artefacts, "console-sessions-narrow.png"), fullPage: true });
      await narrow.close();
      return (await page.locator(row).innerText()).includes("tcp");
    }))) return;
    await step("the REST API lists the session (token from the console, node's fetch)", async () => {
      await page.goto(`${base}/api-tokens`);
      await page.fill("#token-name", "interop");
      await page.click("#create-token");
      const token = (await page.locator("#new-token").innerText()).trim();
      const denied = await fetch(`${base}/api/v1/sessions`);
      if (denied.status !== 401) throw new Error(`without a token: ${denied.status}`);
      const r = await fetch(`${base}/api/v1/sessions`, { headers: { authorization: `Bearer ${token}` } });
      const body = await r.json();
      return r.status === 200 && body.sessions.some((s) => s.jid === ready.jid && s.transport === "tcp");
    });
    await page.goto(`${base}/sessions`);
    await step("kicking it ends the client's stream", async () => {
      await page.click(`${row} button`);
      await page.waitForURL(/msg=sessions.disconnected/);
      await screenshot("kicked");
      const ended = await peer.waitFor((e) => e.event === "stream_error" || e.event === "disconnected", 10000);
      if (!ended) throw new Error(`the TCP client saw no end of its stream: ${JSON.stringify(peer.events)}`);
      return (await text()).includes(T.kicked);
    });
    await step("the language switches", async () => {
      const other = zh ? "en" : "zh-CN";
      await page.selectOption("#lang", other);
      await page.click("form.lang button");
      await page.waitForLoadState();
      await page.goto(`${base}/dashboard`);
      await screenshot("language-switched");
      const t = await text();
      return zh ? t.includes("Online sessions") : t.includes("在线会话");
    });
    await step("the audit log lists the kick", async () => {
      await page.goto(`${base}/audit`);
      await screenshot("audit");
      const t = await text();
      return t.includes("session-disconnect") && t.includes("user-create") && t.includes("setup");
    });
  } finally {
    if (peer) await peer.quit();
    if (browser) await browser.close().catch(() => {});
  }
}

await main();
process.exit(summary());
