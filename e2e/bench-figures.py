"""The SCALE and SCALE_WRITES lines of one operator's measured window (called by e2e/bench):

    bench-figures.py DESIGN STATE_DIR Q0 Q1 QD0 QD1 CPU0 CPU1 WALL_S RSS_MIB RSS_WARM_MIB CLK_TCK LOAD

DESIGN names the metric files STATE_DIR/m{0,1}-DESIGN.txt (the operator's /metrics at the start
and end of the window) and w{0,1}-DESIGN.txt (apiserver writes); Q and QD are Prometheus' own
query counter and handler seconds at both ends. A design starting with "baseline" is the
per-policy operator (no sweep metrics).
"""
import math, re, sys
design, d = sys.argv[1:3]
q0, q1, qd0, qd1, c0, c1, wall, rss, rss_warm, hz = map(float, sys.argv[3:13])
load = sys.argv[13].split()
def metrics(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        key, _, val = line.rpartition(" ")
        try:
            out[key] = float(val)
        except ValueError:
            pass
    return out
m0, m1 = metrics(f"{d}/m0-{design}.txt"), metrics(f"{d}/m1-{design}.txt")
def delta(key):
    return m1.get(key, 0.0) - m0.get(key, 0.0)
def quantile(hist, q):
    les = []
    for k in m1:
        m = re.fullmatch(r'%s_bucket\{le="([^"]+)"\}' % hist, k)
        if m:
            les.append((math.inf if m.group(1) == "+Inf" else float(m.group(1)), k))
    les.sort()
    counts = [(le, delta(k)) for le, k in les]
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return math.nan
    prev_le, prev_c = 0.0, 0.0
    for le, c in counts:
        if c >= q * total:
            if le == math.inf:
                return math.inf
            return (prev_le + (le - prev_le) * (q * total - prev_c) / max(c - prev_c, 1e-9)) * 1000
        prev_le, prev_c = le, c
    return math.nan
def writes(path):
    return dict((k, float(v)) for k, v in (l.strip().split("=") for l in open(path) if "=" in l))
w0, w1 = writes(f"{d}/w0-{design}.txt"), writes(f"{d}/w1-{design}.txt")
wd = {k: w1[k] - w0.get(k, 0.0) for k in w1 if w1[k] - w0.get(k, 0.0) > 0}
if not design.startswith("baseline"):
    ticks = delta("homeostat_sweep_duration_seconds_count")
    lat = "homeostat_sweep_decided_seconds"
    tick_ms = quantile("homeostat_sweep_duration_seconds", 0.99)
else:
    # The per-policy design has no tick: one policy interval (30 s), in which every policy is
    # evaluated once.
    ticks = wall / 30.0
    lat = "homeostat_evaluation_duration_seconds"
    tick_ms = math.nan
ok = delta('homeostat_evaluations_total{result="ok"}')
nodata = delta('homeostat_evaluations_total{result="no_data"}')
def top(hist):  # the last finite bucket bound, in ms
    return max(float(k.split('"')[1]) for k in m1
               if k.startswith(hist + '_bucket{le="') and "+Inf" not in k) * 1000
def f(x, hist):  # beyond the last finite bucket: ">" that bound
    if math.isnan(x):
        return "na"
    return f">{top(hist):.0f}" if math.isinf(x) else f"{x:.0f}"
print(f"SCALE design={design} queries_per_tick={(q1 - q0) / max(ticks, 1):.1f} "
      f"queries_per_30s={(q1 - q0) / wall * 30:.0f} "
      f"p50_eval_ms={f(quantile(lat, 0.5), lat)} p99_eval_ms={f(quantile(lat, 0.99), lat)} "
      f"tick_ms={f(tick_ms, 'homeostat_sweep_duration_seconds')} "
      f"rss_mib={rss:.0f} rss_warm_mib={rss_warm:.0f} cpu_cores={(c1 - c0) / hz / wall:.3f} "
      f"apiserver_writes_per_min={sum(wd.values()) / wall * 60:.1f} "
      f"prometheus_ms_per_tick={(qd1 - qd0) * 1000 / max(ticks, 1):.0f} "
      f"evaluations_per_min={(ok + nodata) / wall * 60:.0f} "
      f"no_data_pct={100 * nodata / max(ok + nodata, 1):.1f} ticks={ticks:.0f} wall_s={wall:.0f} "
      f"load_avg={load[0]}/{load[1]}/{load[2]}")
print(f"SCALE_WRITES design={design} " + (" ".join(f"{k}={v / wall * 60:.1f}/min" for k, v in sorted(wd.items())) or "none"))
