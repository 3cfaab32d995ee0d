"""Times the sweep's two heaviest query shapes against one Prometheus (data from gen.py): the due
pods named in one `pod=~"a|b|..."` alternation, the due namespaces with `pod=~".+"`, and the whole
fleet. Prints one PROMQL line per query: median of five, series and answer bytes.

    python3 query.py URL LABEL NAMESPACES PODS
"""

import json
import random
import sys
import time
import urllib.parse
import urllib.request

from gen import pod_name

CPU = ('sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{namespace=~"{ns}", '
       'pod=~"{pod}", container!="", container!="POD"}}[60s]))')
MEM = ('sum by (namespace, pod) (last_over_time(container_memory_working_set_bytes{{namespace=~"{ns}", '
       'pod=~"{pod}", container!="", container!="POD"}}[60s]))')


def timed(url: str, promql: str, span: int, now: int) -> tuple[float, int, int]:
    body = urllib.parse.urlencode(
        {"query": promql, "start": now - span, "end": now, "step": 15}).encode()
    runs = []
    for _ in range(5):
        t = time.monotonic()
        raw = urllib.request.urlopen(url + "/api/v1/query_range", data=body, timeout=300).read()
        runs.append(time.monotonic() - t)
    answer = json.loads(raw)
    if answer.get("status") != "success":
        sys.exit(f"query failed: {answer}")
    runs.sort()
    return runs[2], len(answer["data"]["result"]), len(raw)


def main() -> None:
    url, label = sys.argv[1], sys.argv[2]
    namespaces, pods = int(sys.argv[3]), int(sys.argv[4])
    now = int(time.time()) // 15 * 15 - 30
    everyone = [(n, pod_name(n, p)) for n in range(namespaces) for p in range(pods)]
    # A 5 s tick at a 30 s interval: a sixth of the fleet is due, spread over every namespace.
    due = random.Random(1).sample(everyone, len(everyone) // 6)
    all_ns = "|".join(f"bench-{n}" for n in range(namespaces))
    few_ns = "|".join(f"bench-{n}" for n in range(max(1, namespaces // 5)))
    shapes = [
        (f"named {len(due)} due pods", all_ns, "|".join(p for _, p in due)),
        (f"{max(1, namespaces // 5)} namespaces, pod=~.+", few_ns, ".+"),
        (f"all {len(everyone)} pods, pod=~.+", all_ns, ".+"),
    ]
    for what, template, span in [("cpu 2m", CPU, 120), ("memory 30m", MEM, 1800)]:
        for shape, ns, pod in shapes:
            d, n, size = timed(url, template.format(ns=ns, pod=pod), span, now)
            print(f"PROMQL prometheus={label} query={what.replace(' ', '_')} shape=\"{shape}\" "
                  f"median_ms={d * 1000:.0f} series={n} answer_mb={size / 1e6:.2f}")


if __name__ == "__main__":
    main()
