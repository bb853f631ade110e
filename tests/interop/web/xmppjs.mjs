// Interop with xmpp.js (@xmpp/client) over WebSocket (RFC 7395): discovers the endpoint
// through XEP-0156 host-meta, logs in, exchanges chat messages with a slixmpp user on TCP,
// makes an IQ round trip and closes the stream cleanly.
//
// Environment: HTTP_PORT, HTTPS_PORT (optional: confabd's TLS port, whose wss:// URL
// host-meta lists after the plain one), C2S_PORT, WEB_JID, WEB_PASSWORD (the xmpp.js user), PEER_JID,
// PEER_PASSWORD (the TCP user), PYTHON (with slixmpp), INTEROP_VERBOSE=1 for every stanza.
import { WebSocket as WsWebSocket } from "ws";
import { client, xml, jid as parseJid } from "@xmpp/client";
import parseXml from "@xmpp/xml/lib/parse.js";
import { check, env, hardDeadline, summary, TcpPeer, unique, within } from "./common.mjs";

const STEP_MS = 15000;
const WS_REL = "urn:xmpp:alt-connections:websocket";
const host = "127.0.0.1";
const httpPort = env("HTTP_PORT");
const verbose = process.env.INTEROP_VERBOSE === "1";
const expectedUrl = `ws://${host}:${httpPort}/xmpp-websocket`;
// Asked over plain HTTP, host-meta lists the plain URL first, then the TLS one.
const httpsPort = process.env.HTTPS_PORT;
const expectedUrls = [expectedUrl, ...(httpsPort ? [`wss://${host}:${httpsPort}/xmpp-websocket`] : [])];
const sameUrls = (got) => got.length === expectedUrls.length && got.every((u, i) => u === expectedUrls[i]);

// xmpp.js uses the WebSocket global, which Node 20 only has behind a flag.
globalThis.WebSocket ??= WsWebSocket;

hardDeadline(60);

// XEP-0156 §3: xmpp.js's own discovery only asks https://DOMAIN/.well-known/host-meta (port
// 443), so fetch host-meta from our port and read it with xmpp.js's XML parser, as its
// resolver does.
async function discover() {
  let url = null;
  try {
    const res = await within(STEP_MS, "GET host-meta", fetch(`http://${host}:${httpPort}/.well-known/host-meta`));
    const body = await res.text();
    const links = parseXml(body).getChildren("Link").filter((l) => l.attrs.rel === WS_REL);
    const hrefs = links.map((l) => l.attrs.href);
    // xmpp.js connects to the first: the request's own scheme.
    url = sameUrls(hrefs) ? hrefs[0] : null;
    check(`host-meta (XRD) links the WebSocket endpoints ${expectedUrls.join(", ")}`, res.status === 200 && url === expectedUrl,
      `status ${res.status}, body ${body}`);
  } catch (e) {
    check("host-meta (XRD) links the WebSocket endpoint", false, String(e));
  }
  try {
    const res = await within(STEP_MS, "GET host-meta.json",
      fetch(`http://${host}:${httpPort}/.well-known/host-meta.json`, { headers: { Origin: "http://example.test" } }));
    const body = await res.json();
    const hrefs = (body.links || []).filter((l) => l.rel === WS_REL).map((l) => l.href);
    check("host-meta.json links the same endpoint, readable cross-origin (CORS)",
      res.status === 200 && sameUrls(hrefs) &&
        res.headers.get("access-control-allow-origin") === "*",
      `status ${res.status}, ACAO ${res.headers.get("access-control-allow-origin")}, body ${JSON.stringify(body)}`);
  } catch (e) {
    check("host-meta.json links the WebSocket endpoint", false, String(e));
  }
  return url;
}

async function main() {
  const webJid = parseJid(env("WEB_JID"));
  const peer = new TcpPeer({
    python: env("PYTHON"), host, port: env("C2S_PORT"), jid: env("PEER_JID"),
    password: env("PEER_PASSWORD"), verbose,
  });
  let xmpp = null;
  try {
    const url = await discover();
    const peerReady = await peer.ready(STEP_MS);
    check(`slixmpp peer logs in on TCP as ${peerReady.jid}`, !peerReady.error, peerReady.error);
    if (!url || peerReady.error) return;

    xmpp = client({ service: url, domain: webJid.domain, username: webJid.local, password: env("WEB_PASSWORD"),
      resource: "xmppjs" });
    // No reconnecting: a dropped stream must fail the test, not be papered over.
    xmpp.reconnect.stop();
    const mechanisms = [];
    const chats = [];
    xmpp.on("send", (el) => {
      if (verbose) console.error("xmpp.js SEND", el.toString());
      if ((el.name === "auth" || el.name === "authenticate") && el.attrs.mechanism) mechanisms.push(el.attrs.mechanism);
    });
    xmpp.on("element", (el) => verbose && console.error("xmpp.js RECV", el.toString()));
    xmpp.on("error", (e) => console.error("xmpp.js error:", e.message || e));
    xmpp.on("stanza", (st) => {
      if (st.is("message") && st.getChildText("body")) chats.push(st);
    });

    let address;
    try {
      address = await within(STEP_MS, "xmpp.js login", xmpp.start());
    } catch (e) {
      check("xmpp.js logs in over WebSocket", false, e.condition ? `${e.condition}: ${e.message}` : String(e));
      return;
    }
    check(`xmpp.js logs in over WebSocket as ${address} (SASL ${mechanisms.join(", ") || "?"})`,
      address.bare().toString() === webJid.bare().toString());
    check("xmpp.js authenticated with SCRAM (not PLAIN)", mechanisms.some((m) => m.startsWith("SCRAM-")),
      `mechanisms sent: ${mechanisms.join(", ")}`);
    await xmpp.send(xml("presence"));

    // An IQ round trip to the server itself (disco#info).
    try {
      const res = await within(STEP_MS, "disco#info", xmpp.iqCaller.request(
        xml("iq", { type: "get", to: webJid.domain }, xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }))));
      const features = res.getChild("query").getChildren("feature").map((f) => f.attrs.var);
      check("xmpp.js gets the server's disco#info over WebSocket", features.includes("http://jabber.org/protocol/disco#info"),
        `features: ${features.join(" ")}`);
    } catch (e) {
      check("xmpp.js gets the server's disco#info over WebSocket", false, String(e));
    }

    // TCP -> WebSocket, to the bare JID: routed to the xmpp.js resource, the only one online.
    const inbound = unique("tcp-to-xmppjs");
    peer.send(webJid.bare().toString(), inbound);
    const deadline = Date.now() + STEP_MS;
    while (Date.now() < deadline && !chats.some((m) => m.getChildText("body") === inbound)) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const got = chats.find((m) => m.getChildText("body") === inbound);
    check("xmpp.js receives the TCP user's message", got && parseJid(got.attrs.from).bare().toString() === env("PEER_JID"),
      got ? `from ${got.attrs.from}` : `not within ${STEP_MS} ms`);

    // WebSocket -> TCP.
    const outbound = unique("xmppjs-to-tcp");
    await xmpp.send(xml("message", { to: env("PEER_JID"), type: "chat" }, xml("body", {}, outbound)));
    const recv = await peer.waitFor((e) => e.event === "message" && e.body === outbound, STEP_MS);
    check("the TCP user receives xmpp.js's message",
      recv && recv.from.startsWith(`${webJid.bare()}/`), recv ? `from ${recv.from}` : peer.describeEnd());

    // RFC 7395 §3.6: xmpp.js sends <close/>, waits (2 s) for the server's <close/>, which
    // stop() returns, then closes the WebSocket; the 'disconnect' status says whether the
    // socket closed cleanly.
    try {
      const disconnected = new Promise((r) => xmpp.on("disconnect", r));
      const el = await within(STEP_MS, "xmpp.js stop", xmpp.stop());
      check("confabd answers xmpp.js's <close/> with <close/>", el && el.is("close", "urn:ietf:params:xml:ns:xmpp-framing"),
        el ? `got ${el}` : "no <close/> within xmpp.js's 2 s");
      const how = await within(5000, "WebSocket close", disconnected);
      check("the WebSocket closes cleanly", how && how.clean === true, JSON.stringify(how));
    } catch (e) {
      check("xmpp.js closes the stream", false, String(e));
    }
    xmpp = null;
  } finally {
    if (xmpp) await within(5000, "stop", xmpp.stop()).catch(() => {});
    await peer.quit();
  }
}

main()
  .catch((e) => check("xmpp.js test run", false, e.stack || String(e)))
  .finally(() => process.exit(summary()));
