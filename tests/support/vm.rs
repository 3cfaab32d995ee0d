//! A real VictoriaMetrics single-node serving imported series, for comparing its PromQL engine
//! (MetricsQL) with Prometheus' on the same data.
//!
//! The binary is `$HOMEOSTAT_VM_BIN`, else the one `e2e/victoriametrics/build` caches under
//! `~/.cache/homeostat/victoriametrics-<VM_VERSION>/bin/` (the version is read from
//! `e2e/cluster/lib.sh`). Series are imported through `/api/v1/import` (JSON lines, millisecond
//! timestamps), then `/internal/force_flush` makes them searchable at once.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{SeriesData, client_for, free_port, http_get};

/// The VictoriaMetrics version `e2e/victoriametrics/build` builds (`VM_VERSION` in `lib.sh`).
pub fn vm_version() -> String {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/cluster/lib.sh");
    std::fs::read_to_string(lib)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VM_VERSION=").map(str::to_string))
        })
        .unwrap_or_else(|| panic!("no VM_VERSION= line in {lib}"))
}

/// The `victoria-metrics` binary: `$HOMEOSTAT_VM_BIN`, else the cached build.
pub fn vm_bin() -> PathBuf {
    if let Ok(b) = std::env::var("HOMEOSTAT_VM_BIN") {
        return b.into();
    }
    let cache = std::env::var("HOMEOSTAT_CACHE").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/homeostat"),
        PathBuf::from,
    );
    cache
        .join(format!("victoriametrics-{}", vm_version()))
        .join("bin/victoria-metrics")
}

/// A minimal HTTP POST over a fresh connection: `(status, body)`.
pub fn http_post(
    addr: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
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

/// Series as `/api/v1/import` lines: one JSON object per series, samples sorted, timestamps in
/// milliseconds (the last of equal timestamps wins, as in [`super::openmetrics`]).
pub fn import_lines(series: &[SeriesData]) -> String {
    let mut out = String::new();
    for s in series {
        let mut metric = serde_json::Map::new();
        metric.insert("__name__".into(), s.name.clone().into());
        for (k, v) in &s.labels {
            metric.insert(k.clone(), v.clone().into());
        }
        let mut samples = s.samples.clone();
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut dedup: Vec<(i64, f64)> = Vec::with_capacity(samples.len());
        for (t, v) in samples {
            let ms = (t * 1000.0).round() as i64;
            match dedup.last_mut() {
                Some(last) if last.0 == ms => last.1 = v,
                _ => dedup.push((ms, v)),
            }
        }
        let line = serde_json::json!({
            "metric": metric,
            "values": dedup.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            "timestamps": dedup.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        });
        let _ = writeln!(out, "{line}");
    }
    out
}

/// A VictoriaMetrics single-node on a free local port, killed on drop.
pub struct TestVm {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    /// Time from spawning to `/health` answering.
    pub startup_time: Duration,
}

const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl TestVm {
    /// Starts VictoriaMetrics, imports `series` and waits until all of them are searchable.
    /// Panics with a clear message when the binary is missing (run `e2e/victoriametrics/build`)
    /// or VictoriaMetrics fails.
    pub fn start(series: &[SeriesData]) -> Self {
        let bin = vm_bin();
        assert!(
            bin.is_file(),
            "{} is missing: build it with e2e/victoriametrics/build (about 11 min cold), or point \
             HOMEOSTAT_VM_BIN at a victoria-metrics binary",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("homeostat-vm-")
            .tempdir()
            .expect("creating a temp dir");
        let vm = Self::spawn(&bin, dir);
        vm.import(series);
        vm
    }

    fn spawn(bin: &PathBuf, dir: tempfile::TempDir) -> Self {
        let mut last_log = String::new();
        // A port can be taken between probing and binding: try a few.
        for _ in 0..3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let log_path = dir.path().join(format!("vm-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("creating the log file");
            let log2 = log.try_clone().expect("cloning the log file handle");
            let t = Instant::now();
            let mut child = Command::new(bin)
                .arg(format!(
                    "-storageDataPath={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("-httpListenAddr={addr}"))
                .arg("-retentionPeriod=100y")
                .arg("-loggerLevel=WARN")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    eprintln!("victoria-metrics on {addr} exited early ({status}); retrying");
                    break;
                }
                if matches!(
                    http_get(&addr, "/health", Duration::from_secs(2)),
                    Ok((200, _))
                ) {
                    return Self {
                        child,
                        dir,
                        addr,
                        startup_time: t.elapsed(),
                    };
                }
                if t.elapsed() > READY_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "victoria-metrics on {addr} not ready within {READY_TIMEOUT:?}:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("victoria-metrics would not start:\n{last_log}");
    }

    fn import(&self, series: &[SeriesData]) {
        let body = import_lines(series);
        let t = Duration::from_secs(60);
        let (status, answer) = http_post(&self.addr, "/api/v1/import", body.as_bytes(), t)
            .expect("posting to /api/v1/import");
        assert!(
            status == 204 || status == 200,
            "/api/v1/import answered {status}: {answer}"
        );
        let (status, answer) =
            http_get(&self.addr, "/internal/force_flush", t).expect("GET /internal/force_flush");
        assert_eq!(status, 200, "/internal/force_flush answered {answer}");
        // Searchable once the series count covers every imported series.
        let want = series.iter().filter(|s| !s.samples.is_empty()).count();
        let started = Instant::now();
        loop {
            let (_, answer) =
                http_get(&self.addr, "/api/v1/series/count", t).expect("GET /api/v1/series/count");
            let got = serde_json::from_str::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["data"][0].as_u64())
                .unwrap_or(0) as usize;
            if got >= want {
                return;
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "only {got} of {want} imported series searchable after {READY_TIMEOUT:?}: {answer}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The temp dir holding the data and the log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A client of this VictoriaMetrics with the given per-request timeout.
    pub fn client(&self, timeout: Duration) -> homeostat::prometheus::PromClient {
        client_for(&self.url(), timeout)
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
