#!/usr/bin/env python3
"""Interop test: room avatars (XEP-0486: a room's vcard-temp) against a running Confab
server, with slixmpp's xep_0054 (vcard-temp) and xep_0153 (vCard-based avatars) plugins.

Checks, each counted as passed or failed:
  * the MUC service's disco#info lists vcard-temp (XEP-0486 §3.1);
  * alice creates a room; bob joins;
  * bob (no owner) publishing the room's vCard gets forbidden;
  * alice (owner) publishes one with a photo;
  * bob gets the room's new avatar hash in presence from the room (xep_0153's stanza);
  * bob fetches the room's vCard with xep_0054 and the photo's SHA-1 is that hash;
  * the room's disco#info lists vcard-temp and the hash as muc#roominfo_avatarhash;
  * alice publishes an empty vCard: bob is told (empty photo) and the room has no photo.
"""

import asyncio
import hashlib
import uuid

import slixmpp
from slixmpp.exceptions import PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath
from xmpp_common import STEP_TIMEOUT, check, iq_attempt, login, next_matching, run_main

PLUGINS = ("xep_0030", "xep_0045", "xep_0004", "xep_0054", "xep_0153")
# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc00000030101001b0a2db40000000049454e44ae426082")
XDATA = "{jabber:x:data}"


def avatar_hashes(info):
    """The muc#roominfo_avatarhash values of a disco#info result."""
    for field in info.xml.iter(f"{XDATA}field"):
        if field.get("var") == "muc#roominfo_avatarhash":
            return [v.text or "" for v in field.iter(f"{XDATA}value")]
    return None


async def run(args):
    domain = slixmpp.JID(args.alice).domain
    room = slixmpp.JID(f"avatar-{uuid.uuid4().hex[:8]}@conference.{domain}")
    alice = await login("alice", args.alice, args.alice_password, args, plugins=PLUGINS,
                        mech=None, presence=True)
    bob = await login("bob", args.bob, args.bob_password, args, plugins=PLUGINS, mech=None,
                      presence=True)
    try:
        if not (alice and bob):
            return
        # Presence from the room's bare JID, read with xep_0153's vcard_temp_update stanza.
        # A stanza handler: slixmpp's "presence" events skip a joined room's bare JID, and
        # xep_0153's vcard_avatar_update skips whatever comes from rooms.
        updates = asyncio.Queue()
        bob.register_handler(Callback(
            "room avatar", StanzaPath("presence/vcard_temp_update"),
            lambda p: updates.put_nowait(p) if p["from"] == room else None))
        info, err = await iq_attempt(
            bob.plugin["xep_0030"].get_info(jid=room.domain), "service disco#info")
        features = info["disco_info"]["features"] if info is not None else []
        check("the MUC service lists vcard-temp", "vcard-temp" in features,
              f"{features} {err}")
        muc_a = alice.plugin["xep_0045"]
        try:
            await muc_a.join_muc_wait(room, "alice", timeout=STEP_TIMEOUT)
            form, err = await iq_attempt(muc_a.get_room_config(room), "configuration form")
            if form is None:
                check("alice configures the room", False, str(err))
                return
            _, err = await iq_attempt(muc_a.set_room_config(room, form), "configuration")
            check("alice creates the room", err is None, str(err))
            await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=STEP_TIMEOUT)
            check("bob joins", True)
        except (PresenceError, asyncio.TimeoutError) as e:
            check("alice creates the room and bob joins", False, repr(e))
            return

        def card(photo):
            v = alice.plugin["xep_0054"].make_vcard()
            if photo is not None:
                v["PHOTO"]["TYPE"] = "image/png"
                v["PHOTO"]["BINVAL"] = photo
            return v

        bob_card = bob.plugin["xep_0054"].make_vcard()
        bob_card["PHOTO"]["TYPE"] = "image/png"
        bob_card["PHOTO"]["BINVAL"] = PNG
        _, err = await iq_attempt(
            bob.plugin["xep_0054"].publish_vcard(bob_card, jid=room), "bob publishes")
        check("bob (no owner) may not set the room's vCard", err == "forbidden", str(err))

        _, err = await iq_attempt(
            alice.plugin["xep_0054"].publish_vcard(card(PNG), jid=room), "alice publishes")
        check("alice (owner) sets the room's avatar", err is None, str(err))
        sha1 = hashlib.sha1(PNG).hexdigest()
        got = await next_matching(updates, lambda p: True)
        photo = got["vcard_temp_update"]["photo"] if got is not None else None
        check("bob gets the room's new avatar hash from the room", photo == sha1,
              f"{photo} != {sha1}")

        res, err = await iq_attempt(bob.plugin["xep_0054"].get_vcard(room), "bob fetches")
        data = res["vcard_temp"]["PHOTO"]["BINVAL"] if res is not None else None
        check("bob fetches the room's vCard with the photo", data == PNG, f"{err}")
        check("  ...whose SHA-1 is the announced hash",
              data is not None and hashlib.sha1(data).hexdigest() == photo)

        info, err = await iq_attempt(bob.plugin["xep_0030"].get_info(jid=room), "disco#info")
        features = info["disco_info"]["features"] if info is not None else []
        check("the room lists vcard-temp", "vcard-temp" in features, f"{features} {err}")
        hashes = avatar_hashes(info) if info is not None else None
        check("  ...and muc#roominfo_avatarhash", hashes == [sha1], f"{hashes}")

        _, err = await iq_attempt(
            alice.plugin["xep_0054"].publish_vcard(card(None), jid=room), "alice removes")
        check("alice removes the avatar (empty vCard)", err is None, str(err))
        got = await next_matching(updates, lambda p: True)
        photo = got["vcard_temp_update"]["photo"] if got is not None else None
        check("  ...bob is told (empty photo)", got is not None and not photo, f"{photo}")
        res, err = await iq_attempt(bob.plugin["xep_0054"].get_vcard(room), "bob fetches")
        data = res["vcard_temp"]["PHOTO"]["BINVAL"] if res is not None else b"?"
        check("  ...and the room's vCard has no photo", not data, f"{data!r} {err}")
        info, err = await iq_attempt(bob.plugin["xep_0030"].get_info(jid=room), "disco#info")
        check("  ...nor disco an avatar hash",
              info is not None and avatar_hashes(info) is None, str(err))
    finally:
        for c in (alice, bob):
            if c:
                await c.close()


if __name__ == "__main__":
    run_main(__doc__, run)
