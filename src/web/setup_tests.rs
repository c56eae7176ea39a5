//! The set-up documents parsed by Python's own parsers: `xml.etree` for
//! autoconfig (the fields Thunderbird reads), `plistlib` for the profile.

use super::*;

fn services() -> Vec<MailService> {
    let config = Config::parse(crate::web::tests::CONFIG).expect("config");
    super::services(&config)
}

/// Runs a Python script with `input` on stdin; its stdout.
fn python(script: &str, input: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(out.status.success(), "python3 failed on:\n{input}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn services_come_from_the_tls_listeners() {
    let s = services();
    let summary: Vec<String> = s
        .iter()
        .map(|s| {
            format!(
                "{} {}:{} {}",
                s.protocol.name(),
                s.host,
                s.port,
                s.implicit_tls
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "imap imap.example.com:993 true",
            "smtp mail.example.com:465 true",
            "smtp mail.example.com:587 false"
        ]
    );
}

#[test]
fn autoconfig_parses_with_the_fields_thunderbird_reads() {
    let xml = autoconfig("example.com", &services());
    let script = r#"
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
assert root.tag == "clientConfig" and root.get("version") == "1.1"
p = root.find("emailProvider")
assert p.get("id") == "example.com" and p.findtext("domain") == "example.com"
for s in p.findall("incomingServer") + p.findall("outgoingServer"):
    print(s.tag, s.get("type"), s.findtext("hostname"), s.findtext("port"),
          s.findtext("socketType"), s.findtext("authentication"), s.findtext("username"))
"#;
    let out = python(script, &xml);
    assert_eq!(
        out,
        "incomingServer imap imap.example.com 993 SSL password-cleartext %EMAILADDRESS%\n\
         outgoingServer smtp mail.example.com 465 SSL password-cleartext %EMAILADDRESS%\n\
         outgoingServer smtp mail.example.com 587 STARTTLS password-cleartext %EMAILADDRESS%\n"
    );
    let hostile = autoconfig("a\"<b>&c", &services());
    assert!(hostile.contains("a&quot;&lt;b&gt;&amp;c"));
}

#[test]
fn the_profile_is_a_property_list_with_mail_payload() {
    let uuids = [uuid().expect("uuid"), uuid().expect("uuid")];
    assert_ne!(uuids[0], uuids[1]);
    assert_eq!(uuids[0].len(), 36);
    assert_eq!(&uuids[0][14..15], "4");
    let profile = |password| Profile {
        email: "alice@example.com",
        user: "alice@example.com",
        name: "Alice's <phone>",
        password,
        uuids: uuids.clone(),
        identifier: "com.example.mail.x",
    };
    let script = r#"
import sys, plistlib
p = plistlib.loads(sys.stdin.read().encode())
assert p["PayloadType"] == "Configuration" and p["PayloadVersion"] == 1
m = p["PayloadContent"][0]
assert m["PayloadType"] == "com.apple.mail.managed"
assert m["PayloadUUID"] != p["PayloadUUID"]
print(m["EmailAddress"], m["IncomingMailServerHostName"], m["IncomingMailServerPortNumber"],
      m["IncomingMailServerUseSSL"], m["OutgoingMailServerHostName"], m["OutgoingMailServerPortNumber"],
      m.get("IncomingPassword"), m["PayloadDisplayName"])
"#;
    let without = mobileconfig(&profile(None), &services()).expect("profile");
    assert_eq!(
        python(script, &without),
        "alice@example.com imap.example.com 993 True mail.example.com 465 None Mail (Alice's <phone>)\n"
    );
    let with = mobileconfig(&profile(Some("abcd efgh")), &services()).expect("profile");
    assert!(python(script, &with).contains(" abcd efgh "));
    assert!(
        mobileconfig(&profile(None), &services()[..1]).is_none(),
        "no SMTP"
    );
}
