//! The kernel routes a start-up may change, as they were, to put back if it fails.
//!
//! A start-up changes only the routes the ownership rule of [`super::routes`] lets
//! it touch: the main-table, metric-0 route of each configured prefix, and `ha`'s
//! own routes of prefixes that left the configuration. [`RouteSnapshot::take`] keeps
//! those routes as the kernel reported them, every attribute (protocol, gateway,
//! interface, scope, preferred source, metrics, flags); [`RouteSnapshot::restore`]
//! deletes a route of ours where there was none, and puts back, from the kernel's
//! own message, a route that is missing or differs. Routes of other prefixes, other
//! metrics and other tables are not read, so never written.

use std::collections::HashMap;

use ipnet::Ipv4Net;
use rtnetlink::{
    Handle,
    packet_route::route::{RouteAttribute, RouteFlags, RouteMessage},
};

use super::routes::{self, RouteError};

/// The metric-0 main-table routes of some prefixes, as they were.
#[derive(Debug)]
pub struct RouteSnapshot {
    /// Every prefix covered, with its route then (`None`: it had none).
    before: HashMap<Ipv4Net, Option<RouteMessage>>,
}

/// What [`RouteSnapshot::restore`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Routes of ours deleted (there was no route for their prefix).
    pub deleted: usize,
    /// Routes put back as they were.
    pub put_back: usize,
}

impl RouteSnapshot {
    /// The routes of `prefixes` and every route of ours (protocol
    /// [`routes::ROUTE_PROTO`]): what a start-up may touch.
    pub async fn take(
        handle: &Handle,
        prefixes: impl IntoIterator<Item = Ipv4Net>,
    ) -> Result<RouteSnapshot, RouteError> {
        let mut current = metric_zero(handle).await?;
        let mut before: HashMap<Ipv4Net, Option<RouteMessage>> = HashMap::new();
        for prefix in prefixes {
            before.insert(prefix, current.remove(&prefix).map(|(_, message)| message));
        }
        for (prefix, (ours, message)) in current {
            if ours {
                before.insert(prefix, Some(message));
            }
        }
        Ok(RouteSnapshot { before })
    }

    /// How many prefixes the snapshot covers.
    pub fn len(&self) -> usize {
        self.before.len()
    }

    pub fn is_empty(&self) -> bool {
        self.before.is_empty()
    }

    /// Puts every covered prefix's route back as it was. Every prefix is tried; the
    /// error is the first that failed.
    pub async fn restore(&self, handle: &Handle) -> Result<Restored, RouteError> {
        let current = metric_zero(handle).await?;
        let mut restored = Restored::default();
        let mut first_error = None;
        for (prefix, before) in &self.before {
            let now = current.get(prefix);
            let result = match (before, now) {
                (None, None) => Ok(()),
                // Someone else's route, made meanwhile: not ours to delete.
                (None, Some((false, _))) => Ok(()),
                (None, Some((true, _))) => routes::remove(handle, *prefix).await.map(|removed| {
                    restored.deleted += usize::from(removed);
                }),
                (Some(before), now) => {
                    let before = replayable(before);
                    if now.is_some_and(|(_, message)| replayable(message) == before) {
                        Ok(())
                    } else {
                        put_back(handle, *prefix, before).await.map(|()| {
                            restored.put_back += 1;
                        })
                    }
                }
            };
            if let Err(err) = result {
                tracing::warn!("{err:#}");
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(restored),
        }
    }
}

/// The metric-0 main-table routes by prefix: whether each is ours, and its message.
async fn metric_zero(
    handle: &Handle,
) -> Result<HashMap<Ipv4Net, (bool, RouteMessage)>, RouteError> {
    Ok(routes::dump_messages(handle)
        .await?
        .into_iter()
        .filter(|(route, _, _)| route.metric == 0)
        .map(|(route, _, message)| (route.prefix, (route.is_ours(), message)))
        .collect())
}

/// `message` as a request that recreates the route: without what only the kernel
/// reports (cache information, the state flags `dead`, `linkdown`, `offload`, `trap`,
/// which a request may not carry), and without the gateway and interface a route
/// through a nexthop object reports beside its id (a request gives one or the other).
pub(crate) fn replayable(message: &RouteMessage) -> RouteMessage {
    let mut message = message.clone();
    message.header.flags &= RouteFlags::Onlink | RouteFlags::Pervasive;
    let by_nexthop_id = message
        .attributes
        .iter()
        .any(|attr| matches!(attr, RouteAttribute::NhId(_)));
    message.attributes.retain(|attr| match attr {
        RouteAttribute::CacheInfo(_) => false,
        RouteAttribute::Gateway(_) | RouteAttribute::Oif(_) | RouteAttribute::MultiPath(_) => {
            !by_nexthop_id
        }
        _ => true,
    });
    message
}

async fn put_back(
    handle: &Handle,
    prefix: Ipv4Net,
    message: RouteMessage,
) -> Result<(), RouteError> {
    handle
        .route()
        .add(message)
        .replace()
        .execute()
        .await
        .map_err(|source| RouteError::PutBack { prefix, source })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rtnetlink::{RouteMessageBuilder, packet_route::route::RouteAddress};

    use super::*;

    #[test]
    fn a_replayed_route_keeps_what_a_request_may_carry() {
        let mut message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::new(192, 168, 1, 64), 27)
            .gateway(Ipv4Addr::new(192, 168, 1, 3))
            .output_interface(4)
            .build();
        message.header.flags = RouteFlags::Onlink | RouteFlags::Linkdown | RouteFlags::Dead;
        let replayed = replayable(&message);
        assert_eq!(replayed.header.flags, RouteFlags::Onlink);
        assert!(
            replayed
                .attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                    192, 168, 1, 3
                ))))
        );
        assert!(replayed.attributes.contains(&RouteAttribute::Oif(4)));

        message.attributes.push(RouteAttribute::NhId(7));
        let by_id = replayable(&message);
        assert!(by_id.attributes.contains(&RouteAttribute::NhId(7)));
        assert!(
            !by_id
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::Oif(_)))
        );
    }
}
