//! Prometheus metrics (OpenMetrics text) on the optional `metrics` address.
//!
//! Controller events (host health, prefix owner, ownership changes, detection and
//! switch times, VIP verdicts) are recorded as they happen; data-path counters are
//! read from the pinned maps, and the probes by outcome from the health checks, on
//! each scrape, so they are never stale and cost nothing in between.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{
        MetricType,
        counter::ConstCounter,
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};
use tracing::debug;

use super::conns::{Bound, Pacer};
use crate::{health::Outcomes, kernel::datapath::Maps, model::ProbeOutcome};

type Labels = Vec<(&'static str, String)>;

/// Names of the prefixes and hosts by data-path id, for labelling map counters;
/// replaced on every configuration reload.
#[derive(Debug, Default)]
pub struct Names {
    pub prefixes: Vec<String>,
    pub hosts: Vec<String>,
}

/// Cloneable handle: the controller records, the HTTP server encodes.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    host_up: Family<Labels, Gauge>,
    prefix_owner: Family<Labels, Gauge>,
    changes: Family<Labels, Counter>,
    detection: Histogram,
    switch: Histogram,
    names: Arc<RwLock<Names>>,
    vip_serving: Family<Labels, Gauge>,
    probes: Arc<RwLock<Option<Outcomes>>>,
}

/// Reads the probe counts of the health checks at scrape time.
struct ProbeCollector {
    probes: Arc<RwLock<Option<Outcomes>>>,
}

impl std::fmt::Debug for ProbeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeCollector").finish_non_exhaustive()
    }
}

/// Reads the data-path counters at scrape time.
struct MapCollector {
    maps: Mutex<Option<Maps>>,
    names: Arc<RwLock<Names>>,
}

impl std::fmt::Debug for MapCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapCollector").finish_non_exhaustive()
    }
}

impl Metrics {
    /// `maps`: handles on the pinned maps (the collector's own), if metrics of the
    /// data path are wanted.
    pub fn new(maps: Option<Maps>, names: Names) -> Metrics {
        let mut registry = Registry::with_prefix("ha");
        let host_up = Family::<Labels, Gauge>::default();
        registry.register("host_up", "Host health: 1 up, 0 down", host_up.clone());
        let prefix_owner = Family::<Labels, Gauge>::default();
        registry.register(
            "prefix_owner",
            "1 for the host that owns the prefix now",
            prefix_owner.clone(),
        );
        let changes = Family::<Labels, Counter>::default();
        registry.register(
            "ownership_changes",
            "Prefix ownership changes, by reason",
            changes.clone(),
        );
        // 100 µs .. ~3.3 s
        let detection = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "detection_seconds",
            "From the first failed probe to the decision",
            detection.clone(),
        );
        // 1 µs .. ~33 ms
        let switch = Histogram::new(exponential_buckets(0.000_001, 2.0, 16));
        registry.register(
            "switch_seconds",
            "From the decision to the data-path map written",
            switch.clone(),
        );
        let vip_serving = Family::<Labels, Gauge>::default();
        registry.register(
            "vip_serving",
            "0 while the host does not answer on the prefix's VIP (after a change)",
            vip_serving.clone(),
        );
        let names = Arc::new(RwLock::new(names));
        registry.register_collector(Box::new(MapCollector {
            maps: Mutex::new(maps),
            names: names.clone(),
        }));
        let probes = Arc::new(RwLock::new(None));
        registry.register_collector(Box::new(ProbeCollector {
            probes: probes.clone(),
        }));
        Metrics {
            registry: Arc::new(registry),
            host_up,
            prefix_owner,
            changes,
            detection,
            switch,
            names,
            vip_serving,
            probes,
        }
    }

    /// Where the probe counts are read at scrape time.
    pub fn set_probes(&self, probes: Outcomes) {
        *self.probes.write().unwrap_or_else(PoisonError::into_inner) = Some(probes);
    }

    /// `host`'s verdict on the VIP of `prefix` changed.
    pub fn vip_serving(&self, prefix: &str, host: &str, serving: bool) {
        self.vip_serving
            .get_or_create(&vec![
                ("prefix", prefix.to_owned()),
                ("host", host.to_owned()),
            ])
            .set(i64::from(serving));
    }

    pub fn set_names(&self, names: Names) {
        *self.names.write().unwrap_or_else(PoisonError::into_inner) = names;
    }

    pub fn host_health(&self, host: &str, up: bool) {
        self.host_up
            .get_or_create(&vec![("host", host.to_owned())])
            .set(i64::from(up));
    }

    /// `prefix` moved from `old` to `new` (`None`: no owner): two gauges change,
    /// whatever the number of hosts.
    pub fn owner(&self, prefix: &str, old: Option<&str>, new: Option<&str>) {
        let gauge = |host: &str| {
            self.prefix_owner
                .get_or_create(&vec![
                    ("prefix", prefix.to_owned()),
                    ("host", host.to_owned()),
                ])
                .clone()
        };
        if let Some(old) = old {
            gauge(old).set(0);
        }
        if let Some(new) = new {
            gauge(new).set(1);
        }
    }

    pub fn ownership_change(&self, reason: &str, detection: Option<Duration>, switch: Duration) {
        self.changes
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
        if let Some(detection) = detection {
            self.detection.observe(detection.as_secs_f64());
        }
        self.switch.observe(switch.as_secs_f64());
    }

    /// The exposition text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

impl Collector for MapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(maps) = maps.as_ref() else {
            return Ok(());
        };
        let names = self.names.read().unwrap_or_else(PoisonError::into_inner);
        if let Ok(counters) = maps.counter_totals() {
            let mut family = encoder.encode_descriptor(
                "ha_datapath_packets",
                "Packets by data-path verdict",
                None,
                MetricType::Counter,
            )?;
            for (counter, value) in counters {
                let labels = [("verdict", counter.name())];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        for (map, what, list) in [
            (&maps.pfx_stats, "prefix", &names.prefixes),
            (&maps.host_stats, "host", &names.hosts),
        ] {
            let rows: Vec<_> = list
                .iter()
                .enumerate()
                .filter_map(|(id, name)| Maps::traffic(map, id as u32).ok().map(|t| (name, t)))
                .collect();
            let packets_name = format!("ha_{what}_packets");
            let mut family = encoder.encode_descriptor(
                &packets_name,
                "Packets steered by the data path",
                None,
                MetricType::Counter,
            )?;
            for (name, traffic) in &rows {
                ConstCounter::new(traffic.packets)
                    .encode(family.encode_family(&[(what, name.as_str())])?)?;
            }
            let bytes_name = format!("ha_{what}_bytes");
            let mut family = encoder.encode_descriptor(
                &bytes_name,
                "Bytes steered by the data path",
                None,
                MetricType::Counter,
            )?;
            for (name, traffic) in &rows {
                ConstCounter::new(traffic.bytes)
                    .encode(family.encode_family(&[(what, name.as_str())])?)?;
            }
        }
        Ok(())
    }
}

impl Collector for ProbeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let probes = self.probes.read().unwrap_or_else(PoisonError::into_inner);
        let Some(probes) = probes.as_ref() else {
            return Ok(());
        };
        let rows = probes.read();
        let mut family = encoder.encode_descriptor(
            "ha_probes",
            "Health probes by host, check (host: its own address, vip: the VIPs through \
             it) and outcome; late, no-socket, interface-down and no-route are local \
             failures, discarded",
            None,
            MetricType::Counter,
        )?;
        for (host, own, vip) in &rows {
            for (check, counts) in [("host", own), ("vip", vip)] {
                for outcome in ProbeOutcome::ALL {
                    let labels = [
                        ("host", host.as_str()),
                        ("check", check),
                        ("outcome", outcome.name()),
                    ];
                    ConstCounter::new(counts[outcome.index()])
                        .encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// The metrics endpoint's bound: at most 64 connections, or an eighth of the
/// descriptor limit (it is reachable from the network).
const CONNECTIONS: (usize, usize) = (64, 8);
/// How long a client has to send its request, and then to take the answer.
const REQUEST_TIME: Duration = Duration::from_secs(1);
const ANSWER_TIME: Duration = Duration::from_secs(5);

/// Serves the metrics on `listener` over plain HTTP/1.1, one answer per connection,
/// with the connections bounded ([`super::conns`]): a client that sends nothing
/// within a second is closed without an answer.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let bound = Bound::new(CONNECTIONS.0, CONNECTIONS.1);
    let mut pacer = Pacer::new("the metrics endpoint");
    loop {
        let (mut stream, _) = pacer.next(|| listener.accept()).await;
        let mut slot = bound.admit().await;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // The request itself does not matter: every path answers the metrics.
            let mut request = [0u8; 1024];
            match slot.request(REQUEST_TIME, stream.read(&mut request)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(Ok(_)) => return,
                Ok(Err(err)) => return debug!("metrics client: {err}"),
                Err(cut) => return debug!("metrics client: {cut}"),
            }
            let (status, body) = match metrics.encode() {
                Ok(body) => ("200 OK", body),
                Err(_) => (
                    "500 Internal Server Error",
                    String::from("encoding failed\n"),
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let answer = format!("{head}{body}");
            match tokio::time::timeout(ANSWER_TIME, stream.write_all(answer.as_bytes())).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => debug!("metrics client: {err}"),
                Err(_) => debug!("metrics client: did not take the answer within {ANSWER_TIME:?}"),
            }
        });
    }
}

/// Binds the metrics address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_exposed_in_openmetrics_text() {
        let metrics = Metrics::new(None, Names::default());
        metrics.host_health("host2", false);
        metrics.owner("192.168.1.64/27", Some("host2"), Some("host1"));
        metrics.ownership_change(
            "failover",
            Some(Duration::from_millis(31)),
            Duration::from_micros(120),
        );
        let text = metrics.encode().expect("encode");
        for line in [
            r#"ha_host_up{host="host2"} 0"#,
            r#"ha_prefix_owner{prefix="192.168.1.64/27",host="host1"} 1"#,
            r#"ha_prefix_owner{prefix="192.168.1.64/27",host="host2"} 0"#,
            r#"ha_ownership_changes_total{reason="failover"} 1"#,
            "ha_detection_seconds_count 1",
            "ha_switch_seconds_count 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn the_endpoint_answers_http() {
        let listener = bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let metrics = Metrics::new(None, Names::default());
        metrics.host_health("host1", true);
        tokio::spawn(serve(listener, metrics));
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("ha_host_up{host=\"host1\"} 1"), "{answer}");
    }
}
