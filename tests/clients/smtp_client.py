"""Python smtplib through the proxy: logs in and sends one message to bob.

Arguments: PORT IMPLICIT USER MODE SECRET CA SUBJECT IR
  IMPLICIT  1 for implicit TLS, 0 for STARTTLS
  MODE      oauthbearer, xoauth2, plain or login
  SECRET    the token or the password
  IR        1 to send the first response with AUTH (SASL-IR), 0 after 334

Prints SENT on success, or ERROR with the SMTP code and text; a refused
bearer token's error challenge is printed as CHALLENGE first.
"""
import smtplib
import ssl
import sys

port, implicit, user, mode, secret, ca, subject, ir = sys.argv[1:9]
implicit, ir = implicit == "1", ir == "1"
ctx = ssl.create_default_context(cafile=ca)
if implicit:
    s = smtplib.SMTP_SSL("127.0.0.1", int(port), context=ctx, timeout=30)
else:
    s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
    s.ehlo("python.example")
    s.starttls(context=ctx)
s.ehlo("python.example")
msg = f"From: {user}\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\r\nHello from smtplib.\r\n"
try:
    if mode in ("plain", "login"):
        s.user, s.password = user, secret
        s.auth(mode.upper(), getattr(s, "auth_" + mode), initial_response_ok=ir)
    else:
        first = [True]

        def answer(challenge=None):
            if first[0]:
                first[0] = False
                if mode == "oauthbearer":
                    return f"n,a={user},\x01auth=Bearer {secret}\x01\x01"
                return f"user={user}\x01auth=Bearer {secret}\x01\x01"
            print("CHALLENGE", challenge.decode() if challenge else "")
            return "\x01"

        s.auth(mode.upper(), answer, initial_response_ok=ir)
    s.sendmail(user, ["bob@example.com"], msg)
    print("SENT")
    s.quit()
except smtplib.SMTPException as e:
    print("ERROR", getattr(e, "smtp_code", ""), getattr(e, "smtp_error", e))
