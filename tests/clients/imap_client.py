#!/usr/bin/env python3
"""A real IMAP client (Python's imaplib) for the end-to-end tests.

    imap_client.py --port N --tls implicit|starttls --ca CA --mech OAUTHBEARER|XOAUTH2|LOGIN
                   --user USER (--token T | --password P) [--search SUBJECT]

Logs in through imaplib's own `authenticate` (no SASL-IR: the server's
continuation path) or `login`, selects INBOX, fetches the subjects and prints
one JSON line: {"ok": bool, "error": str, "subjects": [...], "capabilities": [...]}.
"""
import argparse
import imaplib
import json
import ssl
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", choices=["implicit", "starttls"], required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--mech", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--token")
    p.add_argument("--password")
    a = p.parse_args()

    ctx = ssl.create_default_context(cafile=a.ca)
    result = {"ok": False, "error": "", "subjects": [], "capabilities": []}
    try:
        if a.tls == "implicit":
            m = imaplib.IMAP4_SSL("localhost", a.port, ssl_context=ctx, timeout=20)
        else:
            m = imaplib.IMAP4("localhost", a.port, timeout=20)
            m.starttls(ssl_context=ctx)
        calls = {"n": 0}

        def oauthbearer(_challenge):
            calls["n"] += 1
            if calls["n"] > 1:
                return b"\x01"  # RFC 7628 dummy response after an error challenge
            return f"n,a={a.user},\x01host=localhost\x01port={a.port}\x01auth=Bearer {a.token}\x01\x01".encode()

        def xoauth2(_challenge):
            calls["n"] += 1
            if calls["n"] > 1:
                return b""  # empty response after the error challenge
            return f"user={a.user}\x01auth=Bearer {a.token}\x01\x01".encode()

        if a.mech == "OAUTHBEARER":
            typ, _ = m.authenticate("OAUTHBEARER", oauthbearer)
        elif a.mech == "XOAUTH2":
            typ, _ = m.authenticate("XOAUTH2", xoauth2)
        else:
            typ, _ = m.login(a.user, a.password)
        result["capabilities"] = list(m.capabilities)
        typ, data = m.select("INBOX", readonly=True)
        typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        for part in data:
            if isinstance(part, tuple):
                for line in part[1].decode(errors="replace").splitlines():
                    if line.lower().startswith("subject:"):
                        result["subjects"].append(line.split(":", 1)[1].strip())
        m.logout()
        result["ok"] = True
    except Exception as e:  # report every failure as data for the test
        result["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
