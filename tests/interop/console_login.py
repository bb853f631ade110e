#!/usr/bin/env python3
"""Logs in to the admin console the way a browser does (the login page's CSRF cookie and
field, then the form) and checks the outcome.

Usage: console_login.py BASE_URL JID PASSWORD ok|refused
  ok:      303 to /dashboard, and the dashboard opens with the session cookie
  refused: 401 or 403, no session cookie
"""

import http.cookiejar
import re
import sys
import urllib.error
import urllib.parse
import urllib.request


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main():
    base, jid, password, expect = sys.argv[1:5]
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    page = opener.open(f"{base}/login", timeout=15).read().decode()
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    if not m:
        sys.exit("FAIL console: no CSRF field on the login page")
    form = urllib.parse.urlencode({"csrf": m.group(1), "jid": jid, "password": password}).encode()
    try:
        r = opener.open(urllib.request.Request(f"{base}/login", data=form), timeout=30)
        status, location = r.status, r.headers.get("Location")
    except urllib.error.HTTPError as e:
        status, location = e.code, e.headers.get("Location")
    if expect == "ok":
        if status != 303 or location != "/dashboard":
            sys.exit(f"FAIL console: {jid} not logged in (HTTP {status}, Location {location})")
        dash = opener.open(f"{base}/dashboard", timeout=15)
        if dash.status != 200:
            sys.exit(f"FAIL console: the dashboard answered {dash.status}")
        print(f"PASS console: {jid} logs in to the admin console with the old password")
    else:
        if status not in (401, 403):
            sys.exit(f"FAIL console: {jid} was not refused (HTTP {status})")
        print(f"PASS console: {jid} (not an administrator) is refused ({status})")


if __name__ == "__main__":
    main()
