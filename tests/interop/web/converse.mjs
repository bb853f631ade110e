// Interop with Converse.js in headless Chromium over WebSocket (RFC 7395), BOSH
// (XEP-0124/0206, WEB_TRANSPORT=bosh) or WebSocket over TLS (WEB_TRANSPORT=wss: confabd's
// HTTPS listener, `[http] tls_port`, with Chromium told to accept exactly confabd's
// certificate by the SHA-256 of its public key, CERT_SPKI): a page served on loopback loads Converse from its npm
// package and logs in to confabd with websocket_url or bosh_service_url (never both, no
// discovery); a slixmpp user on TCP sends it a chat message, which must appear in the chat
// box; the reply typed into the chat box's textarea (Enter sends it) must reach the TCP
// user. Screenshots, the page's console and every WebSocket frame or BOSH response are kept
// in ARTEFACTS. The page is on another port than confabd, so BOSH also exercises CORS.
// Over WebSocket also group chat (XEP-0045): the TCP user creates a room on
// conference.<domain> and says something; Converse joins it and must show that history;
// then a message from each side must reach the other in the room.
//
// Environment: HTTP_PORT, C2S_PORT, WEB_JID, WEB_PASSWORD (the Converse user), PEER_JID,
// PEER_PASSWORD (the TCP user), PYTHON (with slixmpp), ARTEFACTS (a directory), CHROMIUM
// (default /usr/bin/chromium), WEB_TRANSPORT (websocket, the default, bosh, or wss with
// HTTPS_PORT and CERT_SPKI),
// INTEROP_VERBOSE=1 to echo the page's console.
import { createServer } from "node:http";
import { createReadStream, createWriteStream, mkdirSync, statSync } from "node:fs";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { check, env, hardDeadline, summary, TcpPeer, unique, within } from "./common.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const STEP_MS = 20000;
const host = "127.0.0.1";
const transport = process.env.WEB_TRANSPORT || "websocket";
if (!["websocket", "bosh", "wss"].includes(transport)) throw new Error(`WEB_TRANSPORT=${transport}?`);
const bosh = transport === "bosh";
const wss = transport === "wss";
const serviceUrl = bosh
  ? `http://${host}:${env("HTTP_PORT")}/http-bind`
  : wss
    ? `wss://${host}:${env("HTTPS_PORT")}/xmpp-websocket`
    : `ws://${host}:${env("HTTP_PORT")}/xmpp-websocket`;
const transportName = bosh ? "BOSH" : wss ? "WebSocket over TLS" : "WebSocket";
// What Converse calls the connection's type.
const converseType = bosh ? "bosh" : "websocket";
const webJid = env("WEB_JID");
const peerJid = env("PEER_JID");
const artefacts = env("ARTEFACTS");
const verbose = process.env.INTEROP_VERBOSE === "1";
mkdirSync(artefacts, { recursive: true });
// The package's exports hide its files; node_modules is the link scripts/interop-web.sh makes.
const converseDist = join(HERE, "node_modules", "converse.js", "dist");

let page = null;
let shots = 0;
async function screenshot(name) {
  if (!page) return;
  const file = join(artefacts, `converse-${transport}-${String(++shots).padStart(2, "0")}-${name}.png`);
  await within(10000, `screenshot ${name}`, page.screenshot({ path: file, fullPage: true })).catch((e) =>
    console.error(`screenshot ${file} failed: ${e.message}`));
}

// Over WebSocket the group chat scenario runs too, so it gets more time.
hardDeadline(transport === "websocket" ? 150 : 100, () => screenshot("hard-timeout"));

// XML 1.0 "Unique Att Spec": no attribute name twice in one tag. Text cannot hold a raw
// '<', and values are quoted, so tags and attributes can be picked out with patterns.
function hasDuplicateAttribute(frame) {
  for (const tag of frame.matchAll(/<[^\s\/>!?]+((?:\s+[^\s=\/>]+\s*=\s*(?:'[^']*'|"[^"]*"))*)\s*\/?>/g)) {
    const names = [...tag[1].matchAll(/([^\s=]+)\s*=\s*(?:'[^']*'|"[^"]*")/g)].map((m) => m[1]);
    if (new Set(names).size !== names.length) return true;
  }
  return false;
}

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".css": "text/css", ".json": "application/json", ".wasm": "application/wasm", ".svg": "image/svg+xml",
  ".png": "image/png", ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf",
  ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".map": "application/json",
};

// The page, its script, the settings, and Converse's dist/ (Converse loads chunks, fonts
// and emoji data from assets_path at run time). Loopback only; nothing outside those roots.
function staticServer(config) {
  const roots = { "/dist/": converseDist, "/": join(HERE, "page") };
  return createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (path === "/config.json") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(config));
      return;
    }
    const prefix = path.startsWith("/dist/") ? "/dist/" : "/";
    const root = roots[prefix];
    const file = resolve(root, "." + sep + (path === "/" ? "index.html" : path.slice(prefix.length)));
    let ok = file.startsWith(root + sep);
    try {
      ok = ok && statSync(file).isFile();
    } catch {
      ok = false;
    }
    if (!ok) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
}

// Group chat between the TCP user and Converse in a fresh room on conference.<domain>.
async function groupChat(peer) {
  const room = `${unique("converse-room")}@conference.${webJid.split("@")[1]}`;
  const peerNick = "tcp-peer";
  const webNick = "converse-user";
  peer.join(room, peerNick);
  const joined = await peer.waitFor((e) => (e.event === "joined" || e.event === "join_error") && e.room === room, STEP_MS);
  check(`the TCP user creates and joins ${room}`, joined && joined.event === "joined" && joined.created,
    joined ? JSON.stringify(joined) : peer.describeEnd());
  if (!joined || joined.event !== "joined") return;
  // Said before Converse joins: it must come to Converse as the room's history.
  const history = unique("muc-history");
  peer.groupSend(room, history);
  const echoed = await peer.waitFor((e) => e.event === "groupchat" && e.body === history, STEP_MS);
  check("the room reflects the TCP user's message to it", !!echoed, peer.describeEnd());

  try {
    await within(STEP_MS, "opening the room", page.evaluate(([jid, nick]) => window.confabOpenRoom(jid, nick),
      [room, webNick]));
  } catch (e) {
    check("Converse joins the room", false, e.message.split("\n")[0]);
    await screenshot("muc-join-failed");
    return;
  }
  const view = page.locator(`converse-muc[jid="${room}"]`);
  const shows = async (name, text) => {
    try {
      await view.locator(".chat-msg__text", { hasText: text }).waitFor({ state: "visible", timeout: STEP_MS });
      return check(name, true);
    } catch (e) {
      return check(name, false, e.message.split("\n")[0]);
    }
  };
  await shows("Converse joins the room and shows the message said before it came (history)", history);
  await screenshot("muc-joined");

  // TCP -> room -> Converse.
  const inbound = unique("muc-tcp-to-converse");
  peer.groupSend(room, inbound);
  await shows("the TCP user's groupchat message appears in Converse's room view", inbound);

  // Converse -> room -> TCP: typed into the room's textarea, sent with Enter.
  const outbound = unique("muc-converse-to-tcp");
  try {
    const textarea = view.locator("textarea.chat-textarea");
    await textarea.click();
    await textarea.pressSequentially(outbound, { delay: 10 });
    await textarea.press("Enter");
  } catch (e) {
    check("typing into Converse's room view", false, e.message.split("\n")[0]);
  }
  const recv = await peer.waitFor((e) => e.event === "groupchat" && e.body === outbound, STEP_MS);
  check("the TCP user receives, in the room, the message typed in Converse",
    recv && recv.from === `${room}/${webNick}`, recv ? `from ${recv.from}` : peer.describeEnd());
  await screenshot("muc-exchanged");
}

async function main() {
  const peer = new TcpPeer({
    python: env("PYTHON"), host, port: env("C2S_PORT"), jid: peerJid, password: env("PEER_PASSWORD"), verbose,
  });
  const server = staticServer({
    websocket_url: bosh ? undefined : serviceUrl,
    bosh_service_url: bosh ? serviceUrl : undefined,
    // Discovery would ask https://localhost/.well-known/host-meta (port 443): not ours.
    discover_connection_methods: false,
    authentication: "login",
    auto_login: true,
    auto_reconnect: false, // a dropped stream must fail the test, not be papered over
    jid: webJid,
    password: env("WEB_PASSWORD"),
    view_mode: "fullscreen",
    allow_non_roster_messaging: true,
    // OMEMO needs PEP, which confabd lacks, and a wasm module: not what is tested here.
    blacklisted_plugins: ["converse-omemo"],
    play_sounds: false,
    show_desktop_notifications: false,
    loglevel: "debug",
  });
  await new Promise((r) => server.listen(0, host, r));
  const pageUrl = `http://${host}:${server.address().port}/`;
  const consoleLog = createWriteStream(join(artefacts, `converse-${transport}-console.log`));
  const framesLog = createWriteStream(join(artefacts, `converse-${transport}-frames.log`));
  let browser = null;
  try {
    const peerReady = await peer.ready(STEP_MS);
    check(`slixmpp peer logs in on TCP as ${peerReady.jid}`, !peerReady.error, peerReady.error);
    if (peerReady.error) return;

    const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
    try {
      browser = await chromium.launch({
        executablePath,
        headless: true,
        timeout: 30000,
        // Chromium's sandbox refuses to run as root (CI runs as root).
        args: [
          "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
          // Trust confabd's self-signed certificate, and no other, for this run only.
          ...(wss ? [`--ignore-certificate-errors-spki-list=${env("CERT_SPKI")}`] : []),
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
    // Only loopback: Converse's pages link images on its own web site; those requests are
    // refused here (and --host-resolver-rules resolves no name at all).
    await context.route((url) => url.hostname !== host, (route) => route.abort("blockedbyclient"));
    page = await context.newPage();
    const sockets = [];
    const received = [];
    page.on("console", (m) => {
      consoleLog.write(`[${m.type()}] ${m.text()}\n`);
      if (verbose) console.error(`page ${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => consoleLog.write(`[pageerror] ${e.stack || e}\n`));
    page.on("response", (r) => r.status() >= 400 && consoleLog.write(`[http ${r.status()}] ${r.url()}\n`));
    page.on("requestfailed", (r) => consoleLog.write(`[request failed] ${r.url()}: ${r.failure()?.errorText}\n`));
    // BOSH: every request and answer body; an answer is one <body/> whose contents are
    // checked like WebSocket frames below.
    let boshRequests = 0;
    page.on("requestfinished", async (r) => {
      if (r.url() !== serviceUrl || r.method() !== "POST") return;
      boshRequests += 1;
      framesLog.write(`SEND ${r.postData()}\n`);
      try {
        const text = await (await r.response()).text();
        received.push(text);
        framesLog.write(`RECV ${text}\n`);
      } catch (e) {
        framesLog.write(`RECV (unreadable: ${e.message})\n`);
      }
    });
    page.on("websocket", (ws) => {
      sockets.push(ws.url());
      framesLog.write(`open ${ws.url()}\n`);
      ws.on("framesent", (f) => framesLog.write(`SEND ${f.payload}\n`));
      ws.on("framereceived", (f) => {
        received.push(String(f.payload));
        framesLog.write(`RECV ${f.payload}\n`);
      });
      ws.on("close", () => framesLog.write(`close ${ws.url()}\n`));
    });

    await page.goto(pageUrl, { timeout: STEP_MS });
    // Logged in: Converse's own 'connected' event, on a WebSocket transport, bound to our JID.
    try {
      await page.waitForFunction(() => window.confabProbe.connected || window.confabProbe.disconnected, null,
        { timeout: STEP_MS });
    } catch {
      // reported below from the probe's state
    }
    const probe = await page.evaluate(() => window.confabProbe);
    check(`Converse.js logs in over ${transportName} as ${probe.jid}`,
      probe.connected && probe.transport === converseType && probe.service === serviceUrl &&
        String(probe.jid).startsWith(`${webJid}/`),
      `probe ${JSON.stringify(probe)}; see ${artefacts}/converse-console.log`);
    if (bosh) {
      check(`the browser speaks BOSH to ${serviceUrl} (${boshRequests} requests so far) and opens no WebSocket`,
        sockets.length === 0 && boshRequests > 0, `sockets: ${JSON.stringify(sockets)}`);
    } else {
      check(`the browser's only XMPP connection is a WebSocket to ${serviceUrl}`,
        sockets.length === 1 && sockets[0] === serviceUrl, `sockets: ${JSON.stringify(sockets)}`);
    }
    await screenshot("logged-in");
    if (!probe.connected) return;

    // TCP -> browser: the message must be shown in the chat box with the TCP user.
    const inbound = unique("tcp-to-converse");
    peer.send(webJid, inbound);
    // In fullscreen view an incoming chat shows as an unread contact in the roster; open it
    // as a user would, by clicking it.
    const contact = page.locator(`a.open-chat.unread-msgs[data-jid="${peerJid}"]`).first();
    try {
      await contact.waitFor({ state: "visible", timeout: STEP_MS });
      check("Converse shows an unread message from the TCP user", true);
      await screenshot("unread");
      await contact.click();
    } catch (e) {
      check("Converse shows an unread message from the TCP user", false, e.message.split("\n")[0]);
    }
    const chat = page.locator(`converse-chat[jid="${peerJid}"]`);
    try {
      await chat.locator(".chat-msg__text", { hasText: inbound }).waitFor({ state: "visible", timeout: STEP_MS });
      check("the TCP user's message appears in Converse's chat box", true);
    } catch (e) {
      check("the TCP user's message appears in Converse's chat box", false, e.message.split("\n")[0]);
    }
    await screenshot("message-received");

    // Browser -> TCP: typed into the textarea, sent with Enter.
    const outbound = unique("converse-to-tcp");
    try {
      const textarea = chat.locator("textarea.chat-textarea");
      await textarea.click();
      await textarea.pressSequentially(outbound, { delay: 10 });
      await textarea.press("Enter");
    } catch (e) {
      check("typing a reply into Converse's chat box", false, e.message.split("\n")[0]);
    }
    const recv = await peer.waitFor((e) => e.event === "message" && e.body === outbound, STEP_MS);
    check("the TCP user receives the reply typed in Converse",
      recv && recv.from.startsWith(`${webJid}/`), recv ? `from ${recv.from}` : peer.describeEnd());
    try {
      await chat.locator(".chat-msg__text", { hasText: outbound }).waitFor({ state: "visible", timeout: 5000 });
      check("the reply is shown as sent in Converse's chat box", true);
    } catch (e) {
      check("the reply is shown as sent in Converse's chat box", false, e.message.split("\n")[0]);
    }
    await screenshot("reply-sent");

    if (transport === "websocket") await groupChat(peer);

    // RFC 7395 §3.3: every WebSocket message is one well-formed XML element (and every BOSH
    // answer one well-formed <body/>, XEP-0124 §4). Checked after
    // the fact with the browser's XML parser, plus unique attribute names, which it does not
    // enforce for xmlns: a client may misread such a frame silently (Converse does), so the
    // exchange above can pass without it.
    const unparsable = await page.evaluate((frames) => frames.filter((f) =>
      new DOMParser().parseFromString(f, "application/xml").getElementsByTagName("parsererror").length > 0), received);
    const malformed = received.filter((f) => unparsable.includes(f) || hasDuplicateAttribute(f));
    check(`every ${bosh ? "BOSH body" : "frame"} confabd sent is well-formed XML (${received.length})`,
      received.length > 0 && malformed.length === 0,
      malformed.slice(0, 3).join(" | "));
  } finally {
    if (browser) await within(10000, "closing Chromium", browser.close()).catch((e) => console.error(e.message));
    server.close();
    await peer.quit();
    consoleLog.end();
    framesLog.end();
  }
}

main()
  .catch(async (e) => {
    check("Converse.js test run", false, e.stack || String(e));
    await screenshot("error");
  })
  .finally(() => {
    const rc = summary();
    if (rc !== 0) console.log(`Converse.js artefacts (screenshots, console, ${transportName} traffic): ${artefacts}`);
    process.exit(rc);
  });
