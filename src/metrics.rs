//! Prometheus metrics, served on their own port (`metrics_listen`), off
//! the gRPC port. Labels are bounded: RPC names, status codes, resolution
//! methods, rejection reasons, and source domains only from the configured
//! `allowed_domains` (anything else is `external`), so no visitor data and
//! no unbounded label values ever reach a time series.

use std::net::SocketAddr;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusBuilder;

use crate::cookie::AllowedDomains;
use crate::identity::{Method, Rejected, Rejection};

/// Starts the exporter's HTTP listener (`GET /metrics`).
pub fn install(addr: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        )?
        .install()
        .map_err(|e| anyhow::anyhow!("metrics listener on {addr}: {e}"))?;
    describe();
    Ok(())
}

fn describe() {
    metrics::describe_counter!(
        "sessionbridge_requests_total",
        "gRPC calls by RPC and status code"
    );
    metrics::describe_histogram!(
        "sessionbridge_request_duration_seconds",
        metrics::Unit::Seconds,
        "gRPC call latency by RPC"
    );
    metrics::describe_counter!(
        "sessionbridge_resolutions_total",
        "identities resolved, by method and source domain: the stitch rate"
    );
    metrics::describe_counter!(
        "sessionbridge_rejected_evidence_total",
        "evidence present but refused, by kind and reason"
    );
    metrics::describe_gauge!("sessionbridge_store_up", "1 when the store answers");
    metrics::describe_gauge!(
        "sessionbridge_resident_memory_bytes",
        metrics::Unit::Bytes,
        "resident memory of the process (VmRSS), sampled every few seconds"
    );
    metrics::describe_gauge!(
        "sessionbridge_store_disk_bytes",
        metrics::Unit::Bytes,
        "size of the embedded store's files, sampled every few seconds (sled only)"
    );
}

/// Records one call's outcome.
pub fn rpc(name: &'static str, code: tonic::Code, started: Instant) {
    let code = format!("{code:?}");
    metrics::counter!("sessionbridge_requests_total", "rpc" => name, "code" => code).increment(1);
    metrics::histogram!("sessionbridge_request_duration_seconds", "rpc" => name)
        .record(started.elapsed().as_secs_f64());
}

/// The `source` label: where the visitor came from, bounded to the
/// operator's own domains. A configured entry names the label, never the
/// referring host itself, so an entry that is a public suffix (`github.io`)
/// still makes one label, not one per site under it.
pub fn source_label(allowed: &AllowedDomains, host: &str, referer_host: Option<&str>) -> String {
    let Some(referer) = referer_host.map(str::to_ascii_lowercase) else {
        return "none".into();
    };
    let site = |h: &str| psl::domain_str(h).unwrap_or(h).to_string();
    let (from, here) = (site(&referer), site(host));
    if from == here {
        return "self".into();
    }
    match allowed.entry_for(&referer) {
        Some(entry) => entry.to_string(),
        None => "external".into(),
    }
}

/// Records a resolution and the evidence it refused.
pub fn resolution(method: Method, source: String, rejected: &[Rejected]) {
    metrics::counter!(
        "sessionbridge_resolutions_total",
        "method" => method_label(method),
        "source" => source
    )
    .increment(1);
    for r in rejected {
        metrics::counter!(
            "sessionbridge_rejected_evidence_total",
            "evidence" => match r.source {
                crate::identity::Source::Evidence(m) => method_label(m),
                crate::identity::Source::Input(i) => i.field(),
            },
            "reason" => reason_label(r.reason)
        )
        .increment(1);
    }
}

/// Resident memory of this process in bytes (`VmRSS` of
/// `/proc/self/status`), None where there is no such file.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Samples the process's resident memory and the store's size on disk.
pub fn memory(store_disk_bytes: Option<u64>) {
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("sessionbridge_resident_memory_bytes").set(rss as f64);
    }
    if let Some(disk) = store_disk_bytes {
        metrics::gauge!("sessionbridge_store_disk_bytes").set(disk as f64);
    }
}

/// Whether the store answers.
pub fn store_up(up: bool) {
    metrics::gauge!("sessionbridge_store_up").set(if up { 1.0 } else { 0.0 });
}

fn method_label(m: Method) -> &'static str {
    match m {
        Method::Cookie => "cookie",
        Method::HandoffToken => "token",
        Method::GaLinker => "ga_linker",
        Method::UserId => "user_id",
        Method::Email => "email",
        Method::GaCookie => "ga_cookie",
        Method::ReferrerBridge => "bridge",
        Method::SessionIdParameter => "session_id_param",
        Method::New => "new",
        Method::NoConsent => "no_consent",
    }
}

fn reason_label(r: Rejection) -> &'static str {
    match r {
        Rejection::Malformed => "malformed",
        Rejection::BadSeal => "bad_seal",
        Rejection::UnknownKey => "unknown_key",
        Rejection::Expired => "expired",
        Rejection::Replayed => "replayed",
        Rejection::WrongAudience => "wrong_audience",
        Rejection::FingerprintMismatch => "fingerprint_mismatch",
        Rejection::NotFound => "not_found",
        Rejection::NotAllowed => "not_allowed",
        Rejection::NoConsent => "no_consent",
        Rejection::TooLarge => "too_large",
        Rejection::LinkedToUser => "linked_to_user",
        Rejection::Conflict => "conflict",
        Rejection::FromTheFuture => "from_the_future",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_in_bytes() {
        let rss = resident_bytes().expect("Linux has /proc/self/status");
        // A test binary takes more than a MiB and less than a few GiB.
        assert!((1 << 20..4 << 30).contains(&rss), "{rss}");
        // It grows when memory is touched.
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        let grown = resident_bytes().unwrap();
        assert!(grown >= rss + (32 << 20), "{rss} -> {grown}");
        drop(block);
    }

    #[test]
    fn source_labels_are_bounded_by_the_configuration() {
        let allowed =
            AllowedDomains::new(["example.com".to_string(), "github.io".to_string()]).unwrap();
        let label = |r: &str| source_label(&allowed, "www.example.com", Some(r));
        assert_eq!(label("https://shop.example.com"[8..].as_ref()), "self");
        assert_eq!(label("alice.github.io"), "github.io");
        assert_eq!(label("bob.github.io"), "github.io");
        assert_eq!(label("evil.example"), "external");
        assert_eq!(source_label(&allowed, "www.example.com", None), "none");
        let open = AllowedDomains::default();
        assert_eq!(
            source_label(&open, "a.example", Some("b.example")),
            "external"
        );
    }
}
