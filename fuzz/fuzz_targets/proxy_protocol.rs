//! The PROXY protocol v1/v2 header parser: any bytes, no panic; a complete
//! header never claims more bytes than it was given, an incomplete one
//! asks for more (and a bounded amount); what encode_v2 writes parses back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauthbearer_proxy::proxy_protocol::{encode_v2, parse, Parsed};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Complete(_, len)) => assert!(len <= data.len()),
        Ok(Parsed::Incomplete(need)) => {
            assert!(need > data.len());
            assert!(need <= 16 + 65_535);
        }
        Err(_) => {}
    }
    if data.len() >= 12 {
        let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
        let src = SocketAddr::new(ip(&data[0..4]), port(&data[8..10]));
        let dst = SocketAddr::new(ip(&data[4..8]), port(&data[10..12]));
        let encoded = encode_v2(src, dst);
        match parse(&encoded) {
            Ok(Parsed::Complete(h, len)) => {
                assert_eq!(len, encoded.len());
                assert_eq!(h.addresses, Some((src, dst)));
            }
            other => panic!("encode_v2 output did not parse: {other:?}"),
        }
    }
});
