#!/usr/bin/env python3
"""The main job on a local default: real Dovecot, Postfix and OpenID provider
on loopback, the proxy in front of them, and real clients logging in with an
OAuth access token. Everything runs under a temporary directory and is
stopped (by PID) at the end.

    bash scripts/demo.sh          # installs what is missing, then runs this
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY = os.path.join(REPO, "target", "debug", "oauthbearer-proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the proxy exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the proxy did not listen on {port}")


def mint(admin: str, sub: str) -> str:
    body = json.dumps({"sub": sub, "scope": "openid email profile", "ttl": 600}).encode()
    req = urllib.request.Request(f"{admin}/token", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["access_token"]


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def main() -> int:
    peers = subprocess.Popen([sys.executable, os.path.join(REPO, "tests/peers/peers.py")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proxy = None
    work = tempfile.mkdtemp(prefix="oauthbearer-demo-")
    try:
        line = peers.stdout.readline()
        if not line.startswith("{"):
            raise SystemExit("the peers did not start (see above)")
        info = json.loads(line)
        imaps, imap, submission, submissions = free_port(), free_port(), free_port(), free_port()
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(f"""
[server]
hostname = "mail.demo.test"
[server.tls]
cert = "{info['certs']['cert']}"
key = "{info['certs']['key']}"

[listener.imaps]
protocol = "imap"
bind = "127.0.0.1:{imaps}"
tls = "implicit"
directory = "demo"
upstream = "dovecot"
password-passthrough = true

[listener.imap]
protocol = "imap"
bind = "127.0.0.1:{imap}"
tls = "starttls"
directory = "demo"
upstream = "dovecot"

[listener.submission]
protocol = "smtp"
bind = "127.0.0.1:{submission}"
tls = "starttls"
directory = "demo"
upstream = "postfix"

[upstream.dovecot]
address = "127.0.0.1:{info['dovecot']['imap_port']}"
tls = "none"
login.method = "master-user"
login.username = "{info['dovecot']['master_user']}"
login.secret = "%{{file:{info['dovecot']['master_secret_file']}}}%"
identity = "email"

[upstream.postfix]
address = "127.0.0.1:{info['postfix']['smtp_port']}"
tls = "none"
login.method = "xclient"
identity = "email"

[directory.demo]
type = "oidc"
timeout = "15s"
endpoint.url = "{info['oidc']['userinfo']}"
endpoint.method = "userinfo"
required-scope = "email"
fields.email = "email"
fields.username = "preferred_username"
fields.full-name = "name"
""")
        step(f"oauthbearer-proxy check --config {config}")
        subprocess.run([PROXY, "check", "--config", config], check=True)
        log = open(os.path.join(work, "proxy.log"), "w")
        proxy = subprocess.Popen([PROXY, "--config", config], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_port(imaps, proxy)
        print(f"proxy listening: imaps 127.0.0.1:{imaps}, imap+STARTTLS :{imap}, submission :{submission}")
        print(f"provider: {info['oidc']['issuer']} (npm oidc-provider); Dovecot on :{info['dovecot']['imap_port']}")

        token = mint(info["oidc"]["admin"], "alice")
        step("an access token for alice from the provider (shortened)")
        print(token[:12] + "...")

        step("curl logs in to the proxy with OAUTHBEARER and reads alice's INBOX")
        cmd = ["curl", "-sS", "--max-time", "20", "--cacert", info["certs"]["ca"],
               "--resolve", f"localhost:{imaps}:127.0.0.1",
               f"imaps://localhost:{imaps}/INBOX;MAILINDEX=1;SECTION=HEADER.FIELDS%20(SUBJECT%20FROM)",
               "-u", "alice@example.com:", "--oauth2-bearer", token]
        print("$ curl --oauth2-bearer <token> imaps://localhost:%d/INBOX;MAILINDEX=1;..." % imaps)
        r = subprocess.run(cmd, capture_output=True, text=True)
        print(r.stdout.strip() or r.stderr.strip())
        if r.returncode != 0 or "Welcome alice@example.com" not in r.stdout:
            raise SystemExit("demo failed: the mailbox was not readable through the proxy")

        step("curl sends mail with alice's token through the SMTP submission listener")
        msg = os.path.join(work, "msg.eml")
        with open(msg, "w") as f:
            f.write("From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Hello from the demo\r\n\r\nSent with an OAuth token.\r\n")
        r = subprocess.run(["curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", info["certs"]["ca"],
                            "--resolve", f"localhost:{submission}:127.0.0.1",
                            f"smtp://localhost:{submission}", "--mail-from", "alice@example.com",
                            "--mail-rcpt", "bob@example.com", "--upload-file", msg,
                            "-u", "alice@example.com:", "--oauth2-bearer", token], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"demo failed: sending through the proxy: {r.stderr.strip()}")
        print("sent: alice -> bob, via Postfix (XCLIENT LOGIN=alice@example.com)")

        step("bob reads it through the proxy with his own token")
        bob = mint(info["oidc"]["admin"], "bob")
        found = ""
        for _ in range(50):  # delivery into Dovecot over LMTP takes a moment
            r = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", info["certs"]["ca"],
                                "--resolve", f"localhost:{imaps}:127.0.0.1",
                                f"imaps://localhost:{imaps}/INBOX", "-u", "bob@example.com:",
                                "--oauth2-bearer", bob, "-X", "SEARCH SUBJECT \"Hello from the demo\""],
                               capture_output=True, text=True)
            found = r.stdout.strip()
            if found.startswith("* SEARCH") and found != "* SEARCH":
                break
            time.sleep(0.1)
        print(found)
        if not found.startswith("* SEARCH") or found == "* SEARCH":
            raise SystemExit("demo failed: the message did not reach bob's mailbox")

        step("the proxy's log (one line per connection; no token in it)")
        time.sleep(0.3)
        log.flush()
        with open(os.path.join(work, "proxy.log")) as f:
            lines = [l.rstrip() for l in f if "connection closed" in l]
        print("\n".join(lines[-3:]))
        if token in open(os.path.join(work, "proxy.log")).read():
            raise SystemExit("the token appeared in the log")
        print("\ndemo OK")
        return 0
    finally:
        if proxy is not None:
            proxy.terminate()
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
        try:
            peers.stdin.close()
            peers.wait(timeout=30)
        except Exception:
            peers.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
