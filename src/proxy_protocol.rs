//! The PROXY protocol (HAProxy's "PROXY protocol" spec, versions 1 and 2):
//! a header a load balancer puts before the client's bytes, naming the
//! client's real address.
//!
//! - Inbound: [`read_header`] reads exactly the header (never a byte of the
//!   TLS handshake or greeting behind it) from a connection that came from a
//!   trusted network; [`parse`] is the pure, two-phase parser under it.
//! - Outbound: [`encode_v2`] builds the v2 header sent to an upstream
//!   (Dovecot `haproxy_trusted_networks`, Postfix `smtpd_upstream_proxy_protocol`).
//! - [`Network`]: a CIDR network, for `proxy-trusted-networks`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature (spec §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes including CRLF (spec §2.1).
const V1_MAX: usize = 107;
/// The largest v2 address block (addresses plus TLVs) we accept.
const V2_MAX_BLOCK: usize = 4096;

/// What the header said: the client's and the original destination's
/// addresses, or `None` when it carries none we use (v2 LOCAL, v1 UNKNOWN,
/// a non-TCP family); then the connection's own addresses stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// The result of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// At least this many bytes in total are needed to decide.
    Incomplete(usize),
    /// A whole header of `len` bytes.
    Complete(Header, usize),
}

/// Parses a header at the start of `buf` (v1 or v2).
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    if buf.len() < V2_SIGNATURE.len() {
        let n = buf.len();
        if V2_SIGNATURE[..n] != buf[..n] && b"PROXY "[..n.min(6)] != buf[..n.min(6)] {
            return Err(Error::Missing);
        }
        return Ok(Parsed::Incomplete(V2_SIGNATURE.len()));
    }
    if buf[..12] == V2_SIGNATURE {
        parse_v2(buf)
    } else if buf.starts_with(b"PROXY ") {
        parse_v1(buf)
    } else {
        Err(Error::Missing)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    let Some(end) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(Error::Malformed("v1 header longer than 107 bytes"));
        }
        return Ok(Parsed::Incomplete(buf.len() + 1));
    };
    let line = buf[..end]
        .strip_suffix(b"\r")
        .ok_or(Error::Malformed("v1 header does not end in CRLF"))?;
    let line = std::str::from_utf8(line).map_err(|_| Error::Malformed("v1 header is not ASCII"))?;
    let words: Vec<&str> = line.split(' ').collect();
    let header = match words.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Header { addresses: None },
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, Error> {
                let ip: IpAddr = s.parse().map_err(|_| Error::Malformed("v1 bad address"))?;
                if ip.is_ipv4() != (*family == "TCP4") {
                    return Err(Error::Malformed("v1 address does not match its family"));
                }
                Ok(ip)
            };
            let port = |s: &str| -> Result<u16, Error> {
                s.parse().map_err(|_| Error::Malformed("v1 bad port"))
            };
            Header {
                addresses: Some((
                    SocketAddr::new(ip(src)?, port(sport)?),
                    SocketAddr::new(ip(dst)?, port(dport)?),
                )),
            }
        }
        _ => return Err(Error::Malformed("v1 header has the wrong fields")),
    };
    Ok(Parsed::Complete(header, end + 1))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete(16));
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(Error::Malformed("v2 version is not 2"));
    }
    let family = buf[13];
    let block = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if block > V2_MAX_BLOCK {
        return Err(Error::Malformed("v2 address block too large"));
    }
    let total = 16 + block;
    if buf.len() < total {
        return Ok(Parsed::Incomplete(total));
    }
    let data = &buf[16..total];
    let addresses = match (version_command & 0x0f, family) {
        // LOCAL: the balancer's own connection (health checks).
        (0, _) => None,
        (1, 0x11) => {
            let a = data
                .get(..12)
                .ok_or(Error::Malformed("v2 TCP4 block too short"))?;
            let ip = |b: &[u8]| IpAddr::from([b[0], b[1], b[2], b[3]]);
            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
            Some((
                SocketAddr::new(ip(&a[0..4]), port(&a[8..10])),
                SocketAddr::new(ip(&a[4..8]), port(&a[10..12])),
            ))
        }
        (1, 0x21) => {
            let a = data
                .get(..36)
                .ok_or(Error::Malformed("v2 TCP6 block too short"))?;
            let ip = |b: &[u8]| {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                IpAddr::from(Ipv6Addr::from(o))
            };
            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
            Some((
                SocketAddr::new(ip(&a[0..16]), port(&a[32..34])),
                SocketAddr::new(ip(&a[16..32]), port(&a[34..36])),
            ))
        }
        // UNSPEC, UDP or unix sockets: keep the connection's addresses.
        (1, _) => None,
        _ => return Err(Error::Malformed("v2 command is neither LOCAL nor PROXY")),
    };
    Ok(Parsed::Complete(Header { addresses }, total))
}

/// Reads one header from `stream`, byte-exact: what follows it stays
/// unread. The caller bounds the time.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Header, ReadError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match parse(&buf)? {
            Parsed::Complete(header, _) => return Ok(header),
            Parsed::Incomplete(need) => {
                // A v1 line is read byte by byte so nothing past its LF is consumed.
                let want = if buf.starts_with(b"PROXY ") {
                    buf.len() + 1
                } else {
                    need
                };
                let start = buf.len();
                buf.resize(want, 0);
                stream.read_exact(&mut buf[start..]).await?;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Header(#[from] Error),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// The v2 header for a proxied TCP connection from `source` to `destination`.
/// Mixed families are sent as IPv6 (IPv4-mapped).
pub fn encode_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// The v2 header for a connection the proxy makes on its own behalf
/// (LOCAL: the receiver keeps the connection's real addresses).
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

/// A CIDR network such as `10.0.0.0/8`, `::1/128` or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.octets(), u32::from(self.prefix))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(&n.octets(), &a.octets(), u32::from(self.prefix))
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u32) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a network like \"10.0.0.0/8\" or \"::1/128\"");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Network { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 993\r\n* OK";
        assert_eq!(
            parse(h),
            Ok(Parsed::Complete(
                Header {
                    addresses: Some((sa("192.0.2.7:56324"), sa("198.51.100.1:993")))
                },
                h.len() - 4
            ))
        );
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 587\r\n";
        assert!(matches!(
            parse(h),
            Ok(Parsed::Complete(Header { addresses: Some(_) }, _))
        ));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Parsed::Complete(Header { addresses: None }, 15))
        );
    }

    #[test]
    fn v1_incomplete_and_malformed() {
        assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete(12)));
        assert_eq!(parse(b"PROXY TCP4 1.2"), Ok(Parsed::Incomplete(15)));
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n").is_err());
        assert!(parse(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n").is_err());
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(
            parse(&long),
            Err(Error::Malformed("v1 header longer than 107 bytes"))
        );
        assert_eq!(parse(b"a1 LOGIN x y\r\n"), Err(Error::Missing));
        assert_eq!(parse(b"\x16\x03\x01"), Err(Error::Missing));
    }

    #[test]
    fn v2_round_trip() {
        for (s, d) in [
            ("192.0.2.7:56324", "198.51.100.1:993"),
            ("[2001:db8::1]:1000", "[2001:db8::2]:587"),
        ] {
            let h = encode_v2(sa(s), sa(d));
            assert_eq!(
                parse(&h),
                Ok(Parsed::Complete(
                    Header {
                        addresses: Some((sa(s), sa(d)))
                    },
                    h.len()
                ))
            );
            assert_eq!(parse(&h[..14]), Ok(Parsed::Incomplete(16)));
            assert_eq!(parse(&h[..20]), Ok(Parsed::Incomplete(h.len())));
        }
        // Mixed families are sent as IPv6.
        let h = encode_v2(sa("192.0.2.7:1"), sa("[2001:db8::2]:2"));
        assert_eq!(h[13], 0x21);
        assert_eq!(
            parse(&encode_v2_local()),
            Ok(Parsed::Complete(Header { addresses: None }, 16))
        );
    }

    #[test]
    fn v2_local_tlvs_and_limits() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x20, 0x00, 0x00, 0x03, 1, 2, 3]);
        assert_eq!(
            parse(&h),
            Ok(Parsed::Complete(Header { addresses: None }, 19))
        );
        let mut t = encode_v2(sa("10.1.2.3:4"), sa("10.0.0.1:5"));
        t[15] += 5; // a TLV after the addresses
        t.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']);
        assert!(matches!(
            parse(&t),
            Ok(Parsed::Complete(Header { addresses: Some(_) }, 33))
        ));
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(parse(&big).is_err());
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(parse(&short).is_err());
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0x00, 0x00]);
        assert!(parse(&v3).is_err());
    }

    #[tokio::test]
    async fn reads_exactly_the_header() {
        let mut input: &[u8] = b"PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\nA1 NOOP\r\n";
        let h = read_header(&mut input).await.unwrap();
        assert_eq!(h.addresses.unwrap().0, sa("1.2.3.4:10"));
        assert_eq!(input, b"A1 NOOP\r\n");
        let mut bytes = encode_v2(sa("1.2.3.4:10"), sa("5.6.7.8:20"));
        bytes.extend_from_slice(b"\x16\x03");
        let mut input = bytes.as_slice();
        read_header(&mut input).await.unwrap();
        assert_eq!(input, b"\x16\x03");
        let mut input: &[u8] = b"A1 LOGIN alice secret\r\n";
        assert!(read_header(&mut input).await.is_err());
    }

    #[test]
    fn networks() {
        let n: Network = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.200.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let n: Network = "127.0.0.1".parse().unwrap();
        assert!(n.contains("127.0.0.1".parse().unwrap()));
        assert!(!n.contains("127.0.0.2".parse().unwrap()));
        let n: Network = "2001:db8::/33".parse().unwrap();
        assert!(n.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!n.contains("2001:db8:8000::1".parse().unwrap()));
        let n: Network = "0.0.0.0/0".parse().unwrap();
        assert!(n.contains("192.0.2.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
