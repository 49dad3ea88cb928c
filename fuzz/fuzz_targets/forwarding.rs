//! The raw decoders of the forwarding checks, for what no crate here decodes: a
//! netlink datagram split into messages as their channel splits it, each message's
//! body read as an nf_tables base chain (`NFT_MSG_NEWCHAIN`), a tc filter
//! (`RTM_NEWTFILTER`) and an xfrm forward policy (`XFRM_MSG_NEWPOLICY`), whatever its
//! type says; and the same body as an iptables table (`IPT_SO_GET_INFO`'s answer,
//! then its entries).

#![no_main]

use std::ops::ControlFlow;

use ha_user::{fuzzing, kernel::forwarding::RawMessage};
use libfuzzer_sys::fuzz_target;
use rtnetlink::packet_core::NetlinkPayload;

/// The size of `struct ipt_getinfo`.
const GETINFO_LEN: usize = 84;

fuzz_target!(|data: &[u8]| {
    let sequence = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let split = fuzzing::datagram::<RawMessage>(data, sequence, |_, payload| {
        let NetlinkPayload::InnerMessage(RawMessage { body, .. }) = payload else {
            return Ok(ControlFlow::Continue(()));
        };
        match fuzzing::nft_chain(body.clone()) {
            Ok(Some(chain)) => {
                let _ = (chain.matters(), chain.runs_on("eth1"));
            }
            Ok(None) => {}
            Err(err) => {
                let _ = err.to_string();
            }
        }
        let _ = fuzzing::tc_filter(&body);
        let _ = fuzzing::xfrm_policy(&body);
        let (info, entries) = body.split_at(body.len().min(GETINFO_LEN));
        match fuzzing::xt_chains(info, entries, "filter") {
            Ok(chains) => {
                for chain in chains {
                    let _ = chain.matters();
                }
            }
            Err(err) => {
                let _ = err.to_string();
            }
        }
        Ok(ControlFlow::Continue(()))
    });
    if let Err(err) = split {
        let _ = err.to_string();
    }
});
