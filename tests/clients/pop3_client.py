#!/usr/bin/env python3
"""A real POP3 client (Python's poplib) for the end-to-end tests.

    pop3_client.py --port N --tls implicit|starttls --ca CA
                   --mech OAUTHBEARER|XOAUTH2|USER --user USER (--token T | --password P)
                   [--continuation]

poplib has no SASL of its own: AUTH (RFC 5034) is written on its
`_shortcmd`/`_putcmd`/`_getresp`. By default the initial response goes on
the AUTH line (SASL-IR); with --continuation the client sends a bare
`AUTH MECH`, waits for the server's `+ ` and sends it then. After an RFC
7628 error challenge (`+ <base64 JSON>`) it sends the dummy response
(OAUTHBEARER `AQ==`, XOAUTH2 an empty line) and reports the -ERR.

On success it runs STAT, retrieves every message and prints one JSON line:
{"ok": bool, "error": str, "subjects": [...], "capa": [...], "challenge": str}.
"""
import argparse
import base64
import json
import poplib
import ssl
import sys


def initial_response(a) -> str:
    if a.mech == "OAUTHBEARER":
        message = f"n,a={a.user},\x01host=localhost\x01port={a.port}\x01auth=Bearer {a.token}\x01\x01"
    else:
        message = f"user={a.user}\x01auth=Bearer {a.token}\x01\x01"
    return base64.b64encode(message.encode()).decode()


def sasl(p: poplib.POP3, a, result: dict) -> None:
    ir = initial_response(a)
    if a.continuation:
        p._putcmd(f"AUTH {a.mech}")
        first = p._getresp()  # `+ ` (poplib returns lines starting with +)
        if not first.startswith(b"+ ") and first != b"+":
            raise poplib.error_proto(first)
        resp = p._shortcmd(ir)
    else:
        resp = p._shortcmd(f"AUTH {a.mech} {ir}")
    if resp.startswith(b"+ "):
        # The RFC 7628 error challenge: answer with the dummy response; the
        # server's -ERR raises error_proto.
        result["challenge"] = base64.b64decode(resp[2:]).decode(errors="replace")
        p._shortcmd("AQ==" if a.mech == "OAUTHBEARER" else "")
    elif not resp.startswith(b"+OK"):
        raise poplib.error_proto(resp)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", choices=["implicit", "starttls"], required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--mech", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--token")
    ap.add_argument("--password")
    ap.add_argument("--continuation", action="store_true")
    a = ap.parse_args()

    ctx = ssl.create_default_context(cafile=a.ca)
    result = {"ok": False, "error": "", "subjects": [], "capa": [], "challenge": ""}
    try:
        if a.tls == "implicit":
            p = poplib.POP3_SSL("localhost", a.port, context=ctx, timeout=20)
        else:
            p = poplib.POP3("localhost", a.port, timeout=20)
            p.stls(context=ctx)
        result["capa"] = sorted(p.capa())
        if a.mech == "USER":
            p.user(a.user)
            p.pass_(a.password)
        else:
            sasl(p, a, result)
        count, _size = p.stat()
        for i in range(1, count + 1):
            _resp, lines, _octets = p.retr(i)
            for line in lines:
                text = line.decode(errors="replace")
                if text.lower().startswith("subject:"):
                    result["subjects"].append(text.split(":", 1)[1].strip())
        p.quit()
        result["ok"] = True
    except Exception as e:  # report every failure as data for the test
        result["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
