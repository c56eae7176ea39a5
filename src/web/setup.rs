//! Client set-up documents: Mozilla autoconfig (Thunderbird's
//! `clientConfig` version 1.1) and an Apple configuration profile
//! (`.mobileconfig`, a property list with a `com.apple.mail.managed`
//! payload). Host names and ports come from the proxy's own listeners.

use crate::config::{Config, Protocol, TlsMode};

/// One mail service a client can be pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailService {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// Implicit TLS (`SSL`) or `STARTTLS`.
    pub implicit_tls: bool,
}

/// The TLS listeners of `config` as clients see them: `public-name` or
/// `server.hostname`, and the first bound port. Plaintext listeners are
/// never offered; implicit TLS comes before STARTTLS.
pub fn services(config: &Config) -> Vec<MailService> {
    let mut all: Vec<MailService> = config
        .listeners
        .iter()
        .filter(|l| l.tls != TlsMode::None)
        .filter_map(|l| {
            Some(MailService {
                protocol: l.protocol,
                host: l
                    .public_name
                    .clone()
                    .unwrap_or_else(|| config.server.hostname.clone()),
                port: l.binds.first()?.port(),
                implicit_tls: l.tls == TlsMode::Implicit,
            })
        })
        .collect();
    all.sort_by_key(|s| !s.implicit_tls);
    all
}

fn first(services: &[MailService], p: Protocol) -> Option<&MailService> {
    services.iter().find(|s| s.protocol == p)
}

/// Whether a `.mobileconfig` can be made (an IMAP and an SMTP TLS listener).
pub fn profile_possible(services: &[MailService]) -> bool {
    first(services, Protocol::Imap).is_some() && first(services, Protocol::Smtp).is_some()
}

/// XML text and attribute escaping.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Mozilla autoconfig for `domain` (`clientConfig` v1.1).
pub fn autoconfig(domain: &str, services: &[MailService]) -> String {
    let domain = xml_escape(domain);
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  \
         <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    \
         <displayName>{domain}</displayName>\n    <displayShortName>{domain}</displayShortName>\n"
    );
    let server = |tag: &str, kind: &str, s: &MailService| {
        format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{}</hostname>\n      <port>{}</port>\n      \
             <socketType>{}</socketType>\n      <authentication>password-cleartext</authentication>\n      \
             <username>%EMAILADDRESS%</username>\n    </{tag}>\n",
            xml_escape(&s.host),
            s.port,
            if s.implicit_tls { "SSL" } else { "STARTTLS" }
        )
    };
    for s in services.iter().filter(|s| s.protocol == Protocol::Imap) {
        xml.push_str(&server("incomingServer", "imap", s));
    }
    for s in services.iter().filter(|s| s.protocol == Protocol::Pop3) {
        xml.push_str(&server("incomingServer", "pop3", s));
    }
    for s in services.iter().filter(|s| s.protocol == Protocol::Smtp) {
        xml.push_str(&server("outgoingServer", "smtp", s));
    }
    xml.push_str("  </emailProvider>\n</clientConfig>\n");
    xml
}

/// What goes into a `.mobileconfig`.
pub struct Profile<'a> {
    pub email: &'a str,
    pub user: &'a str,
    /// The device's name (the app password's name).
    pub name: &'a str,
    /// Only when the user asked for it inline.
    pub password: Option<&'a str>,
    /// Random UUIDs for the profile and its payload.
    pub uuids: [String; 2],
    pub identifier: &'a str,
}

/// An Apple configuration profile with IMAP and SMTP preset; `None`
/// without an IMAP and an SMTP TLS listener.
pub fn mobileconfig(p: &Profile<'_>, services: &[MailService]) -> Option<String> {
    let imap = first(services, Protocol::Imap)?;
    let smtp = first(services, Protocol::Smtp)?;
    let s = |k: &str, v: &str| format!("<key>{k}</key><string>{}</string>", xml_escape(v));
    let i = |k: &str, v: i64| format!("<key>{k}</key><integer>{v}</integer>");
    let b = |k: &str, v: bool| format!("<key>{k}</key><{v}/>");
    let mut mail = vec![
        s("PayloadType", "com.apple.mail.managed"),
        i("PayloadVersion", 1),
        s("PayloadIdentifier", &format!("{}.mail", p.identifier)),
        s("PayloadUUID", &p.uuids[1]),
        s("PayloadDisplayName", &format!("Mail ({})", p.name)),
        s("EmailAccountDescription", p.email),
        s("EmailAccountType", "EmailTypeIMAP"),
        s("EmailAddress", p.email),
        s("IncomingMailServerAuthentication", "EmailAuthPassword"),
        s("IncomingMailServerHostName", &imap.host),
        i("IncomingMailServerPortNumber", imap.port.into()),
        b("IncomingMailServerUseSSL", true),
        s("IncomingMailServerUsername", p.user),
        s("OutgoingMailServerAuthentication", "EmailAuthPassword"),
        s("OutgoingMailServerHostName", &smtp.host),
        i("OutgoingMailServerPortNumber", smtp.port.into()),
        b("OutgoingMailServerUseSSL", true),
        s("OutgoingMailServerUsername", p.user),
        b("OutgoingPasswordSameAsIncomingPassword", true),
    ];
    if let Some(pw) = p.password {
        mail.push(s("IncomingPassword", pw));
        mail.push(s("OutgoingPassword", pw));
    }
    let top = [
        s("PayloadType", "Configuration"),
        i("PayloadVersion", 1),
        s("PayloadIdentifier", p.identifier),
        s("PayloadUUID", &p.uuids[0]),
        s("PayloadDisplayName", &format!("Mail for {}", p.email)),
        s(
            "PayloadDescription",
            &format!("IMAP and SMTP for {} on {}", p.email, p.name),
        ),
        b("PayloadRemovalDisallowed", false),
    ];
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
         \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n\
         <key>PayloadContent</key>\n<array>\n<dict>\n{}\n</dict>\n</array>\n{}\n</dict>\n</plist>\n",
        mail.join("\n"),
        top.join("\n")
    ))
}

/// A random (version 4) UUID in upper case, as Apple's tools write them.
pub fn uuid() -> Result<String, super::crypto::Unavailable> {
    let mut b = super::crypto::random_bytes(16)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
#[path = "setup_tests.rs"]
mod tests;
