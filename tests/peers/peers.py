#!/usr/bin/env python3
"""Start the real upstream peers of oauthbearer-proxy on loopback, for tests.

    python3 tests/peers/peers.py [--workdir DIR] [--no-postfix] [--keep] [--second-dovecot]

Starts, under a fresh scratch directory and on free 127.0.0.1 ports:

* Dovecot (``dovecot -F -c WORKDIR/dovecot/dovecot.conf``): plaintext IMAP
  (and a second IMAP listener that requires a PROXY protocol header from
  127.0.0.1, ``haproxy = yes``), plaintext POP3 and ManageSieve (each with a
  ``haproxy = yes`` twin too), master user ``proxy`` with a random secret, users alice@example.com and
  bob@example.com with app passwords, an LMTP listener running the Sieve
  plugin (each user's active script is ``~/.dovecot.sieve``, scripts in
  ``~/sieve``) and an auth listener
  (for Postfix SASL). Each mailbox is seeded with one "Welcome ..." message.
* Postfix (``postfix -c WORKDIR/postfix/conf start-fg``): smtpd accepting XCLIENT
  from 127.0.0.1 (and a second smtpd that requires a PROXY protocol header,
  ``smtpd_upstream_proxy_protocol = haproxy``), SASL through Dovecot, delivering example.com over LMTP into
  Dovecot, every other transport ``error:``.
* An OpenID provider (``node tests/peers/oidc/provider.mjs``).
* With ``--second-dovecot``: a second Dovecot (``dovecot2``: its own
  directories, mail directory and ports, the same master user and secret,
  the same users), whose seeded messages say "Welcome to dovecot2, <email>",
  so a test can tell which backend served a mailbox.

When all are ready it prints ONE line of JSON describing them on stdout, then
serves a line protocol on stdin until EOF or SIGTERM/SIGINT/SIGHUP:

    stop oidc|dovecot|dovecot2|postfix      -> "ok" | "error <message>"
    start oidc|dovecot|postfix     -> "ok" | "error <message>"
    restart oidc|dovecot|postfix   -> "ok" | "error <message>"
    status                         -> "ok {json: name -> pid or null}"

Ports stay the same across restarts. On exit every process it started is
stopped by PID (never by name), and the scratch directory is removed.
On a start-up failure it names the peer and prints the tail of its logs on
stderr, cleans up and exits 1. Standard library only; run as root (Dovecot
and Postfix are started from their own configs and drop privileges).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OIDC_DIR = HERE / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
MAKE_CERTS = REPO / "certs" / "make-test-certs.sh"

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0  # seconds for one peer to become ready (Node on a busy machine)
STOP_TIMEOUT = 10.0  # seconds for one peer to stop before SIGKILL
MASTER_USER = "proxy"
VERBOSE = bool(os.environ.get("PEERS_VERBOSE"))  # timings on stderr

# (Dovecot login = email, short username, app password for passthrough tests)
USERS = [
    ("alice@example.com", "alice", "alice-app-password"),
    ("bob@example.com", "bob", "bob-app-password"),
]

# A Dovecot-only user whose app password is not UTF-8 (Latin-1 "café"):
# password passthrough must hand it to Dovecot byte for byte.
LATIN1_USER = ("carol@example.com", "carol", b"caf\xe9-app-password")

# With --second-dovecot, both Dovecots also know user00..user49 (no
# seeded mail; the provider has the same accounts): the users of the
# several-backends and load-balancer tests.
MANY_USERS = [(f"user{i:02}@example.com", f"user{i:02}", f"user{i:02}-app-password")
              for i in range(50)]

OIDC_BASIC_CLIENT = ["mail-proxy", "proxy-secret"]
OIDC_POST_CLIENT = ["mail-proxy-post", "post-secret"]
OIDC_STATIC_TOKEN = "introspect-static-token"


class PeerError(Exception):
    """A peer failed to start or stop; the message names it."""


class Shutdown(Exception):
    """Raised from the signal handler to leave the main loop."""


def log(msg: str) -> None:
    print(f"peers.py: {msg}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log {path})"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: bind all to 127.0.0.1:0 at once, then release."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def banner(port: int, timeout: float = 1.0) -> str | None:
    """Connect to a loopback port and return the first line it sends, or None."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.decode(errors="replace").splitlines()[0] if data else ""
    except OSError:
        return None


def managesieve_ready(port: int, timeout: float = 1.0) -> bool:
    """Whether a ManageSieve server on the port sends its greeting (ending in OK)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while len(data) < 8192:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
                lines = data.split(b"\r\n")
                if any(line.startswith(b"OK") for line in lines[:-1]):
                    return True
            return False
    except OSError:
        return False


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Whether the process group has a member that is not a zombie.

    Orphaned children that already exited stay zombies until PID 1 reaps
    them (up to a second here), so killpg(pgid, 0) alone would wait on ghosts.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parens.
        fields = stat[stat.rindex(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def kill_group(pgid: int | None, sig: int = signal.SIGKILL) -> None:
    """Signal a process group we created (start_new_session), by its id."""
    if not pgid:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_group_gone(pgid: int | None, timeout: float) -> None:
    """Wait (bounded) for a process group to empty, then SIGKILL what is left."""
    if not pgid:
        return
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_alive(pgid):
        kill_group(pgid)


def spawn(cmd: list[str], logfile: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start a daemon in its own session with all stdio away from our pipes."""
    with open(logfile, "ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def stop_group(proc: subprocess.Popen | None, pgid: int | None = None,
               timeout: float = STOP_TIMEOUT) -> None:
    """Stop a daemon we started in its own session, by ids only.

    SIGTERM goes to the whole process group `pgid` (default: the Popen'ed
    session leader's pid; all our daemons are started with start_new_session).
    Signalling the group, not just the leader, matters: Dovecot's master exits
    on SIGTERM but leaves auth/log/anvil/stats behind for a while. Then wait
    (bounded) for the Popen'ed process, and SIGKILL whatever is left.
    """
    if proc is None:
        return
    pgid = pgid or proc.pid
    if proc.poll() is None:
        kill_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(pgid)
            kill_group(proc.pid)
            proc.wait(timeout=5)
    wait_group_gone(pgid, 2.0)
    if pgid != proc.pid:
        wait_group_gone(proc.pid, 2.0)


# --------------------------------------------------------------------- Dovecot


class Dovecot:
    name = "dovecot"
    mail_name = "mail"
    # The seeded message's subject; dovecot2's says which instance it is.
    welcome = "Welcome {email}"
    more_users: list = []

    def __init__(self, workdir: Path, imap_port: int, lmtp_port: int, auth_port: int,
                 haproxy_port: int):
        self.dir = workdir / self.name
        self.imap_port = imap_port
        self.haproxy_port = haproxy_port
        # POP3 and ManageSieve ports: chosen here so that subclasses passing
        # the constructor's ports by name (bench/bench.py) keep working;
        # main() sets ports allocated together with the others (use_ports).
        self.use_ports(*free_ports(4))
        self.lmtp_port = lmtp_port
        self.auth_port = auth_port
        self.mail_dir = workdir / self.mail_name
        self.conf = self.dir / "dovecot.conf"
        self.log = self.dir / "dovecot.log"
        self.stdio_log = self.dir / "stdio.log"
        self.secret = secrets.token_hex(16)
        self.secret_file = self.dir / "master-secret"
        self.proc: subprocess.Popen | None = None
        self.seeded = False

    def use_ports(self, pop3: int, pop3_haproxy: int, managesieve: int,
                  managesieve_haproxy: int) -> None:
        """The POP3 and ManageSieve ports: plaintext, and requiring a PROXY header."""
        self.pop3_port, self.pop3_haproxy_port = pop3, pop3_haproxy
        self.managesieve_port, self.managesieve_haproxy_port = managesieve, managesieve_haproxy

    def write_config(self) -> None:
        self.dir.mkdir(mode=0o755)
        for sub in ("run", "state"):
            (self.dir / sub).mkdir(mode=0o755)
        # Mail is stored as Debian's `mail` user (uid 8): Dovecot refuses uid 0.
        mail = pwd.getpwnam("mail")
        self.mail_dir.mkdir(mode=0o750)
        os.chown(self.mail_dir, mail.pw_uid, mail.pw_gid)

        self.secret_file.write_text(self.secret + "\n")
        self.secret_file.chmod(0o600)
        master_users = self.dir / "master-users"
        master_users.write_text(f"{MASTER_USER}:{{PLAIN}}{self.secret}\n")
        users = self.dir / "users"
        # passwd-file: user:password:uid:gid:gecos:home:shell:extra
        users.write_text("".join(
            f"{email}:{{PLAIN}}{password}::::{self.mail_dir}/{email.split('@')[1]}/{name}::\n"
            for email, name, password in USERS + self.more_users))
        email, name, password = LATIN1_USER
        with users.open("ab") as f:
            f.write(email.encode() + b":{PLAIN}" + password
                    + f"::::{self.mail_dir}/{email.split('@')[1]}/{name}::\n".encode())
        # Dovecot's auth process runs as its internal user `dovecot`.
        auth_gid = pwd.getpwnam("dovecot").pw_gid
        for f in (master_users, users):
            os.chown(f, 0, auth_gid)
            f.chmod(0o640)

        self.conf.write_text(f"""\
# Generated by tests/peers/peers.py: a throw-away Dovecot on loopback.
instance_name = peers-{os.getpid()}-{self.imap_port}
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.log}
info_log_path = {self.log}
debug_log_path = {self.log}
log_timestamp = "%Y-%m-%d %H:%M:%S "

protocols = imap lmtp pop3 sieve
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
login_trusted_networks = 127.0.0.1/32
haproxy_trusted_networks = 127.0.0.1/32
mail_max_userip_connections = 20000

mail_uid = mail
mail_gid = mail
first_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:{self.mail_dir}/%d/%n/Maildir

namespace inbox {{
  inbox = yes
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
}}

# The proxy logs in as AUTHENTICATE PLAIN base64("user\\0proxy\\0secret").
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {master_users}
  master = yes
  pass = yes
}}
# The users, with their app passwords (for passthrough tests).
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}

# Fast for tests: login processes serve many clients, imap processes are reused.
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  # For the proxy's `proxy-protocol = "v2"` towards the upstream.
  inet_listener imap-haproxy {{
    address = {HOST}
    port = {self.haproxy_port}
    haproxy = yes
  }}
  service_count = 0
  client_limit = 1000
  process_min_avail = 1
}}
# Several sessions per imap process: the load test holds thousands of
# logged-in sessions (tests/load_e2e.rs).
service imap {{
  service_count = 0
  client_limit = 10
  process_limit = 1024
  process_min_avail = 2
}}
# POP3 and ManageSieve like IMAP: plaintext on loopback, the proxy's address
# trusted (login_trusted_networks: XCLIENT; haproxy_trusted_networks: PROXY).
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  inet_listener pop3-haproxy {{
    address = {HOST}
    port = {self.pop3_haproxy_port}
    haproxy = yes
  }}
  service_count = 0
  client_limit = 1000
}}
service managesieve-login {{
  inet_listener sieve {{
    address = {HOST}
    port = {self.managesieve_port}
  }}
  inet_listener sieve-haproxy {{
    address = {HOST}
    port = {self.managesieve_haproxy_port}
    haproxy = yes
  }}
  service_count = 0
  client_limit = 1000
}}
# Mail delivered over LMTP runs the user's active Sieve script; ManageSieve
# stores scripts in the user's home (owned by the mail user).
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
service lmtp {{
  inet_listener lmtp {{
    address = {HOST}
    port = {self.lmtp_port}
  }}
}}
# Dovecot's auth-client protocol on loopback, for Postfix's SASL (XCLIENT LOGIN=).
service auth {{
  inet_listener auth-inet {{
    address = {HOST}
    port = {self.auth_port}
  }}
  client_limit = 5000
}}
service anvil {{
  client_limit = 5000
}}
""")

    def start(self) -> None:
        self.proc = spawn(["dovecot", "-F", "-c", str(self.conf)], self.stdio_log)

    def check_ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise PeerError(f"dovecot exited with status {self.proc.returncode if self.proc else None}")
        greeting = banner(self.imap_port)
        if not greeting or not greeting.startswith("* OK"):
            return False
        greeting = banner(self.lmtp_port)
        if not greeting or not greeting.startswith("220"):
            return False
        greeting = banner(self.pop3_port)
        if not greeting or not greeting.startswith("+OK"):
            return False
        # ManageSieve greets with capability lines, then OK.
        if not managesieve_ready(self.managesieve_port):
            return False
        return port_open(self.auth_port)

    def after_ready(self) -> None:
        if not self.seeded:
            self.seed()
            self.seeded = True

    def seed(self) -> None:
        """Put one message, Subject "Welcome <email>", into each INBOX."""
        for email, name, _ in USERS:
            message = (
                "From: Postmaster <postmaster@example.com>\r\n"
                f"To: {name} <{email}>\r\n"
                f"Subject: {self.welcome.format(email=email)}\r\n"
                "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                f"Message-ID: <welcome-{name}@example.com>\r\n"
                "\r\n"
                f"Hello {name}, this mailbox is readable.\r\n"
            )
            res = subprocess.run(
                ["doveadm", "-c", str(self.conf), "save", "-u", email, "-m", "INBOX"],
                input=message.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=READY_TIMEOUT)
            if res.returncode != 0:
                raise PeerError(f"doveadm save for {email} failed: "
                                f"{res.stdout.decode(errors='replace').strip()}")

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def logs(self) -> list[Path]:
        return [self.stdio_log, self.log]

    def describe(self) -> dict:
        return {
            "imap_port": self.imap_port,
            "imap_haproxy_port": self.haproxy_port,
            "pop3_port": self.pop3_port,
            "pop3_haproxy_port": self.pop3_haproxy_port,
            "managesieve_port": self.managesieve_port,
            "managesieve_haproxy_port": self.managesieve_haproxy_port,
            "lmtp_port": self.lmtp_port,
            "auth_port": self.auth_port,
            "master_user": MASTER_USER,
            "master_secret": self.secret,
            "master_secret_file": str(self.secret_file),
            "config": str(self.conf),
            "log": str(self.log),
            "mail_dir": str(self.mail_dir),
            "pid": self.pid,
            "latin1_user": {"email": LATIN1_USER[0], "password_hex": LATIN1_USER[2].hex()},
            "welcome": self.welcome,
        }


class Dovecot2(Dovecot):
    """A second Dovecot (``--second-dovecot``): another mail backend with its
    own state, mail and ports, the first one's master user and secret."""
    name = "dovecot2"
    mail_name = "mail2"
    welcome = "Welcome to dovecot2, {email}"

    def __init__(self, workdir: Path, first: Dovecot):
        imap, lmtp, auth, imap_pp = free_ports(4)
        super().__init__(workdir, imap, lmtp, auth, imap_pp)
        self.secret = first.secret


# --------------------------------------------------------------------- Postfix


class Postfix:
    name = "postfix"

    def __init__(self, workdir: Path, smtp_port: int, lmtp_port: int, auth_port: int,
                 haproxy_port: int):
        # Config, queue and data apart: `postfix check` wants everything under
        # the config directory owned by root.
        self.top = workdir / "postfix"
        self.dir = self.top / "conf"
        self.smtp_port = smtp_port
        self.haproxy_port = haproxy_port
        self.lmtp_port = lmtp_port
        self.auth_port = auth_port
        self.queue = self.top / "queue"
        self.data = self.top / "data"
        self.maillog = self.top / "maillog"
        self.stdio_log = self.top / "stdio.log"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> None:
        self.top.mkdir(mode=0o755)
        self.dir.mkdir(mode=0o755)
        self.data.mkdir(mode=0o755)
        self.queue.mkdir(mode=0o755)  # `postfix start` creates the subdirectories
        postfix = pwd.getpwnam("postfix")
        os.chown(self.data, postfix.pw_uid, postfix.pw_gid)
        vmailbox = self.dir / "vmailbox"
        vmailbox.write_text("".join(f"{email} {email}\n" for email, _, _ in USERS))

        (self.dir / "main.cf").write_text(f"""\
# Generated by tests/peers/peers.py: a throw-away Postfix on loopback.
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.peers.test
mydomain = peers.test
myorigin = $myhostname
mydestination =
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_banner = $myhostname ESMTP peers
biff = no
alias_maps =
alias_database =
local_recipient_maps =

# No syslog here: log to a file through the postlog service.
maillog_file_prefixes = {self.workdir}
maillog_file = {self.maillog}

# The proxy speaks XCLIENT; LOGIN= only counts with SASL enabled and working.
smtpd_authorized_xclient_hosts = 127.0.0.1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:{HOST}:{self.auth_port}
smtpd_sasl_authenticated_header = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_tls_security_level = none
smtp_tls_security_level = none

# Delivery: example.com into Dovecot over LMTP; nothing may leave the machine.
virtual_mailbox_domains = example.com
virtual_mailbox_maps = texthash:{vmailbox}
virtual_transport = lmtp:inet:{HOST}:{self.lmtp_port}
local_transport = error:local delivery is disabled
relay_transport = error:relaying is disabled
default_transport = error:outbound mail is disabled

# Quick for tests: no error sleeps, quick retries, short service throttling
# (smtpd dies while the Dovecot SASL backend is down).
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
service_throttle_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
in_flow_delay = 0
""")
        # No chroot anywhere; one inet service on loopback; postlog for maillog_file.
        services = [
            (f"{HOST}:{self.smtp_port}", "inet", "n", "-", "n", "-", "-", "smtpd"),
            (f"{HOST}:{self.haproxy_port}", "inet", "n", "-", "n", "-", "-",
             "smtpd\n  -o smtpd_upstream_proxy_protocol=haproxy"),
            ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
            ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("proxywrite", "unix", "-", "-", "n", "-", "1", "proxymap"),
            ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("lmtp", "unix", "-", "-", "n", "-", "-", "lmtp"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
        ]
        (self.dir / "master.cf").write_text(
            "# Generated by tests/peers/peers.py\n"
            + "".join(" ".join(f"{c:<10}" for c in row).rstrip() + "\n" for row in services))

    def postfix_cmd(self, *args: str) -> list[str]:
        return ["postfix", "-c", str(self.dir), *args]

    def start(self) -> None:
        # start-fg runs `master -s` under the postfix-script shell (our child);
        # the master makes itself a session leader, see master_pid().
        self.proc = spawn(self.postfix_cmd("start-fg"), self.stdio_log)

    def master_pid(self) -> int | None:
        try:
            pid = int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def check_ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise PeerError(f"postfix start-fg exited with status {self.proc.returncode if self.proc else None}")
        if self.master_pid() is None:
            return False
        # A real greeting: smtpd starts and reaches its SASL backend.
        try:
            with socket.create_connection((HOST, self.smtp_port), timeout=2) as s:
                s.settimeout(2)
                f = s.makefile("rwb")
                if not f.readline().startswith(b"220"):
                    return False
                f.write(b"QUIT\r\n")
                f.flush()
                return True
        except OSError:
            return False

    def after_ready(self) -> None:
        pass

    def stop(self) -> None:
        # Like `postfix stop` (which SIGTERMs the master), but bounded and to
        # the master's whole process group: the master called setsid(), so its
        # pgid is its pid. The start-fg shell exits when the master does.
        stop_group(self.proc, self.master_pid())
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.master_pid() if self.proc and self.proc.poll() is None else None

    def logs(self) -> list[Path]:
        return [self.stdio_log, self.maillog]

    def describe(self) -> dict:
        return {
            "smtp_port": self.smtp_port,
            "smtp_haproxy_port": self.haproxy_port,
            "config_dir": str(self.dir),
            "maillog": str(self.maillog),
            "pid": self.pid,
        }


# ------------------------------------------------------------------ OpenID provider


class Oidc:
    name = "oidc"

    def __init__(self, workdir: Path, port: int, admin_port: int):
        self.dir = workdir / "oidc"
        self.port = port
        self.admin_port = admin_port
        self.log = self.dir / "provider.log"
        self.proc: subprocess.Popen | None = None
        self.node = shutil.which("node")

    def write_config(self) -> None:
        self.dir.mkdir(mode=0o755)
        if not self.node:
            raise PeerError("`node` not found (Node.js >= 20.19 is needed)")
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise PeerError(f"{OIDC_DIR}/node_modules is missing: run scripts/install-deps.sh")

    @property
    def start_cmd(self) -> list[str]:
        return [self.node or "node", str(PROVIDER_SCRIPT),
                "--port", str(self.port), "--admin-port", str(self.admin_port)]

    def start(self) -> None:
        # Each start appends; READY is looked for after the current log size.
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = spawn(self.start_cmd, self.log, cwd=OIDC_DIR)

    def check_ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise PeerError(f"node provider.mjs exited with status {self.proc.returncode if self.proc else None}")
        with open(self.log, "rb") as f:
            f.seek(self.log_offset)
            if b"READY\n" not in f.read():
                return False
        return port_open(self.port) and port_open(self.admin_port)

    def after_ready(self) -> None:
        pass

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def logs(self) -> list[Path]:
        return [self.log]

    def describe(self) -> dict:
        issuer = f"http://{HOST}:{self.port}"
        return {
            "issuer": issuer,
            "discovery": f"{issuer}/.well-known/openid-configuration",
            "userinfo": f"{issuer}/me",
            "introspection": f"{issuer}/token/introspection",
            "revocation": f"{issuer}/token/revocation",
            "jwks": f"{issuer}/jwks",
            "token": f"{issuer}/token",
            "port": self.port,
            "admin": f"http://{HOST}:{self.admin_port}",
            "admin_port": self.admin_port,
            "basic_client": OIDC_BASIC_CLIENT,
            "post_client": OIDC_POST_CLIENT,
            "static_token": OIDC_STATIC_TOKEN,
            "jwt_resource": "urn:mail",
            "log": str(self.log),
            "pid": self.pid,
            "start_cmd": self.start_cmd,
        }


# ----------------------------------------------------------------------- harness


def wait_ready(peers: list, timeout: float = READY_TIMEOUT) -> None:
    """Wait, in order, for each peer; raise PeerError naming the first failure.

    A peer still starting after `timeout` (seen once in CI: the provider
    hung at start-up, and the next start of the peers worked) is stopped
    and started once more, with its log tail reported."""
    for peer in peers:
        deadline = time.monotonic() + timeout
        restarted = False
        while True:
            try:
                if peer.check_ready():
                    break
            except PeerError as e:
                raise PeerError(f"{peer.name}: {e}") from None
            if time.monotonic() > deadline:
                if restarted:
                    raise PeerError(f"{peer.name} was not ready within {timeout:.0f} s, twice")
                log(f"{peer.name} was not ready within {timeout:.0f} s: starting it once more")
                for path in peer.logs():
                    log(f"--- tail of {peer.name} log {path} ---\n{tail(path)}")
                peer.stop()
                peer.start()
                restarted = True
                deadline = time.monotonic() + timeout
            time.sleep(0.05)
        try:
            peer.after_ready()
        except PeerError as e:
            raise PeerError(f"{peer.name}: {e}") from None


def report_failure(peer_name: str | None, peers: list, message: str) -> None:
    log(f"ERROR: {message}")
    for peer in peers:
        if peer_name is None or peer.name == peer_name:
            for path in peer.logs():
                log(f"--- tail of {peer.name} log {path} ---\n{tail(path)}")


def make_workdir(requested: str | None) -> Path:
    if requested:
        workdir = Path(requested).resolve()
        if workdir.exists() and any(workdir.iterdir()):
            raise SystemExit(f"peers.py: --workdir {workdir} exists and is not empty")
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="oauthbearer-peers-"))
    # mktemp makes 0700: Dovecot's and Postfix's unprivileged users must be able
    # to traverse it and every parent (add only the x bits a parent lacks).
    workdir.chmod(0o755)
    for parent in workdir.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod((mode & 0o7777) | 0o011)
    return workdir


def make_certs(workdir: Path) -> dict:
    certs = workdir / "certs"
    res = subprocess.run(["bash", str(MAKE_CERTS), str(certs)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if res.returncode != 0:
        raise PeerError(f"certs: make-test-certs.sh failed: {res.stdout.decode(errors='replace')}")
    return {"ca": str(certs / "ca.pem"), "cert": str(certs / "cert.pem"),
            "key": str(certs / "key.pem"), "ca_key": str(certs / "ca.key")}


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
    if workdir.exists():
        log(f"warning: could not remove {workdir} completely")


def reply(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve_commands(by_name: dict) -> None:
    """The stdin line protocol; returns at EOF."""
    while True:
        line = sys.stdin.readline()
        if not line:
            return  # EOF: the test process is gone or closed the pipe
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        if cmd == "status" and not args:
            reply("ok " + json.dumps({name: peer.pid for name, peer in by_name.items()}))
            continue
        if cmd not in ("stop", "start", "restart") or len(args) != 1:
            reply(f"error unknown command: {line.strip()}")
            continue
        peer = by_name.get(args[0])
        if peer is None:
            reply(f"error unknown peer: {args[0]} (have {', '.join(by_name)})")
            continue
        try:
            if cmd in ("stop", "restart"):
                peer.stop()
            if cmd in ("start", "restart"):
                if peer.pid is not None:
                    raise PeerError(f"{peer.name} is already running")
                peer.start()
                wait_ready([peer])
            reply("ok")
        except PeerError as e:
            report_failure(peer.name, [peer], str(e))
            if cmd != "stop" and "already running" not in str(e):
                peer.stop()  # do not leave a half-started daemon behind
            reply(f"error {e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="scratch directory (created; must be empty)")
    parser.add_argument("--no-postfix", action="store_true", help="do not start Postfix")
    parser.add_argument("--keep", action="store_true", help="keep the workdir at exit")
    parser.add_argument("--second-dovecot", action="store_true",
                        help="start a second Dovecot (dovecot2) with the same master user")
    opts = parser.parse_args()

    if os.geteuid() != 0:
        log("must run as root (Dovecot and Postfix drop privileges themselves)")
        return 1

    def on_signal(signum, _frame):
        raise Shutdown(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    started = time.monotonic()
    workdir = make_workdir(opts.workdir)
    peers: list = []
    status = 0
    try:
        (imap, lmtp, auth, smtp, oidc_port, admin_port, imap_pp, smtp_pp,
         pop3, pop3_pp, sieve, sieve_pp) = free_ports(12)
        dovecot = Dovecot(workdir, imap, lmtp, auth, imap_pp)
        dovecot.use_ports(pop3, pop3_pp, sieve, sieve_pp)
        postfix = None if opts.no_postfix else Postfix(workdir, smtp, lmtp, auth, smtp_pp)
        oidc = Oidc(workdir, oidc_port, admin_port)
        dovecot2 = None
        if opts.second_dovecot:
            dovecot.more_users = MANY_USERS
            dovecot2 = Dovecot2(workdir, dovecot)
            dovecot2.more_users = MANY_USERS
        # Postfix last: its smtpd needs Dovecot's auth service when probed.
        peers = [p for p in (oidc, dovecot, dovecot2, postfix) if p is not None]
        by_name = {p.name: p for p in peers}
        try:
            for peer in peers:
                try:
                    peer.write_config()
                except (OSError, PeerError) as e:
                    raise PeerError(f"{peer.name}: cannot prepare: {e}") from None
            for peer in peers:  # start all at once, then wait for each
                peer.start()
            certs = make_certs(workdir)
            wait_ready(peers)
        except PeerError as e:
            failed = str(e).split(":")[0].split()[0]
            report_failure(failed if failed in by_name else None, peers, str(e))
            return 1

        info = {
            "workdir": str(workdir),
            "dovecot": dovecot.describe(),
            "postfix": postfix.describe() if postfix else None,
            "dovecot2": dovecot2.describe() if dovecot2 else None,
            "oidc": oidc.describe(),
            "users": [{"email": e, "username": n, "password": p,
                       "welcome_subject": f"Welcome {e}"} for e, n, p in USERS],
            "certs": certs,
            "pid": os.getpid(),
            "startup_seconds": round(time.monotonic() - started, 2),
        }
        reply(json.dumps(info))
        serve_commands(by_name)
    except Shutdown as e:
        log(f"{e}: shutting down")
    except BrokenPipeError:
        # Our stdout reader is gone: shut down, and keep Python's final flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as e:  # noqa: BLE001 - report anything, then clean up
        log(f"ERROR: {type(e).__name__}: {e}")
        status = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for peer in reversed(peers):
            try:
                t = time.monotonic()
                peer.stop()
                if VERBOSE:
                    log(f"stopped {peer.name} in {time.monotonic() - t:.2f} s")
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                log(f"warning: stopping {peer.name}: {e}")
        if not opts.keep:
            t = time.monotonic()
            remove_workdir(workdir)
            if VERBOSE:
                log(f"removed {workdir} in {time.monotonic() - t:.2f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
