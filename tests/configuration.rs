//! The configuration as deployments meet it: every setting reaches the Helm
//! chart or is left out of it on purpose, and the file, the environment and
//! the flags override one another in that order.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use sessionbridge::config::Config;

/// Settings the chart's ConfigMap does not render, and why.
const NOT_IN_CHART: &[(&str, &str)] = &[
    ("tls_cert", "the kubelet's gRPC probes cannot speak TLS; the chart guards the port with a bearer token"),
    ("tls_key", "goes with tls_cert"),
    ("tls_client_ca", "goes with tls_cert"),
    ("redis_urls", "holds credentials: set from store.redis.existingSecret as SESSIONBRIDGE_REDIS_URLS"),
    ("redis_connect_timeout_ms", "the default (1 s) suits an in-cluster Redis; the chart sets only the command timeout"),
    ("user_history", "the chart keeps the default (10 identities per user)"),
    ("sweep_interval_secs", "housekeeping period; the chart keeps the default (60 s)"),
    ("max_message_bytes", "requests are small; the chart keeps the default (64 KiB) that bounds memory per call"),
    ("handoff_param", "the chart keeps the default query parameter name (_sbt)"),
    ("handoff_default_ttl_secs", "requests set their own lifetime; the chart keeps the default (120 s)"),
    ("handoff_max_ttl_secs", "the chart keeps the default cap (one day)"),
    ("handoff_max_uses", "the chart keeps the default cap (10 uses)"),
    (
        "gpc_denies_analytics",
        "the chart keeps the default: Global Privacy Control denies the ad signals",
    ),
    (
        "handoff_passive_ttl_secs",
        "the chart keeps the default webhook lifetime (one day)",
    ),
    ("session_id_param", "used only with session_id_param_referrers, which the chart leaves off"),
    ("session_id_param_referrers", "off on purpose: a raw session id in a URL lets anyone who sees the link take over the session"),
];

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys of the TOML file the chart's ConfigMap renders.
fn chart_keys() -> BTreeSet<String> {
    let template = repo_file("helm/sessionbridge/templates/configmap.yaml");
    let (_, toml) = template
        .split_once("sessionbridge.toml: |")
        .expect("the ConfigMap renders sessionbridge.toml");
    toml.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("{{"))
        .filter_map(|l| l.split_once('='))
        .map(|(key, _)| key.trim().to_string())
        .collect()
}

#[test]
fn every_setting_is_in_the_chart_or_left_out_with_a_reason() {
    let chart = chart_keys();
    let keys: BTreeSet<String> = Config::KEYS.iter().map(|k| k.to_string()).collect();
    assert!(
        chart.len() > 10,
        "found too few keys in the ConfigMap: {chart:?}"
    );
    let unknown: Vec<_> = chart.difference(&keys).collect();
    assert!(
        unknown.is_empty(),
        "the ConfigMap renders keys the service does not know: {unknown:?}"
    );
    let left_out: BTreeSet<String> = NOT_IN_CHART.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(
        left_out.len(),
        NOT_IN_CHART.len(),
        "NOT_IN_CHART lists a key twice"
    );
    for (key, reason) in NOT_IN_CHART {
        assert!(
            keys.contains(*key),
            "NOT_IN_CHART lists {key:?}, not a setting"
        );
        assert!(
            !chart.contains(*key),
            "{key:?} is in the ConfigMap now: drop it from NOT_IN_CHART"
        );
        assert!(!reason.trim().is_empty(), "{key:?} needs a reason");
    }
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !chart.contains(*k) && !left_out.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "settings neither in helm/sessionbridge/templates/configmap.yaml nor in NOT_IN_CHART \
         (with the reason the chart leaves them out): {missing:?}"
    );
    // The one setting the chart passes another way.
    assert!(repo_file("helm/sessionbridge/templates/_helpers.tpl")
        .contains("- name: SESSIONBRIDGE_REDIS_URLS"));
}

/// Runs `sessionbridge` with `args` and `env`, none of the caller's own
/// `SESSIONBRIDGE_*` variables.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sessionbridge"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SESSIONBRIDGE_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("run sessionbridge")
}

/// The error a configuration that cannot start gives.
fn refusal(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    assert!(!out.status.success(), "started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_both() {
    // Each source states an identity lifetime the checks refuse; the error
    // names the value that won.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "identity_ttl_days = 500\n").unwrap();
    let file = file.to_str().unwrap();
    let env = [("SESSIONBRIDGE_IDENTITY_TTL_DAYS", "501")];
    let err = refusal(&["serve", "--config", file], &[]);
    assert!(err.contains("identity_ttl_days 500"), "{err}");
    let err = refusal(&["serve", "--config", file], &env);
    assert!(err.contains("identity_ttl_days 501"), "{err}");
    let err = refusal(
        &["serve", "--config", file, "--identity-ttl-days", "502"],
        &env,
    );
    assert!(err.contains("identity_ttl_days 502"), "{err}");
    // The file itself may come from the environment; lists are
    // comma-separated there.
    let err = refusal(&["serve"], &[("SESSIONBRIDGE_CONFIG", file)]);
    assert!(err.contains("identity_ttl_days 500"), "{err}");
    let err = refusal(
        &["serve"],
        &[("SESSIONBRIDGE_ALLOWED_DOMAINS", "example.com,not a domain")],
    );
    assert!(err.contains("\"not a domain\""), "{err}");
}

#[test]
fn help_shows_every_setting_with_its_default() {
    let out = run(&["serve", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for key in Config::KEYS {
        let flag = format!("--{} ", key.replace('_', "-"));
        let env = format!("[env: SESSIONBRIDGE_{}=]", key.to_ascii_uppercase());
        assert!(help.contains(&flag), "{flag} missing from:\n{help}");
        assert!(help.contains(&env), "{env} missing from:\n{help}");
    }
    for default in [
        "[default: 127.0.0.1:50051]",
        "[default: sessionbridge-data]",
        "[default: sbid]",
        "[default: granted]",
        "[default: interval]",
        "[default: 1800]",
    ] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }
    assert_eq!(help.matches("[default: ").count(), Config::KEYS.len());
}
