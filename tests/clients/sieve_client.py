#!/usr/bin/python3
"""A real ManageSieve client (Debian's python3-sievelib) for the end-to-end tests.

    sieve_client.py --port N --user USER --password P --script NAME

Connects to the proxy's STARTTLS ManageSieve listener, does STARTTLS
(sievelib's own, which does not verify the certificate), logs in with
AUTHENTICATE "PLAIN" (the password passes through to Dovecot), uploads
the script NAME (not made active), lists the scripts and reads NAME back.
Prints one JSON line:
{"ok": bool, "error": str, "sasl": [...], "active": str, "scripts": [...], "content": str}.

Run with /usr/bin/python3: sievelib is a Debian module, and a missing one
is an ImportError (a failed test), never a skip.
"""
import argparse
import json
import warnings

# ssl.wrap_socket (sievelib's STARTTLS) is deprecated in Python 3.11.
warnings.simplefilter("ignore", DeprecationWarning)

from sievelib.managesieve import Client  # noqa: E402

SCRIPT = 'require ["fileinto"];\r\nif header :contains "subject" "sievelib" {\r\n  fileinto "INBOX";\r\n}\r\n'


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--script", required=True)
    a = p.parse_args()
    result = {"ok": False, "error": "", "sasl": [], "active": None, "scripts": [], "content": None}
    c = Client("127.0.0.1", a.port)
    if not c.connect(a.user, a.password, starttls=True, authmech="PLAIN"):
        result["error"] = f"login: {c.errcode!r} {c.errmsg!r}"
        result["sasl"] = c.get_sasl_mechanisms()
        print(json.dumps(result))
        return
    result["sasl"] = c.get_sasl_mechanisms()
    if not c.putscript(a.script, SCRIPT):
        result["error"] = f"PUTSCRIPT: {c.errmsg!r}"
    else:
        active, others = c.listscripts()
        result["active"] = active
        result["scripts"] = others
        result["content"] = c.getscript(a.script)
        result["ok"] = True
    c.logout()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
