#!/usr/bin/env python3
"""The benchmark harness (issue 7): direct Dovecot, nginx's mail proxy and
oauthbearer-proxy side by side on loopback, driven by examples/loadgen.rs.

    python3 bench/bench.py --proxy-bin BIN --loadgen-bin BIN [--quick] [--out DIR]

Normally run through `bash bench/run.sh`, which installs what is missing,
builds the release binaries and raises the open-file limit first.

Starts, on free 127.0.0.1 ports under a scratch directory:
* Dovecot, from tests/peers/peers.py's configuration with the changes a
  benchmark needs (see BenchDovecot): `service_count = 0` and
  `client_limit = 50` for imap and imap-login, an IMAPS listener with the
  same RSA-2048 certificate, no per-user connection cap; alice's INBOX holds
  a generated 100 MiB mailbox (maildir files written directly).
* The real OpenID provider of the tests (tests/peers/oidc/provider.mjs).
* oauthbearer-proxy (implicit TLS listener, master-user login to Dovecot);
  the second one, with a warm token cache, also has implicit-TLS POP3 and
  ManageSieve listeners in front of Dovecot's pop3 and managesieve (the
  POP3/ManageSieve login rows, beside Dovecot's own, logged in to directly).
* nginx's mail proxy (Debian nginx + libnginx-mod-mail), implicit TLS with the
  same certificate, PLAIN, auth_http -> bench/auth_http.py.

Then runs the scenarios with the contenders interleaved, repeats them, and
writes OUT/benchmarks.md, OUT/benchmarks.png and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "peers"))
import peers as P  # noqa: E402  (tests/peers/peers.py: Dovecot, Oidc, helpers)

CLK_TCK = os.sysconf("SC_CLK_TCK")
USER_EMAIL, USER_NAME, USER_PASSWORD = P.USERS[0]


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ Dovecot


class BenchDovecot(P.Dovecot):
    """peers.py's Dovecot, changed so that Dovecot is not the bottleneck:
    login and imap processes serve many clients (service_count = 0,
    client_limit = 50, enough processes for 10,000 sessions), no per-user
    connection cap, IMAPS for the direct-TLS contender, and a big INBOX."""

    def __init__(self, workdir: Path, ports: dict, certs: dict, mailbox_bytes: int):
        # peers.py's constructor takes the ports it listens on by name
        # (imap_port, lmtp_port, auth_port, ...): pass whatever it asks for.
        import inspect
        names = list(inspect.signature(P.Dovecot.__init__).parameters)[2:]
        super().__init__(workdir, *(ports[n.removesuffix("_port")] for n in names))
        self.imaps_port = ports["imaps"]
        self.certs = certs
        self.mailbox_bytes = mailbox_bytes
        self.messages = 0

    def write_config(self) -> None:
        super().write_config()
        text = self.conf.read_text()

        def sub(pattern: str, repl: str, flags: int = 0) -> None:
            nonlocal text
            new, n = re.subn(pattern, lambda _m: repl, text, count=1, flags=flags)
            if n != 1:
                raise P.PeerError(f"bench: peers.py's dovecot.conf has no {pattern!r}")
            text = new

        sub(r"^ssl = no$",
            f"ssl = required\nssl_cert = <{self.certs['cert']}\nssl_key = <{self.certs['key']}\n"
            "ssl_prefer_server_ciphers = no", re.M)
        sub(r"^disable_plaintext_auth = no$",
            "disable_plaintext_auth = no\n# ssl = required only refuses plaintext auth when "
            "disable_plaintext_auth = yes", re.M)
        sub(r"^mail_max_userip_connections = \d+$", "mail_max_userip_connections = 100000", re.M)
        # Dovecot must not be the bottleneck: login and imap processes serve
        # up to 50 clients each and are reused (service_count = 0). The
        # service blocks of peers.py are kept (their listeners included) with
        # these settings instead of theirs, and IMAPS on a real port.
        tuned = {"service_count": "0", "client_limit": "50", "process_limit": "400",
                 "process_min_avail": "2"}

        def tune(block: str, service: str) -> str:
            body = "".join(line + "\n" for line in block.splitlines()[1:-1]
                           if line.split("=")[0].strip() not in tuned)
            if service == "imap-login":
                body, n = re.subn(r"(  inet_listener imaps \{\n)    port = 0\n",
                                  lambda m: f"{m.group(1)}    address = {P.HOST}\n"
                                            f"    port = {self.imaps_port}\n    ssl = yes\n",
                                  body)
                if n != 1:
                    raise P.PeerError("bench: no `inet_listener imaps` with port 0 in peers.py")
            settings = "".join(f"  {k} = {v}\n" for k, v in tuned.items())
            return f"service {service} {{\n{body}{settings}}}\n"

        for service in ("imap-login", "imap"):
            pattern = rf"^service {re.escape(service)} \{{\n.*?^\}}\n"
            m = re.search(pattern, text, re.M | re.S)
            if not m:
                raise P.PeerError(f"bench: peers.py's dovecot.conf has no `service {service}`")
            text = text[:m.start()] + tune(m.group(0), service) + text[m.end():]
        text += "\n# Benchmark: enough for 10,000 sessions.\ndefault_client_limit = 20000\n"
        self.conf.write_text(text)
        self.write_mailbox()

    def write_mailbox(self) -> None:
        """alice's INBOX: ~100 KiB messages up to mailbox_bytes, as maildir files."""
        mail = P.pwd.getpwnam("mail")
        domain, name = USER_EMAIL.split("@")[1], USER_NAME
        maildir = self.mail_dir / domain / name / "Maildir"
        for d in (self.mail_dir / domain, self.mail_dir / domain / name, maildir,
                  maildir / "cur", maildir / "new", maildir / "tmp"):
            d.mkdir(mode=0o700, exist_ok=True)
            os.chown(d, mail.pw_uid, mail.pw_gid)
        size = 100 * 1024
        import base64
        bodies = []
        for _ in range(8):
            raw = base64.b64encode(os.urandom(size * 3 // 4)).decode()
            bodies.append("\r\n".join(raw[i:i + 76] for i in range(0, len(raw), 76)))
        count = max(1, self.mailbox_bytes // size)
        stamp = int(time.time())
        for i in range(count):
            head = (f"From: Bench <bench@example.com>\r\nTo: {name} <{USER_EMAIL}>\r\n"
                    f"Subject: bench message {i}\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                    f"Message-ID: <bench-{i}@example.com>\r\n\r\n")
            data = (head + bodies[i % len(bodies)])[:size - 2] + "\r\n"
            # W= (the size with CRLF line ends, the file's own here) as Dovecot
            # names delivered mail: POP3 needs it and would read every message.
            path = maildir / "cur" / f"{stamp}.M{i}P0.bench,S={len(data)},W={len(data)}:2,S"
            path.write_bytes(data.encode())
            os.chown(path, mail.pw_uid, mail.pw_gid)
        self.messages = count

    def check_ready(self) -> bool:
        return super().check_ready() and P.port_open(self.imaps_port)


# ------------------------------------------------------------ other servers


class Daemon:
    """A process we start in its own session and stop by its process group."""

    def __init__(self, name: str, cmd: list[str], logfile: Path, ready_port: int,
                 cwd: Path | None = None, env: dict | None = None):
        self.name, self.cmd, self.logfile, self.ready_port = name, cmd, logfile, ready_port
        self.cwd, self.env = cwd, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(
                self.cmd, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + 20
        while not P.port_open(self.ready_port):
            if self.proc.poll() is not None:
                raise P.PeerError(f"{self.name} exited ({self.proc.returncode}):\n"
                                  f"{P.tail(self.logfile)}")
            if time.monotonic() > deadline:
                raise P.PeerError(f"{self.name} did not listen on {self.ready_port}:\n"
                                  f"{P.tail(self.logfile)}")
            time.sleep(0.05)

    def stop(self) -> None:
        P.stop_group(self.proc)
        self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


# ------------------------------------------------------------ measurements


def proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = proc_stat(int(entry.name))
            if f and f[2] == str(pgid) and f[0] != "Z":
                pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (+ reaped children's) of the processes, in seconds."""
    total = 0
    for pid in pids:
        f = proc_stat(pid)
        if f:
            total += sum(int(x) for x in f[11:15])
    return total / CLK_TCK


def concurrency_levels(opts) -> list[int]:
    """Login concurrencies: `--concurrency`, else the defaults. Quick mode,
    too, goes above the proxy's default per-address limit (50): the harness
    must set every contender up for its load."""
    if opts.concurrency:
        return [int(c) for c in opts.concurrency.split(",")]
    return [1, 16, 64] if opts.quick else [1, 16, 128]


def children_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children (the load generator
    runs, which are waited for; the daemons are reaped only at the end)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    def version(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
            return r.stdout.decode(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "commit": version(["git", "-C", str(REPO), "describe", "--always", "--dirty",
                           "--exclude", "*"]),
        "nofile": __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[0],
        "dovecot": version(["dovecot", "--version"]),
        "nginx": version(["nginx", "-v"]),
        "node": version(["node", "--version"]),
    }


# ------------------------------------------------------------------ harness


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.quick = opts.quick
        self.workdir = P.make_workdir(None)
        self.daemons: list = []
        self.dovecot: BenchDovecot | None = None
        self.oidc = None

    # --- start-up

    def start(self) -> None:
        w = self.workdir
        names = ["imap", "imaps", "lmtp", "auth", "haproxy", "oidc", "oidc_admin", "proxy",
                 "proxy_warm", "proxy_pop3", "proxy_sieve", "proxy_apppass", "nginx", "auth_http"]
        self.ports = dict(zip(names, P.free_ports(len(names))))
        self.certs = P.make_certs(w)
        mailbox = (8 if self.quick else 100) * 1024 * 1024
        t = time.monotonic()
        self.dovecot = BenchDovecot(w, self.ports, self.certs, mailbox)
        self.oidc = P.Oidc(w, self.ports["oidc"], self.ports["oidc_admin"])
        for peer in (self.oidc, self.dovecot):
            peer.write_config()
        log(f"mailbox: {self.dovecot.messages} messages, {mailbox // 2**20} MiB "
            f"(written in {time.monotonic() - t:.1f} s)")
        for peer in (self.oidc, self.dovecot):
            peer.start()
        P.wait_ready([self.oidc, self.dovecot])
        self.daemons += [self.oidc, self.dovecot]
        # Index the big mailbox once, outside any measurement.
        subprocess.run(["doveadm", "-c", str(self.dovecot.conf), "index", "-u", USER_EMAIL,
                        "INBOX"], check=True, timeout=300)

        # Secrets for the load generator.
        self.password_file = w / "password"
        self.password_file.write_text(USER_PASSWORD)
        self.master_file = w / "master"
        self.master_file.write_text(self.dovecot.secret)
        self.token_file = w / "token"
        self.token_file.write_text(self.mint_token())

        # oauthbearer-proxy
        pdir = w / "proxy"
        pdir.mkdir()
        conf = pdir / "config.toml"
        nofile = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[0]
        proxy_conns = max(1024, nofile // 2 - 100)
        conf.write_text(f"""\
[server]
hostname = "proxy.bench"

[server.tls]
cert = "{self.certs['cert']}"
key = "{self.certs['key']}"
{self.opts.proxy_tls_toml}

[server.limits]
pre-auth-timeout = "60s"
# Like nginx's worker_connections and Dovecot's limits here: every client is
# 127.0.0.1, so the per-address default (50) would refuse most of c=128.
max-connections = {proxy_conns}
max-connections-per-ip = {proxy_conns}

[listener.imaps]
protocol = "imap"
bind = "127.0.0.1:{self.ports['proxy']}"
tls = "implicit"
directory = "oidc"
upstream = "dovecot"

[upstream.dovecot]
address = "127.0.0.1:{self.ports['imap']}"
tls = "none"
login.method = "master-user"
login.username = "{P.MASTER_USER}"
login.secret = "%{{file:{self.dovecot.secret_file}}}%"
identity = "email"

[directory.oidc]
type = "oidc"
timeout = "10s"
endpoint.url = "{self.oidc.describe()['userinfo']}"
endpoint.method = "userinfo"
required-scope = "email"
fields.email = "email"
fields.username = "preferred_username"
""")
        env = dict(os.environ, OAUTHBEARER_PROXY_LOG=os.environ.get("BENCH_PROXY_LOG", "info"))
        self.proxy = Daemon("proxy", [self.opts.proxy_bin, "--config", str(conf)],
                            pdir / "proxy.log", self.ports["proxy"], env=env)
        self.proxy.start()
        self.daemons.append(self.proxy)

        # The same proxy with a token cache (issue 4): --proxy-cache-toml
        # lines for [directory.oidc] (default `cache.ttl = "5m"`). Started when
        # `oauthbearer-proxy check` accepts them, i.e. when the build has a cache.
        self.proxy_warm = None
        wconf = pdir / "config-warm.toml"
        text = conf.read_text().replace(f"127.0.0.1:{self.ports['proxy']}",
                                        f"127.0.0.1:{self.ports['proxy_warm']}")
        wconf.write_text(text + self.opts.proxy_cache_toml.replace("\\n", "\n") + "\n"
                         + self.pop3_sieve_toml())
        check = subprocess.run([self.opts.proxy_bin, "--config", str(wconf), "check"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
        if check.returncode != 0:
            log("no warm-cache row: this build does not accept "
                f"{self.opts.proxy_cache_toml!r}: "
                f"{check.stdout.decode(errors='replace').strip()[:300]}")
        else:
            self.proxy_warm = Daemon("proxy-warm", [self.opts.proxy_bin, "--config", str(wconf)],
                                     pdir / "proxy-warm.log", self.ports["proxy_warm"], env=env)
            self.proxy_warm.start()
            self.daemons.append(self.proxy_warm)

        # The warm-cache proxy with app passwords (issue 14): the same
        # listener with `app-passwords = true` and a SQLite store; the load
        # generator logs in with AUTHENTICATE PLAIN and an app password made
        # over the control socket. Only when this build knows the keys.
        self.proxy_apppass = None
        self.apppass_file = w / "app-password"
        if self.proxy_warm:
            self.start_apppass(pdir, wconf, env)

        # nginx's mail proxy and its auth_http responder
        self.auth_http = Daemon(
            "auth_http", [sys.executable, str(HERE / "auth_http.py"), "--port",
                          str(self.ports["auth_http"]), "--upstream-port", str(self.ports["imap"])],
            w / "auth_http.log", self.ports["auth_http"])
        self.auth_http.start()
        self.daemons.append(self.auth_http)
        ndir = w / "nginx"
        ndir.mkdir()
        template = (HERE / "nginx-mail.conf.in").read_text()
        nconf = ndir / "nginx.conf"
        nofile = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[0]
        nconf.write_text(template.format(
            prefix=ndir, cert=self.certs["cert"], key=self.certs["key"],
            port=self.ports["nginx"], auth_port=self.ports["auth_http"],
            nofile=nofile, connections=max(1024, nofile - 100)))
        self.nginx = Daemon("nginx", ["nginx", "-p", str(ndir), "-c", str(nconf),
                                      "-e", str(ndir / "error.log")],
                            ndir / "stdio.log", self.ports["nginx"])
        self.nginx.start()
        self.daemons.append(self.nginx)
        log(f"started: dovecot {self.dovecot.pid}, provider {self.oidc.pid}, "
            f"proxy {self.proxy.pid}, nginx {self.nginx.pid}, auth_http {self.auth_http.pid}")

    def pop3_sieve_toml(self) -> str:
        """The warm proxy's POP3 (implicit TLS) and ManageSieve (implicit
        TLS) listeners in front of the same Dovecot, for the POP3 and
        ManageSieve login rows."""
        blocks = []
        for proto, port, upstream_port in (
                ("pop3", self.ports["proxy_pop3"], self.dovecot.pop3_port),
                ("managesieve", self.ports["proxy_sieve"], self.dovecot.managesieve_port)):
            blocks.append(f"""
[listener.{proto}]
protocol = "{proto}"
bind = "127.0.0.1:{port}"
tls = "implicit"
directory = "oidc"
upstream = "dovecot-{proto}"

[upstream.dovecot-{proto}]
protocol = "{proto}"
address = "127.0.0.1:{upstream_port}"
tls = "none"
login.method = "master-user"
login.username = "{P.MASTER_USER}"
login.secret = "%{{file:{self.dovecot.secret_file}}}%"
identity = "email"
""")
        return "".join(blocks)
    def start_apppass(self, pdir: Path, wconf: Path, env: dict) -> None:
        aconf = pdir / "config-apppass.toml"
        # The warm proxy's POP3 and ManageSieve listeners stay with it.
        text = wconf.read_text().replace(self.pop3_sieve_toml(), "")
        text = text.replace(f"127.0.0.1:{self.ports['proxy_warm']}",
                                         f"127.0.0.1:{self.ports['proxy_apppass']}")
        text = text.replace('hostname = "proxy.bench"\n', 'hostname = "proxy.bench"\n'
                            f'control-socket = "{pdir / "control.sock"}"\n', 1)
        text = text.replace('upstream = "dovecot"\n', 'upstream = "dovecot"\n'
                            'app-passwords = true\n', 1)
        aconf.write_text(text + f'\n[store]\nurl = "sqlite://{pdir / "store.db"}"\n')
        check = subprocess.run([self.opts.proxy_bin, "--config", str(aconf), "check"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
        if check.returncode != 0:
            log("no app-password row: this build does not accept app passwords: "
                f"{check.stdout.decode(errors='replace').strip()[:300]}")
            return
        self.proxy_apppass = Daemon("proxy-apppass",
                                    [self.opts.proxy_bin, "--config", str(aconf)],
                                    pdir / "proxy-apppass.log", self.ports["proxy_apppass"],
                                    env=env)
        self.proxy_apppass.start()
        self.daemons.append(self.proxy_apppass)
        made = subprocess.run([self.opts.proxy_bin, "--config", str(aconf), "app-passwords",
                               "create", USER_EMAIL, "bench"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if made.returncode != 0:
            raise RuntimeError(f"app-passwords create: {made.stderr.decode(errors='replace')}")
        self.apppass_file.write_text(made.stdout.decode().strip())

    def mint_token(self) -> str:
        body = json.dumps({"sub": USER_NAME, "scope": "openid email profile",
                           "ttl": 36000}).encode()
        req = urllib.request.Request(f"{self.oidc.describe()['admin']}/token", data=body,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)["access_token"]

    def stop(self) -> None:
        for d in reversed(self.daemons):
            try:
                d.stop()
            except Exception as e:  # noqa: BLE001 - stop the others too
                log(f"warning: stopping {getattr(d, 'name', d)}: {e}")
        if not self.opts.keep:
            P.remove_workdir(self.workdir)
        else:
            log(f"kept {self.workdir}")

    # --- contenders

    def contenders(self) -> dict:
        ca = self.certs["ca"]
        dovecot_group = lambda: group_pids(self.dovecot.pid)  # noqa: E731
        nginx_group = lambda: group_pids(self.nginx.pid)  # noqa: E731
        proxy_only = lambda: [self.proxy.pid]  # noqa: E731
        plain = ["--mech", "plain", "--user", USER_EMAIL, "--secret-file", str(self.password_file)]
        c = {
            "dovecot-plain": {
                "label": "Dovecot direct, plaintext",
                "args": ["--addr", f"127.0.0.1:{self.ports['imap']}", *plain],
                "pids": dovecot_group, "login": True, "fetch": True},
            "dovecot-plain-master": {
                "label": "Dovecot direct, plaintext, master-user login",
                "args": ["--addr", f"127.0.0.1:{self.ports['imap']}", "--mech", "plain",
                         "--user", USER_EMAIL, "--authcid", P.MASTER_USER,
                         "--secret-file", str(self.master_file)],
                "pids": dovecot_group, "login": True, "fetch": False},
            "dovecot-tls": {
                "label": "Dovecot direct, TLS",
                "args": ["--addr", f"127.0.0.1:{self.ports['imaps']}", "--tls", "--ca", ca,
                         *plain],
                "pids": dovecot_group, "login": True, "fetch": True},
            "nginx-tls": {
                "label": "nginx mail proxy, TLS",
                "args": ["--addr", f"127.0.0.1:{self.ports['nginx']}", "--tls", "--ca", ca,
                         *plain],
                "pids": nginx_group, "login": True, "fetch": True, "idle": True},
            "proxy-provider": {
                "label": "oauthbearer-proxy, TLS, every login at the provider",
                "args": ["--addr", f"127.0.0.1:{self.ports['proxy']}", "--tls", "--ca", ca,
                         "--mech", "oauthbearer", "--user", USER_EMAIL,
                         "--secret-file", str(self.token_file)],
                "pids": proxy_only, "login": True, "fetch": True, "idle": True},
        }
        if self.proxy_warm:
            c["proxy-warm"] = {
                "label": "oauthbearer-proxy, TLS, warm token cache",
                "args": ["--addr", f"127.0.0.1:{self.ports['proxy_warm']}", "--tls", "--ca", ca,
                         "--mech", "oauthbearer", "--user", USER_EMAIL,
                         "--secret-file", str(self.token_file)],
                "pids": lambda: [self.proxy_warm.pid], "login": True, "fetch": False}
            # POP3 and ManageSieve logins (token cache warm), and the same
            # Dovecot services logged in to directly with a password.
            for proto, port, direct in (("pop3", "proxy_pop3", self.dovecot.pop3_port),
                                        ("sieve", "proxy_sieve", self.dovecot.managesieve_port)):
                protocol = "managesieve" if proto == "sieve" else proto
                name = "POP3" if proto == "pop3" else "ManageSieve"
                c[f"proxy-warm-{proto}"] = {
                    "label": f"oauthbearer-proxy, {name} TLS, warm token cache",
                    "args": ["--addr", f"127.0.0.1:{self.ports[port]}", "--protocol", protocol,
                             "--tls", "--ca", ca, "--mech", "oauthbearer", "--user", USER_EMAIL,
                             "--secret-file", str(self.token_file)],
                    "pids": lambda: [self.proxy_warm.pid], "login": True, "fetch": False}
                c[f"dovecot-{proto}-plain"] = {
                    "label": f"Dovecot {name} direct, plaintext",
                    "args": ["--addr", f"127.0.0.1:{direct}", "--protocol", protocol, *plain],
                    "pids": dovecot_group, "login": True, "fetch": False}
        if self.proxy_apppass:
            c["proxy-apppass"] = {
                "label": "oauthbearer-proxy, TLS, app password (SQLite store)",
                "args": ["--addr", f"127.0.0.1:{self.ports['proxy_apppass']}", "--tls",
                         "--ca", ca, "--mech", "plain", "--user", USER_EMAIL,
                         "--secret-file", str(self.apppass_file)],
                "pids": lambda: [self.proxy_apppass.pid], "login": True, "fetch": False}
        return c

    def login_budget_now(self, name: str) -> dict:
        """CPU seconds so far of Dovecot, the contender's helper (nginx's
        auth_http responder, the proxy's OpenID provider) and the load
        generator (reaped children); the contender itself is measured by
        the caller."""
        helper = []
        if name.startswith("nginx"):
            helper = [self.auth_http.pid]
        elif name.startswith("proxy"):
            helper = [self.oidc.pid]
        return {"dovecot": cpu_seconds(group_pids(self.dovecot.pid)),
                "helper": cpu_seconds(helper),
                "client": children_cpu_seconds()}

    def loadgen(self, mode: str, args: list[str], timeout: float, perf: str | None = None,
                perf_pid: int | None = None) -> dict:
        cmd = [self.opts.loadgen_bin, mode, *args]
        recorder = None
        if perf and self.opts.perf:
            # perf record on the proxy for this run (first repetition only).
            Path(self.opts.perf).mkdir(parents=True, exist_ok=True)
            recorder = subprocess.Popen(
                ["perf", "record", "-F", "1999", "-g", "-p", str(perf_pid or self.proxy.pid), "-o",
                 str(Path(self.opts.perf) / f"{perf}.data")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout)
        finally:
            if recorder:
                recorder.send_signal(signal.SIGINT)
                recorder.wait(timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"loadgen {mode} failed ({r.returncode}): {r.stderr.decode()}")
        if r.stderr.strip():
            log(f"loadgen {mode} {args[1]}: {r.stderr.decode(errors='replace').strip()[:400]}")
        return json.loads(r.stdout.decode().strip().splitlines()[-1])

    # --- scenarios

    def run(self) -> dict:
        q = self.quick
        reps = 1 if q else self.opts.reps
        duration = 1.0 if q else self.opts.duration
        concurrencies = concurrency_levels(self.opts)
        sessions = 200 if q else self.opts.sessions
        contenders = self.contenders()
        if self.opts.contenders:
            keep = self.opts.contenders.split(",")
            unknown = [k for k in keep if k not in contenders]
            if unknown:
                raise SystemExit(f"bench: unknown contender(s) {unknown}; "
                                 f"known: {','.join(contenders)}")
            contenders = {k: v for k, v in contenders.items() if k in keep}
        results: dict = {"login": {}, "fetch": {}, "idle": {}}

        want = set(self.opts.scenarios.split(","))
        for rep in range(reps):
            for conc in (concurrencies if "login" in want else []):
                for name, c in contenders.items():
                    if not c["login"]:
                        continue
                    pids = c["pids"]()
                    cpu0 = cpu_seconds(pids)
                    budget0 = self.login_budget_now(name)
                    r = self.loadgen("login", [*c["args"], "--concurrency", str(conc),
                                               "--duration", str(duration),
                                               "--warmup", "0.2" if q else "0.5"],
                                     timeout=120 + duration,
                                     perf=f"login-{name}-c{conc}"
                                     if name.startswith("proxy") and rep == 0 else None,
                                     perf_pid=c["pids"]()[0])
                    r["cpu_s"] = cpu_seconds(c["pids"]()) - cpu0
                    # CPU over warm-up + measured time; logins scaled likewise.
                    warm = 0.2 if q else 0.5
                    logins_total = r["logins_per_s"] * (duration + warm)
                    r["cpu_s_per_1000"] = (r["cpu_s"] / logins_total * 1000
                                           if logins_total else None)
                    budget1 = self.login_budget_now(name)
                    budget = r["budget_ms_per_login"] = None if not logins_total else {
                        part: (budget1[part] - budget0[part]) / logins_total * 1000
                        for part in budget0}
                    if budget:
                        # Direct rows: Dovecot is the contender, counted above.
                        budget["middle"] = (0.0 if name.startswith("dovecot")
                                            else r["cpu_s_per_1000"])
                        if self.opts.perf:
                            budget["client"] = None  # perf record is a child too
                    results["login"].setdefault(name, {}).setdefault(str(conc), []).append(r)
                    log(f"rep {rep + 1} login c={conc} {name}: {r['logins_per_s']:.0f}/s "
                        f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms "
                        f"errors {r['errors']} cpu {r['cpu_s']:.2f} s")
            for name, c in contenders.items():
                if not c["fetch"] or "fetch" not in want:
                    continue
                pids = c["pids"]()
                cpu0 = cpu_seconds(pids)
                # The whole CPU budget of the relay: Dovecot, the contender
                # in the middle (none for the direct rows) and the client.
                dove0 = cpu_seconds(group_pids(self.dovecot.pid))
                client0 = children_cpu_seconds()
                r = self.loadgen("fetch", [*c["args"], "--concurrency", "4", "--duration",
                                           str(duration)], timeout=600,
                                  perf="fetch" if name == "proxy-provider" and rep == 0 else None)
                r["cpu_s"] = cpu_seconds(c["pids"]()) - cpu0
                r["cpu_s_per_gib"] = r["cpu_s"] / (r["bytes"] / 2**30) if r["bytes"] else None
                gib = r["bytes"] / 2**30 if r["bytes"] else None
                r["budget_s_per_gib"] = None if gib is None else {
                    "dovecot": (cpu_seconds(group_pids(self.dovecot.pid)) - dove0) / gib,
                    "middle": 0.0 if name.startswith("dovecot") else r["cpu_s"] / gib,
                    "client": (children_cpu_seconds() - client0) / gib,
                }
                if r["budget_s_per_gib"] and self.opts.perf and name == "proxy-provider" \
                        and rep == 0:
                    r["budget_s_per_gib"]["client"] = None  # perf record is a child too
                results["fetch"].setdefault(name, []).append(r)
                log(f"rep {rep + 1} fetch c=4 {name}: {r['mb_per_s']:.0f} MB/s "
                    f"({r['bytes'] / 2**20:.0f} MiB, {r['passes']} passes) cpu {r['cpu_s']:.2f} s")
        # Idle last, after every login and fetch run: holding 10,000
        # sessions leaves ~200 Dovecot imap processes behind (client_limit
        # 50), and every later connection then wakes all of them (a
        # thundering herd on the shared socket: the whole machine ran at
        # ~70 % system time and login rates halved for every contender).
        for rep in range(reps):
            for name, c in contenders.items():
                if c.get("idle") and "idle" in want:
                    results["idle"].setdefault(name, []).append(self.idle(name, c, sessions))
        return results

    def idle(self, name: str, c: dict, sessions: int) -> dict:
        """RSS per idle logged-in TLS session (sum over nginx's workers)."""
        def rss() -> int:
            pids = c["pids"]()
            if name.startswith("nginx"):
                pids = [p for p in pids if p != self.nginx.pid]  # workers only
            return sum(rss_kib(p) for p in pids)
        # A fresh server process, warmed up by a few logins: memory freed
        # by an earlier run stays in the allocator and would hide the cost.
        daemon = self.nginx if name.startswith("nginx") else self.proxy
        daemon.stop()
        daemon.start()
        self.loadgen("login", [*c["args"], "--concurrency", "4", "--duration", "0.5",
                               "--warmup", "0"], timeout=60)
        time.sleep(0.5)
        before = rss()
        proc = subprocess.Popen(
            [self.opts.loadgen_bin, "idle", *c["args"], "--sessions", str(sessions),
             "--concurrency", "32"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = proc.stdout.readline()
            opened = json.loads(line)
            time.sleep(1.0)  # let the servers settle
            during = rss()
            proc.stdin.write(b"done\n")
            proc.stdin.flush()
            proc.stdout.readline()
            proc.stdin.close()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip()
        if err:
            log(f"loadgen idle {name}: {err[:400]}")
        n = opened["opened"]
        if opened["errors"] and daemon is self.proxy:
            text = re.sub(r"\x1b\[[0-9;]*m", "", self.proxy.logfile.read_text(errors="replace"))
            fails = [line for line in text.splitlines()
                     if "failure=" in line and "failure=-" not in line
                     and 'failure="-"' not in line]
            log("proxy log, failed logins: " + " | ".join(fails[-3:])[:800])
        per = (during - before) / n if n else None
        log(f"idle {name}: {n} sessions ({opened['errors']} errors) in {opened['seconds']:.1f} s,"
            f" RSS {before} -> {during} KiB, {per if per is None else round(per, 1)} KiB/session")
        time.sleep(1.0)
        return {"sessions": n, "errors": opened["errors"], "rss_before_kib": before,
                "rss_during_kib": during, "kib_per_session": per, "open_s": opened["seconds"]}


# ------------------------------------------------------------------ report


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(results: dict) -> dict:
    s: dict = {}
    for name, by_c in results["login"].items():
        for conc, runs in by_c.items():
            row = s.setdefault(name, {})
            row[f"lps_{conc}"] = med([r["logins_per_s"] for r in runs])
            row[f"p50_{conc}"] = med([r["p50_ms"] for r in runs])
            row[f"p99_{conc}"] = med([r["p99_ms"] for r in runs])
            row[f"cpu1000_{conc}"] = med([r["cpu_s_per_1000"] for r in runs])
            row[f"errors_{conc}"] = sum(r["errors"] for r in runs)
            for part in ("dovecot", "helper", "middle", "client"):
                row[f"lbudget_{part}_{conc}"] = med(
                    [(r.get("budget_ms_per_login") or {}).get(part) for r in runs])
    for name, runs in results["fetch"].items():
        row = s.setdefault(name, {})
        row["mbps"] = med([r["mb_per_s"] for r in runs])
        row["cpu_gib"] = med([r["cpu_s_per_gib"] for r in runs])
        row["errors_fetch"] = sum(r["errors"] for r in runs)
        for part in ("dovecot", "middle", "client"):
            row[f"budget_{part}"] = med([(r.get("budget_s_per_gib") or {}).get(part)
                                         for r in runs])
    for name, runs in results["idle"].items():
        row = s.setdefault(name, {})
        row["kib_session"] = med([r["kib_per_session"] for r in runs])
        row["idle_sessions"] = min(r["sessions"] for r in runs)
    return s


def fmt(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def flag(row: dict, cell: str) -> str:
    """A dagger after a cell in which some sessions failed."""
    return "†" if row.get(f"errors_{cell}") else ""


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def write_report(out: Path, info: dict, results: dict, quick: bool, concurrencies: list[int],
                 labels: dict) -> Path:
    s = summarize(results)
    top = max(concurrencies)
    cpu_c = "16" if "16" in [str(c) for c in concurrencies] else str(top)
    lines = []
    add = lines.append
    add("| contender | " + " | ".join(f"logins/s c={c}" for c in concurrencies)
        + " | p50 ms c=1 | p99 ms c=1 | " + f"p99 ms c={top} | fetch MB/s c=4 | "
        + f"idle KiB/session | CPU s/1000 logins (c={cpu_c}) | CPU s/GiB relayed |")
    add("|---|" + "---:|" * (len(concurrencies) + 7))
    for name, row in s.items():
        add(f"| {labels[name]} | "
            + " | ".join(fmt(row.get(f"lps_{c}")) + flag(row, str(c)) for c in concurrencies)
            + f" | {fmt(row.get('p50_1'), 2)} | {fmt(row.get('p99_1'), 2)} | "
            f"{fmt(row.get(f'p99_{top}'), 1)} | {fmt(row.get('mbps'))}{flag(row, 'fetch')} | "
            f"{fmt(row.get('kib_session'), 1)} | {fmt(row.get(f'cpu1000_{cpu_c}'), 2)} | "
            f"{fmt(row.get('cpu_gib'), 2)} |")
    failed = [f"{labels[name]} ({'fetch' if c == 'fetch' else 'logins c=' + c}): {n}"
              for name, row in s.items()
              for c, n in ((k[len("errors_"):], v) for k, v in row.items()
                           if k.startswith("errors_")) if n]
    if failed:
        lines.append("")
        lines.append("† some sessions failed in these cells (their rate counts only the ones "
                     "that succeeded; a goal that depends on them is not judged): "
                     + "; ".join(failed) + ".")
    table = "\n".join(lines)

    p = s.get("proxy-provider", {})
    n = s.get("nginx-tls", {})
    dt = s.get("dovecot-tls", {})
    dp = s.get("dovecot-plain", {})
    ratios = [
        ("| ratio | " + " | ".join(f"c={c}" for c in concurrencies) + " |"),
        "|---|" + "---:|" * len(concurrencies),
    ]
    pw_row = s.get("proxy-warm")
    for key, what in (("lps", "logins/s"), ("p99", "p99 latency")):
        for mine, who in (("proxy-warm", "proxy, warm cache"), ("proxy-provider", "proxy, cache off")):
            if mine == "proxy-warm" and not pw_row:
                continue
            m = s.get(mine, {})
            for other, lab in (("nginx-tls", "nginx"), ("dovecot-tls", "Dovecot TLS")):
                o = s.get(other, {})
                ratios.append(f"| {who} / {lab}, {what} | " + " | ".join(
                    fmt(ratio(m.get(f"{key}_{c}"), o.get(f"{key}_{c}")), 2)
                    for c in concurrencies) + " |")
    ratio_table = "\n".join(ratios)

    # The relay's CPU budget: on a machine where Dovecot, the contender and
    # the client share the CPUs, throughput is at most CPUs / (sum of the
    # CPU seconds every GiB costs them).
    nproc = info["machine"]["nproc"]
    budget = ["| contender | Dovecot | in the middle | client | total | "
              f"ceiling at {nproc} CPUs, MB/s | measured MB/s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    totals = {}
    for name, row in s.items():
        parts = [row.get(f"budget_{k}") for k in ("dovecot", "middle", "client")]
        if row.get("mbps") is None or any(v is None for v in parts):
            continue
        total = sum(parts)
        totals[name] = (parts, total)
        budget.append(f"| {labels[name]} | " + " | ".join(fmt(v, 2) for v in parts)
                      + f" | {fmt(total, 2)} | {fmt(nproc / total * 2**30 / 1e6)} | "
                      f"{fmt(row['mbps'])} |")
    bound = None
    if "dovecot-plain" in totals and "proxy-provider" in totals:
        (dp_d, _, dp_c), dp_total = totals["dovecot-plain"]
        (pp_d, _, pp_c), _ = totals["proxy-provider"]
        # If the proxy itself cost nothing: only the client's TLS and
        # Dovecot's own cost remain.
        bound = dp_total / (pp_d + pp_c)
    budget_table = "\n".join(budget) if len(budget) > 2 else "(not measured)"
    # The same for logins at the highest concurrency, where the machine's
    # CPUs are the limit: what one login costs each process.
    lb = [f"| contender | Dovecot | helper (auth_http / provider) | in the middle | client | "
          f"total | ceiling at {nproc} CPUs, logins/s | measured logins/s |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in s.items():
        parts = [row.get(f"lbudget_{k}_{top}") for k in ("dovecot", "helper", "middle", "client")]
        if row.get(f"lps_{top}") is None or any(v is None for v in parts):
            continue
        total = sum(parts)
        lb.append(f"| {labels[name]} | " + " | ".join(fmt(v, 3) for v in parts)
                  + f" | {fmt(total, 3)} | {fmt(nproc / total * 1000)} | "
                  f"{fmt(row[f'lps_{top}'])} |")
    login_budget_table = "\n".join(lb) if len(lb) > 2 else "(not measured)"
    bound_text = ("" if bound is None else
                  f"\nEven a proxy that cost no CPU at all would reach at most {bound:.2f}× "
                  "Dovecot direct plaintext here (Dovecot's and the TLS client's CPU "
                  "seconds per GiB in the proxied run against the direct plaintext run's "
                  "total).\n")

    def goal(text, value, ok, cells=()):
        verdict = "–" if value is None else ("met" if ok(value) else "**not met**")
        bad = [f"{labels.get(n, n)}" for n, c in cells if s.get(n, {}).get(f"errors_{c}")]
        if value is not None and bad:
            verdict = "not judged: failed sessions in " + ", ".join(bad)
        return f"| {text} | {fmt(value, 2)} | {verdict} |"

    lps_top = ratio(p.get(f"lps_{top}"), n.get(f"lps_{top}"))
    pw = s.get("proxy-warm", {})
    warm_top = ratio(pw.get(f"lps_{top}"), n.get(f"lps_{top}"))
    if not results["login"]:
        pending = "not measured (the login scenario was not run)"
    else:
        pending = "pending: no token cache in this build (issue 4)"
    top_c = str(top)
    goals = [
        "| goal | measured | verdict |",
        "|---|---:|---|",
        goal(f"logins/s at c={top} with a warm token cache ≥ 1.3× nginx", warm_top,
             lambda v: v >= 1.3, [("proxy-warm", top_c), ("nginx-tls", top_c)]
             ).replace("| – | – |", f"| – | {pending} |"),
        goal("p99 login latency at c=1 with a warm token cache ≤ 1.5× Dovecot direct TLS",
             ratio(pw.get("p99_1"), dt.get("p99_1")),
             lambda v: v <= 1.5, [("proxy-warm", "1"), ("dovecot-tls", "1")]
             ).replace("| – | – |", f"| – | {pending} |"),
        goal(f"(reference, cache off) logins/s at c={top}, every login at the provider, "
             "≥ 1.3× nginx", lps_top, lambda v: v >= 1.3,
             [("proxy-provider", top_c), ("nginx-tls", top_c)]),
        goal("(reference, cache off) p99 login latency at c=1, every login at the provider, "
             "≤ 1.5× Dovecot direct TLS", ratio(p.get("p99_1"), dt.get("p99_1")),
             lambda v: v <= 1.5, [("proxy-provider", "1"), ("dovecot-tls", "1")]),
        goal("relay MB/s ≥ 0.9× Dovecot direct plaintext",
             ratio(p.get("mbps"), dp.get("mbps")), lambda v: v >= 0.9,
             [("proxy-provider", "fetch"), ("dovecot-plain", "fetch")]),
        goal("relay MB/s ≥ 1.0× nginx", ratio(p.get("mbps"), n.get("mbps")), lambda v: v >= 1.0,
             [("proxy-provider", "fetch"), ("nginx-tls", "fetch")]),
        goal("idle RSS/session ≤ nginx's (ratio)",
             ratio(p.get("kib_session"), n.get("kib_session")), lambda v: v <= 1.0),
        goal("idle RSS/session < 32 KiB (KiB)", p.get("kib_session"), lambda v: v < 32),
    ]
    ap = s.get("proxy-apppass", {})
    if ap and pw:
        cpu_c_apppass = ratio(ap.get(f"cpu1000_{cpu_c}"), pw.get(f"cpu1000_{cpu_c}"))
        goals.append(goal(f"(issue 14) proxy CPU per login at c={cpu_c}, app password / "
                          "warm-cache token, ≤ 1.10", cpu_c_apppass, lambda v: v <= 1.10,
                          [("proxy-apppass", cpu_c), ("proxy-warm", cpu_c)]))
        goals.append(goal(f"(issue 14, reference) logins/s at c={top}, app password / "
                          "warm-cache token", ratio(ap.get(f"lps_{top}"), pw.get(f"lps_{top}")),
                          lambda v: True, [("proxy-apppass", top_c), ("proxy-warm", top_c)]))

    sessions = p.get("idle_sessions")
    out.mkdir(parents=True, exist_ok=True)
    chart = out / "benchmarks.png"
    draw_chart(chart, s, concurrencies, labels)
    md = out / "benchmarks.md"
    goals_text = "\n".join(goals)
    body = f"""\
<!-- generated by bench/bench.py{' --quick' if quick else ''}; the text around the tables is in the harness -->
## Results{' (quick smoke run: 1 s runs, one repetition; not for comparison)' if quick else ''}

Machine: {info['machine']['nproc']} CPUs ({info['machine']['cpu']}), kernel {info['machine']['kernel']},
{info['machine']['memory_gib']} GiB; {info['machine']['dovecot']}, {info['machine']['nginx']},
Node.js {info['machine']['node']}; open-file limit {info['machine']['nofile']}.
Load average (1/5/15 min) at the start: {' / '.join(info['load_start'])}, at the end:
{' / '.join(info['machine']['loadavg'])} (other work on the machine competes for the CPUs).
Build: commit {info['machine'].get('commit', '?')} (release). Run: {info['date']}, {info['reps']} repetition(s) of {info['duration']} s per cell, contenders
interleaved, medians. Idle sessions per contender: {sessions}.

![benchmark chart](benchmarks.png)

{table}

Ratios (same run):

{ratio_table}

CPU milliseconds per login at c={top}, for every process involved (the
helper is nginx's auth_http responder or the proxy's OpenID provider):

{login_budget_table}

CPU seconds per GiB relayed (fetch c=4), for every process involved:

{budget_table}
{bound_text}
Goals (issue 7):

{goals_text}
"""
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    old = md.read_text() if md.exists() else ""
    if begin in old and end in old:
        # docs/benchmarks.md: replace only the generated part.
        head, rest = old.split(begin, 1)
        md.write_text(f"{head}{begin}\n{body}{end}{rest.split(end, 1)[1]}")
    else:
        md.write_text(f"{begin}\n{body}{end}\n")
    (out / "results.json").write_text(json.dumps({"info": info, "results": results,
                                                  "summary": s, "labels": labels}, indent=1))
    return md


def draw_chart(path: Path, s: dict, concurrencies: list[int], labels: dict) -> None:
    try:
        import matplotlib
    except ImportError:
        # bench/run.sh installs it; without it the tables are still written.
        print(f"bench: matplotlib is not installed: no chart at {path}", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"dovecot-plain": "#999999", "dovecot-plain-master": "#cccccc",
              "dovecot-tls": "#4c72b0", "nginx-tls": "#dd8452", "proxy-provider": "#55a868",
              "proxy-warm": "#2d6a3e", "proxy-apppass": "#8172b3"}
    short = {"dovecot-plain": "Dovecot plain", "dovecot-plain-master": "Dovecot plain (master)",
             "dovecot-tls": "Dovecot TLS", "nginx-tls": "nginx TLS",
             "proxy-provider": "proxy TLS (provider)", "proxy-warm": "proxy TLS (warm cache)",
             "proxy-apppass": "proxy TLS (app password)"}
    names = [n for n in s if n in colors]
    fig, axes = plt.subplots(1, 4, figsize=(17, 5))

    ax = axes[0]
    width = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        vals = [s[n].get(f"lps_{c}") or 0 for c in concurrencies]
        xs = [j + i * width for j in range(len(concurrencies))]
        ax.bar(xs, vals, width, color=colors[n], label=short[n])
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(concurrencies))])
    ax.set_xticklabels([f"c={c}" for c in concurrencies])
    ax.set_title("logins/s (higher = better)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)

    def bars(ax, key, title, log=False):
        ns = [n for n in names if s[n].get(key) is not None]
        vals = [s[n][key] for n in ns]
        ax.bar(range(len(ns)), vals, color=[colors[n] for n in ns])
        ax.set_xticks(range(len(ns)))
        ax.set_xticklabels([short[n] for n in ns], rotation=25, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        for i, v in enumerate(vals):
            ax.annotate(f"{v:.1f}" if v < 100 else f"{v:.0f}", (i, v), ha="center",
                        va="bottom", fontsize=8)

    bars(axes[1], "p99_1", "p99 login ms, c=1 (lower = better)", log=True)
    bars(axes[2], "mbps", "FETCH MB/s, c=4 (higher = better)")
    bars(axes[3], "kib_session", "KiB RSS per idle TLS session (lower = better)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy-bin")
    ap.add_argument("--loadgen-bin")
    ap.add_argument("--quick", action="store_true", help="smoke mode: ~1 minute")
    ap.add_argument("--out", default=str(REPO / "docs"), help="where benchmarks.md goes")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--sessions", type=int, default=10000,
                    help="idle sessions (capped by the open-file limit)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--proxy-cache-toml", metavar="TOML", default='cache.ttl = "5m"',
                    help="lines added to [directory.oidc] for a second proxy with a warm "
                         "token cache (issue 4); adds the warm-cache row")
    ap.add_argument("--report-only", metavar="RESULTS_JSON",
                    help="only rewrite OUT/benchmarks.md and .png from a saved results.json")
    ap.add_argument("--scenarios", default="login,fetch,idle",
                    help="comma-separated subset of login,fetch,idle")
    ap.add_argument("--proxy-tls-toml", metavar="TOML", default="session-tickets = 0",
                    help="lines added to the proxies' [server.tls]; the default turns TLS "
                         "tickets off, as nginx's ssl_session_tickets off (the load "
                         "generator never resumes)")
    ap.add_argument("--contenders", metavar="NAMES",
                    help="comma-separated subset of the contenders (for A/B runs), e.g. "
                         "nginx-tls,proxy-warm; default: all")
    ap.add_argument("--concurrency", metavar="LIST",
                    help="comma-separated login concurrencies instead of 1,16,128")
    ap.add_argument("--perf", metavar="DIR",
                    help="perf record the proxy in the first repetition into DIR/*.data")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        log("must run as root (Dovecot drops privileges itself)")
        return 1
    import resource
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # A proxied session holds two descriptors (client and upstream) in one
    # process: the open-file limit caps the idle test.
    cap = (soft - 200) // 2
    if opts.sessions > cap:
        log(f"open-file limit {soft}: idle sessions capped at {cap} (2 descriptors each)")
        opts.sessions = cap

    def on_signal(signum, _frame):
        raise P.Shutdown(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if opts.report_only:
        # Rewrite the report from a results.json of an earlier run.
        saved = json.loads(Path(opts.report_only).read_text())
        info = saved["info"]
        quick = info["reps"] == 1 and info["duration"] == 1.0
        concurrencies = sorted({int(c) for by_c in saved["results"]["login"].values()
                                for c in by_c})
        md = write_report(Path(opts.out), info, saved["results"], quick, concurrencies,
                          saved["labels"])
        log(f"rewrote {md}")
        return 0
    if not opts.proxy_bin or not opts.loadgen_bin:
        ap.error("--proxy-bin and --loadgen-bin are required")
    bench = Bench(opts)
    t0 = time.monotonic()
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    try:
        bench.start()
        results = bench.run()
        concurrencies = concurrency_levels(opts)
        info = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "reps": 1 if opts.quick else opts.reps,
                "duration": 1.0 if opts.quick else opts.duration,
                "wall_s": round(time.monotonic() - t0), "load_start": load_start}
        labels = {k: v["label"] for k, v in bench.contenders().items()}
        md = write_report(Path(opts.out), info, results, opts.quick, concurrencies, labels)
        log(f"wrote {md} in {time.monotonic() - t0:.0f} s")
        print(md.read_text())
        return 0
    except P.Shutdown as e:
        log(f"{e}: stopping")
        return 1
    except (P.PeerError, RuntimeError, subprocess.SubprocessError) as e:
        log(f"ERROR: {e}")
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        bench.stop()


if __name__ == "__main__":
    sys.exit(main())
