//! Property tests: arbitrary or mutated bytes never panic any decoder, and
//! what the builders encode decodes back to the same fields (checked by our
//! decoder and by netlink-packet-netfilter 0.4).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctnetlink::consts::*;
use ctnetlink::{decode_buffer, encode_new, exercise_decoders, Conntrack, TcpState, Tuple};
use proptest::prelude::*;

const FIXTURE: &[u8] = include_bytes!("data/dump-6.18.bin");

fn addr(v6: bool, seed: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(seed))
    } else {
        IpAddr::V4(Ipv4Addr::from(seed as u32))
    }
}

prop_compose! {
    fn arb_ct()(v6 in any::<bool>(), s in any::<u128>(), d in any::<u128>(), kind in 0u8..3,
                sp in any::<u16>(), dp in any::<u16>(), id in any::<u16>(),
                status in proptest::option::of(any::<u32>()), timeout in proptest::option::of(any::<u32>()),
                st in proptest::option::of(0u8..12), mark in proptest::option::of(any::<u32>()),
                zone in proptest::option::of(any::<u16>())) -> Conntrack {
        let (src, dst) = (addr(v6, s), addr(v6, d));
        let t = match kind {
            0 => Tuple::tcp(src, sp, dst, dp),
            1 => Tuple::udp(src, sp, dst, dp),
            _ => Tuple::icmp(src, dst, 8, 0, id),
        };
        Conntrack { orig: t, reply: None, status, timeout, tcp_state: st.map(TcpState::from_u8), mark, zone }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise_decoders(&data);
    }

    #[test]
    fn mutated_capture_never_panics(start in 0usize..FIXTURE.len() - 4096, flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8), cut in 0usize..4096) {
        let mut buf = FIXTURE[start - start % 4..start - start % 4 + 4096].to_vec();
        // Start at a message boundary sometimes: the capture's first bytes.
        if start % 2 == 0 { buf = FIXTURE[..4096].to_vec(); }
        for (i, b) in flips { buf[i] = b; }
        buf.truncate(cut);
        exercise_decoders(&buf);
    }

    #[test]
    fn encode_decode_round_trip(ct in arb_ct()) {
        let mut w = ctnetlink::attr::Writer::new();
        encode_new(&mut w, &ct, 1, NLM_F_REQUEST);
        let mut got = Vec::new();
        decode_buffer(&w.buf, |e| { got.push(e.summary()?); Ok(()) }).unwrap();
        prop_assert_eq!(got.len(), 1);
        let f = got[0];
        prop_assert_eq!(f.family, ct.orig.family());
        prop_assert_eq!(f.orig, Some(ct.orig));
        prop_assert_eq!(f.reply, Some(ct.orig.reversed()));
        prop_assert_eq!(f.status.0, ct.status.map_or(0, |s| s | IPS_CONFIRMED));
        prop_assert_eq!(f.timeout, ct.timeout);
        prop_assert_eq!(f.tcp_state, ct.tcp_state);
        prop_assert_eq!(f.mark, ct.mark);
        prop_assert_eq!(f.zone, ct.zone);

        // The independent parser reads our bytes the same way.
        use netlink_packet_core::ParseableParametrized;
        use netlink_packet_netfilter::conntrack::{ConntrackAttribute as A, ConntrackMessage};
        use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};
        let theirs = NetfilterMessage::parse_with_param(&w.buf[16..], 0x0100).unwrap();
        let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) = theirs.inner else { panic!() };
        for a in attrs {
            match a {
                A::CtaTimeout(t) => prop_assert_eq!(Some(t), ct.timeout),
                A::CtaMark(m) => prop_assert_eq!(Some(m), ct.mark),
                A::CtaStatus(s) => prop_assert_eq!(Some(s.bits()), ct.status.map(|s| s | IPS_CONFIRMED)),
                _ => {}
            }
        }
    }
}
