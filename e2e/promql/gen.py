"""Writes OpenMetrics for `promtool tsdb create-blocks-from openmetrics`: cAdvisor-shaped CPU and
memory series of NAMESPACES x PODS pods, one point every 15 s over the last MINUTES minutes.

    python3 gen.py NAMESPACES PODS MINUTES > data.om
"""

import random
import sys
import time


def pod_name(n: int, p: int) -> str:
    """Deployment-style names: ten pods per ReplicaSet, as the scale benchmark creates."""
    return f"w{n:02d}{p // 10:02d}-5d8f7c9b4-{p:05d}"


def main() -> None:
    namespaces, pods, minutes = (int(a) for a in sys.argv[1:4])
    now = int(time.time()) // 15 * 15
    points = range(now - minutes * 60, now + 1, 15)
    out = sys.stdout
    rng = random.Random(1)
    labels = [
        f'namespace="bench-{n}",pod="{pod_name(n, p)}",container="app"'
        for n in range(namespaces)
        for p in range(pods)
    ]
    out.write("# TYPE container_cpu_usage_seconds_total counter\n")
    for lab in labels:
        v = rng.random() * 100
        for t in points:
            v += 1.5
            out.write(f"container_cpu_usage_seconds_total{{{lab}}} {v:.3f} {t}\n")
    out.write("# TYPE container_memory_working_set_bytes gauge\n")
    for lab in labels:
        for t in points:
            out.write(f"container_memory_working_set_bytes{{{lab}}} {100e6 + rng.random() * 1e6:.0f} {t}\n")
    out.write("# EOF\n")


if __name__ == "__main__":
    main()
