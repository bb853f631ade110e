#!/usr/bin/env python3
"""Interop test: XEP-0363 HTTP File Upload against a running Confab server, with slixmpp's
xep_0363 plugin (which PUTs with aiohttp) and xep_0066 for the link.

Checks, each counted as passed or failed:
  * slixmpp finds the upload service through the server's disco#items and reads its
    max-file-size;
  * it uploads a file (slot request, PUT with the slot's Authorization header); the GET URL
    serves it back byte-identical, with nosniff and a sandboxing CSP;
  * alice sends bob the URL as body + jabber:x:oob; bob's message carries the OOB URL and
    the file fetched from it is the same;
  * a slot for a file over the limit is refused with not-acceptable and <file-too-large/>;
  * a second PUT to the used slot is refused.
"""

import asyncio
import os
import uuid

import aiohttp
from slixmpp.exceptions import IqError

from xmpp_common import check, iq_attempt, login, next_item, run_main

PLUGINS = ("xep_0030", "xep_0066", "xep_0363")
NS = "urn:xmpp:http:upload:0"


async def fetch(url):
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            return r.status, r.headers.copy(), await r.read()


async def run(args):
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        presence=True)
    bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS,
                      presence=True)
    if not alice or not bob:
        return
    try:
        up = alice.plugin["xep_0363"]
        info, _ = await iq_attempt(up.find_upload_service(), "upload service discovery")
        if not check("slixmpp finds the upload service", info is not None):
            return
        service = info["from"]
        check("  ...on upload.<domain>", service.bare == f"upload.{alice.boundjid.domain}",
              f"{service}")

        data = os.urandom(150_000) + b"end"
        name = f"photo {uuid.uuid4().hex[:6]}.png"
        url = await asyncio.wait_for(
            up.upload_file(name, size=len(data), content_type="image/png",
                           input_file=__import__("io").BytesIO(data)), 30)
        check("slixmpp uploads a file", url.startswith("http"), url)
        check("  ...and learnt max-file-size", up.max_file_size == 10 * 1024 * 1024,
              f"{up.max_file_size}")
        status, headers, body = await fetch(url)
        check("the GET URL serves the file", status == 200, f"{status}")
        check("  ...byte-identical", body == data, f"{len(body)} bytes")
        check("  ...with nosniff", headers.get("X-Content-Type-Options") == "nosniff")
        check("  ...and a sandboxing CSP",
              "sandbox" in headers.get("Content-Security-Policy", ""), f"{headers}")

        # Send it to bob the way Conversations/Gajim/Dino do: body = URL, plus OOB.
        msg = alice.make_message(mto=bob.boundjid.bare, mbody=url, mtype="chat")
        msg["oob"]["url"] = url
        msg.send()
        got = await next_item(bob.chats)
        ok = check("bob gets the link", got is not None and got["body"] == url, f"{got}")
        if ok:
            check("  ...with the OOB URL", got["oob"]["url"] == url, f"{got}")
            status, _, body = await fetch(got["oob"]["url"])
            check("  ...and fetches the same bytes", status == 200 and body == data)

        try:
            await up.request_slot(service, "huge.bin", 10 * 1024 * 1024 + 1)
            check("an oversized slot is refused", False, "a slot was granted")
        except IqError as e:
            err = e.iq["error"]
            check("an oversized slot is refused with not-acceptable",
                  err["condition"] == "not-acceptable", f"{err['condition']}")
            too_large = err.xml.find(f"{{{NS}}}file-too-large/{{{NS}}}max-file-size")
            check("  ...and <file-too-large><max-file-size/>",
                  too_large is not None and too_large.text == str(10 * 1024 * 1024))

        slot_iq = await up.request_slot(service, "once.txt", 4, "text/plain")
        slot = slot_iq["http_upload_slot"]
        headers = {h["name"]: h["value"] for h in slot["put"]["headers"]}
        headers["Content-Type"] = "text/plain"
        async with aiohttp.ClientSession() as s:
            async with s.put(slot["put"]["url"], data=b"once", headers=headers) as r:
                first = r.status
            async with s.put(slot["put"]["url"], data=b"twice", headers=headers) as r:
                second = r.status
        check("a slot is used once", first == 201 and second == 403, f"{first}, {second}")
    finally:
        await alice.close()
        await bob.close()


if __name__ == "__main__":
    run_main(__doc__, run)
