//! A real-Prometheus harness shared by the integration tests (`mod support;`) and the quality
//! benchmark (`examples/quality.rs` includes it with `#[path]`).
//!
//! * [`openmetrics`] writes series as OpenMetrics text that `promtool tsdb create-blocks-from
//!   openmetrics` accepts: one `# TYPE` line per metric family, all samples of a family contiguous,
//!   samples of a series in time order, `# EOF` at the end.
//! * [`TestProm::start`] backfills that text into a fresh TSDB and starts Debian's `prometheus` on it
//!   (no scrape targets), on a free local port; the process is killed when the value is dropped.
//!
//! Backfilled blocks are loaded when Prometheus starts, so they are written before it starts. Any
//! time range works (checked: samples a minute old are as queryable as samples from hours ago), but
//! callers keep their data in the past and query with explicit times, so nothing depends on the
//! wall clock or on Prometheus' head block.
#![allow(dead_code)]

pub mod k8s;
pub mod vm;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The `prometheus` binary: `$HOMEOSTAT_PROMETHEUS_BIN`, else Debian's.
pub fn prometheus_bin() -> String {
    std::env::var("HOMEOSTAT_PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into())
}

/// The `promtool` binary: `$HOMEOSTAT_PROMTOOL_BIN`, else Debian's.
pub fn promtool_bin() -> String {
    std::env::var("HOMEOSTAT_PROMTOOL_BIN").unwrap_or_else(|_| "/usr/bin/promtool".into())
}

/// The current unix time in whole seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as f64
}

/// A reference time for synthetic data: a whole minute at least three hours in the past.
pub fn past_anchor() -> f64 {
    ((unix_now() - 3.0 * 3600.0) / 60.0).floor() * 60.0
}

/// One series to backfill.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesData {
    /// The sample name, e.g. `container_cpu_usage_seconds_total`.
    pub name: String,
    /// Label pairs (any order; written sorted).
    pub labels: Vec<(String, String)>,
    /// `(unix seconds, value)`, any order; written sorted by time, duplicates dropped (last wins).
    pub samples: Vec<(f64, f64)>,
}

impl SeriesData {
    /// A series with the given labels and no samples yet.
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            samples: vec![],
        }
    }

    /// Adds a sample.
    pub fn push(&mut self, t: f64, v: f64) -> &mut Self {
        self.samples.push((t, v));
        self
    }

    /// Builder form of [`SeriesData::push`] over many points.
    pub fn with(mut self, points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        self.samples.extend(points);
        self
    }
}

/// The metric family of a sample name and its OpenMetrics type: `x_total` is a counter of family
/// `x`, anything else a gauge.
pub fn family_of(name: &str) -> (&str, &'static str) {
    match name.strip_suffix("_total") {
        Some(f) if !f.is_empty() => (f, "counter"),
        _ => (name, "gauge"),
    }
}

/// Escapes an OpenMetrics label value (`\`, `"` and newlines).
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Writes series as OpenMetrics text. Series are grouped by metric family (promtool rejects a family
/// whose samples are not contiguous), families and series sorted, samples sorted by time.
pub fn openmetrics(series: &[SeriesData]) -> String {
    let mut out = String::new();
    write_openmetrics(series, &mut out);
    out
}

/// [`openmetrics`] appending to `out`.
pub fn write_openmetrics(series: &[SeriesData], out: &mut String) {
    // family -> (type, [series index])
    let mut families: BTreeMap<&str, (&'static str, Vec<usize>)> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        let (family, kind) = family_of(&s.name);
        let entry = families.entry(family).or_insert((kind, vec![]));
        assert_eq!(
            entry.0, kind,
            "metric family {family} used both as a counter and as a gauge"
        );
        entry.1.push(i);
    }
    for (family, (kind, mut members)) in families {
        let _ = writeln!(out, "# TYPE {family} {kind}");
        members.sort_by_key(|i| (&series[*i].name, sorted_labels(&series[*i])));
        for i in members {
            let s = &series[i];
            let labels = sorted_labels(s)
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                .collect::<Vec<_>>()
                .join(",");
            let mut samples = s.samples.clone();
            samples.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Keep the last of equal timestamps (at millisecond resolution).
            let mut dedup: Vec<(i64, f64)> = Vec::with_capacity(samples.len());
            for (t, v) in samples {
                let ms = (t * 1000.0).round() as i64;
                match dedup.last_mut() {
                    Some(last) if last.0 == ms => last.1 = v,
                    _ => dedup.push((ms, v)),
                }
            }
            for (ms, v) in dedup {
                let _ = writeln!(
                    out,
                    "{}{{{labels}}} {} {}.{:03}",
                    s.name,
                    format_value(v),
                    ms.div_euclid(1000),
                    ms.rem_euclid(1000)
                );
            }
        }
    }
    out.push_str("# EOF\n");
}

fn sorted_labels(s: &SeriesData) -> Vec<(String, String)> {
    let mut l = s.labels.clone();
    l.sort();
    l
}

/// Installs rustls' ring provider (as `main` does); reqwest needs one to build a client.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An unauthenticated client of `url`.
pub fn client_for(url: &str, timeout: Duration) -> homeostat::prometheus::PromClient {
    install_crypto();
    let mut cfg = homeostat::prometheus::ClientConfig::new(url);
    cfg.timeout = timeout;
    homeostat::prometheus::PromClient::new(cfg).expect("a client")
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A minimal HTTP GET over a fresh connection: `(status, body)`.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A Prometheus serving backfilled data, killed on drop.
pub struct TestProm {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    /// Time spent in promtool.
    pub backfill_time: Duration,
    /// Time from spawning prometheus to `/-/ready`.
    pub startup_time: Duration,
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl TestProm {
    /// Backfills `openmetrics_text` with promtool and starts Prometheus on the result.
    /// Panics (with promtool's or Prometheus' own output) when either fails.
    pub fn start(openmetrics_text: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("homeostat-prom-")
            .tempdir()
            .expect("creating a temp dir");
        let input = dir.path().join("data.om");
        std::fs::write(&input, openmetrics_text).expect("writing the OpenMetrics file");
        Self::start_from_file(dir, &input)
    }

    /// Like [`TestProm::start`], with `extra` appended to `prometheus.yml` (e.g. a `remote_read`
    /// section).
    pub fn start_with_config(openmetrics_text: &str, extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("homeostat-prom-")
            .tempdir()
            .expect("creating a temp dir");
        let input = dir.path().join("data.om");
        std::fs::write(&input, openmetrics_text).expect("writing the OpenMetrics file");
        Self::start_from_file_with(dir, &input, extra)
    }

    /// Like [`TestProm::start`] for text already written to `input` inside `dir`.
    pub fn start_from_file(dir: tempfile::TempDir, input: &Path) -> Self {
        Self::start_from_file_with(dir, input, "")
    }

    fn start_from_file_with(dir: tempfile::TempDir, input: &Path, extra: &str) -> Self {
        let tsdb = dir.path().join("tsdb");
        let t = Instant::now();
        let out = Command::new(promtool_bin())
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(input)
            .arg(&tsdb)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "running {} (apt-get install prometheus): {e}",
                    promtool_bin()
                )
            });
        assert!(
            out.status.success(),
            "promtool tsdb create-blocks-from openmetrics failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let backfill_time = t.elapsed();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nscrape_configs: []\n{extra}"
            ),
        )
        .expect("writing prometheus.yml");
        // A port can be taken between probing and binding: try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log_path = dir.path().join(format!("prometheus-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("creating the log file");
            let log2 = log.try_clone().expect("cloning the log file handle");
            let t = Instant::now();
            let mut child = Command::new(prometheus_bin())
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", tsdb.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--storage.tsdb.retention.time=100y")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", prometheus_bin()));
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    eprintln!("prometheus on {addr} exited early ({status}); retrying");
                    break;
                }
                if matches!(
                    http_get(&addr, "/-/ready", Duration::from_secs(2)),
                    Ok((200, _))
                ) {
                    return Self {
                        child,
                        dir,
                        addr,
                        backfill_time,
                        startup_time: t.elapsed(),
                    };
                }
                if t.elapsed() > READY_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "prometheus on {addr} not ready within {READY_TIMEOUT:?}:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("prometheus would not start:\n{last_log}");
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The temp dir holding the input, the TSDB and the log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A client of this Prometheus with the given per-request timeout.
    pub fn client(&self, timeout: Duration) -> homeostat::prometheus::PromClient {
        client_for(&self.url(), timeout)
    }
}

impl Drop for TestProm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SplitMix64: a tiny seeded generator whose output never changes across versions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform integer in `[lo, hi]`.
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A fresh generator derived from this one and a salt (for independent streams).
    pub fn fork(&mut self, salt: u64) -> Self {
        Self::new(self.next_u64() ^ salt.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }
}

/// Deterministic noise in `[-1, 1]` for a key and a time (no state to carry around).
pub fn noise(key: u64, t: f64) -> f64 {
    let mut r = Rng::new(key ^ ((t * 1000.0).round() as i64 as u64).wrapping_mul(0x9E37_79B9));
    r.f64() * 2.0 - 1.0
}
