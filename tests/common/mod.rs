//! Test support: runs the real `sessionbridge` binary on an ephemeral port
//! with its own data directory, or the real server inside the test process
//! on a controllable clock ([`InProc`]), and connects gRPC clients to it.
#![allow(dead_code, unused_imports)]

mod inproc;
pub use inproc::{Browser, InProc};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sessionbridge::pb;
use sessionbridge::pb::session_bridge_service_client::SessionBridgeServiceClient;
use tonic::transport::Channel;

pub type Client = SessionBridgeServiceClient<Channel>;

/// A running server process, stopped (SIGKILL) when dropped.
pub struct Server {
    pub child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    stderr_log: PathBuf,
}

/// A channel to a server at `addr` (host:port), plaintext.
pub async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect")
}

/// Writes a key file into `dir` and returns its path.
pub fn keyfile(dir: &Path) -> PathBuf {
    let path = dir.join("keys.json");
    if !path.exists() {
        sessionbridge::keys::generate(&path, "test1").expect("keygen");
    }
    path
}

impl Server {
    /// Starts a server with `data_dir` and extra flags; waits until it
    /// announces its address.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(data_dir.to_path_buf(), args)
    }

    /// Starts a server whose flags name a port of their own (`{port}` in
    /// `extra` is replaced by a free one). A port found free can be taken
    /// by another process before the server binds it: then it tries again
    /// with another, up to five times.
    pub fn start_with_port(data_dir: &Path, extra: &[&str]) -> (Server, u16) {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let args: Vec<String> = extra
                .iter()
                .map(|s| s.replace("{port}", &port.to_string()))
                .collect();
            match Self::try_spawn(data_dir.to_path_buf(), args) {
                Ok(server) => return (server, port),
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free port after five tries: {last}");
    }

    fn spawn(data_dir: PathBuf, args: Vec<String>) -> Server {
        Self::try_spawn(data_dir, args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_spawn(data_dir: PathBuf, args: Vec<String>) -> Result<Server, String> {
        let stderr_log = data_dir.with_extension("stderr.log");
        let log = std::fs::File::create(&stderr_log).expect("stderr log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sessionbridge"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&args)
            .env("SESSIONBRIDGE_LOG", "sessionbridge=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sessionbridge");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let addr = match line.trim().strip_prefix("sessionbridge listening on ") {
            Some(a) => a.to_string(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(&stderr_log).unwrap_or_default();
                return Err(format!(
                    "server did not start; stdout {line:?}; stderr:\n{err}"
                ));
            }
        };
        Ok(Server {
            child: Some(child),
            addr,
            data_dir,
            args,
            stderr_log,
        })
    }

    /// The server's log so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.addr).await
    }

    pub async fn client(&self) -> Client {
        SessionBridgeServiceClient::new(self.channel().await)
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        child.wait().expect("wait")
    }

    /// Kills the process at once (SIGKILL), as a crash or an OOM kill would,
    /// and starts it again on the same directory with the same flags.
    pub fn crash_and_restart(mut self) -> Server {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Self::spawn(self.data_dir.clone(), self.args.clone())
    }

    /// Stops this server cleanly and starts it again on the same directory
    /// with the same flags (on a new port).
    pub fn restart(mut self) -> Server {
        let status = self.terminate();
        assert!(
            status.success(),
            "server exited with {status}:\n{}",
            self.stderr()
        );
        Self::spawn(self.data_dir.clone(), self.args.clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The User-Agent test requests send.
pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0";

/// A request context for `host` with a browser-like User-Agent.
pub fn ctx(host: &str, cookie_header: &str) -> pb::RequestContext {
    pb::RequestContext {
        host: host.into(),
        url: format!("https://{host}/"),
        user_agent: UA.into(),
        cookie_header: cookie_header.into(),
        client_ip: "203.0.113.7".into(),
        ..Default::default()
    }
}

/// The `name=value` pairs of Set-Cookie headers, joined into a Cookie header
/// as a browser would send them back.
pub fn cookie_header(cookies: &[pb::Cookie]) -> String {
    cookies
        .iter()
        .map(|c| format!("{}={}", c.name, c.value))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The field names of a status's BadRequest detail.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Every byte of every file under `dir`.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A throwaway `redis-server` on a free loopback port, with no persistence,
/// killed when dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    /// Starts (or restarts) a server on `port`.
    pub fn start_on(port: u16) -> Redis {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it (Debian: apt-get install redis-server); .ci/run does")
            });
        for _ in 0..100 {
            if redis_answers(port) {
                return Redis {
                    child: Some(child),
                    port,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server on port {port} did not answer");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (no shutdown), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `redis-cli` against this server; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every key and every value held by the Redis servers on `ports` (each
/// node of a cluster: a node's scan lists the keys it holds), read by type:
/// strings whole, sorted sets with their scores, sets, hashes and lists.
pub fn redis_dump(ports: &[u16]) -> String {
    let cli = |port: u16, args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut all = String::new();
    for &port in ports {
        let keys = cli(port, &["--scan", "--pattern", "*"]);
        for k in keys.lines() {
            all.push_str(k);
            all.push('\n');
            let value = match cli(port, &["TYPE", k]).trim() {
                "string" => cli(port, &["GET", k]),
                "zset" => cli(port, &["ZRANGE", k, "0", "-1", "WITHSCORES"]),
                "set" => cli(port, &["SMEMBERS", k]),
                "hash" => cli(port, &["HGETALL", k]),
                "list" => cli(port, &["LRANGE", k, "0", "-1"]),
                // Expired between the scan and the read.
                "none" => String::new(),
                other => panic!("unexpected key type {other} for {k}"),
            };
            all.push_str(&value);
        }
    }
    all
}

/// A three-node Redis Cluster on loopback (no replicas, no persistence).
pub struct RedisCluster {
    nodes: Vec<Child>,
    _dir: tempfile::TempDir,
    pub ports: Vec<u16>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for p in &ports {
            let conf = dir.path().join(format!("nodes-{p}.conf"));
            nodes.push(
                Command::new("redis-server")
                    .args([
                        "--port",
                        &p.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                    .arg(&conf)
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server"),
            );
        }
        let mut cluster = RedisCluster {
            nodes,
            _dir: dir,
            ports,
        };
        for p in &cluster.ports {
            for _ in 0..100 {
                if redis_answers(*p) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for _ in 0..200 {
            let ok = cluster.ports.iter().all(|p| {
                Command::new("redis-cli")
                    .args(["-p", &p.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ok {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for n in &mut cluster.nodes {
            let _ = n.kill();
        }
        panic!("the cluster did not reach cluster_state:ok");
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
    }
}
