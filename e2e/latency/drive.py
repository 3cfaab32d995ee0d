"""The rounds and the figures of e2e/latency/run (see there). Two commands:

    drive.py rules NS     print the Prometheus alerting rules of the classic path
    drive.py run          drive BENCH_ROUNDS rounds of faults and hard negatives, print the figures

`run` reads BENCH_IMAGE, BENCH_OUT, BENCH_NS, BENCH_NODE_DIR, BENCH_PROM, BENCH_ROUNDS (10),
BENCH_DEADLINE (160 s), BENCH_SEED (1), BENCH_BIN (the homeostat binary) from the environment and drives the cluster with kubectl.
"""
import calendar
import json
import math
import os
import random
import subprocess
import sys
import threading
import time

THETAS = [0.9, 0.5]  # rate(cpu[1m]) / limit above this: the issue's rule and a lowered one
ALERT_HOLDS = ["30s", "1m"]
# homeostat configurations: (name, for, params)
CONFIGS = [
    ("fixed", "30s", {}),
    ("fixed", "1m", {}),
    ("adaptive", "1m", {"hold": "Adaptive"}),  # minHold defaults to for/4 = 15 s
    ("adaptive-min30s", "1m", {"hold": "Adaptive", "minHold": "30s"}),
]
NEGATIVES = ["burst", "warmup", "rollout"]
CPU_LIMIT = "200m"


def alert_name(theta, hold):
    return f"CpuAtLimit_{int(theta * 100)}_{hold}"


def rules(ns):
    expr = (
        f'sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{namespace="{ns}", container!="", container!="POD"}}[1m]))'
        f' / on (namespace, pod) sum by (namespace, pod) (kube_pod_container_resource_limits{{namespace="{ns}", resource="cpu"}})'
    )
    out = ["groups:", "- name: latency", "  interval: 15s", "  rules:"]
    for theta in THETAS:
        for hold in ALERT_HOLDS:
            out += [
                f"  - alert: {alert_name(theta, hold)}",
                f"    expr: '{expr} > {theta}'",
                f"    for: {hold}",
                f"    labels: {{theta: '{theta}', hold: '{hold}'}}",
            ]
    print("\n".join(out))


def secs(d):
    return float(d[:-1]) * (60 if d.endswith("m") else 1)


class Bench:
    def __init__(self):
        e = os.environ
        if "BENCH_OUT" not in e:
            sys.exit("BENCH_OUT (the run's output directory) is not set: run through e2e/bench latency")
        self.out, self.ns = e["BENCH_OUT"], e.get("BENCH_NS", "latency")
        # Only `run` needs these (e2e/latency/run sets them); `report` reads the raw files.
        self.image, self.node_dir = e.get("BENCH_IMAGE", ""), e.get("BENCH_NODE_DIR", "")
        self.prom, self.bin = e.get("BENCH_PROM", ""), e.get("BENCH_BIN", "")
        self.rounds = int(e.get("BENCH_ROUNDS", "10"))
        self.deadline = float(e.get("BENCH_DEADLINE", "160"))
        self.rng = random.Random(int(e.get("BENCH_SEED", "1")))
        self.onsets = []  # dicts: round, deployment, kind, pod, onset, duration
        self.rems = {}  # uid -> remediation of the live operator
        self.due = []  # diagnose polls: {time, config, workload, pods}
        self.log = open(os.path.join(self.out, "drive.log"), "a")
        self.stop = threading.Event()

    def say(self, msg):
        line = f"[latency {time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        print(line, file=self.log, flush=True)

    def kubectl(self, *args, stdin=None, check=True):
        r = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def control(self, dep):
        return os.path.join(self.node_dir, "control", self.ns, dep)

    def set(self, dep, file, text):
        d = self.control(dep)
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, f".{file}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(d, file))

    def unset(self, dep, file):
        try:
            os.remove(os.path.join(self.control(dep), file))
        except FileNotFoundError:
            pass

    def deployment(self, name, env):
        envs = [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "CONTROL_DIR", "value": "/control"},
        ] + [{"name": k, "value": v} for k, v in env]
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.ns, "labels": {"bench": "latency"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": name}},
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "nodeSelector": {"homeostat.dev/node": "real"},
                        "tolerations": [{"key": "homeostat.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
                        "terminationGracePeriodSeconds": 2,
                        "enableServiceLinks": False,
                        "containers": [{
                            "name": "app", "image": self.image, "imagePullPolicy": "Never", "env": envs,
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                          "limits": {"cpu": CPU_LIMIT, "memory": "64Mi"}},
                            "volumeMounts": [{"name": "control", "mountPath": "/control"}],
                        }],
                        "volumes": [{"name": "control", "hostPath": {"path": self.control(name), "type": "DirectoryOrCreate"}}],
                    },
                },
            },
        }

    def policy(self, cfg, dry_run):
        name, hold, params = cfg
        return {
            "apiVersion": "homeostat.dev/v1alpha1", "kind": "RemediationPolicy",
            "metadata": {"name": f"{name}-{hold}", "namespace": self.ns},
            "spec": {
                "selector": {"kinds": ["Deployment"], "matchLabels": {"bench": "latency"}},
                "interval": "5s",
                "faults": [{"name": f"{name}-{hold}", "pattern": "RunawayProcess", "for": hold,
                            "params": dict(params), "action": {"type": "RestartPod"}}],
                "verify": {"stableFor": "20s", "timeout": "90s", "maxAttempts": 1},
                "guards": {"dryRun": dry_run, "cooldown": "1m", "maxActionsPerHour": 1000,
                           "relapseWindow": "1m"},
            },
        }

    def pods(self, dep):
        out = self.kubectl("get", "pods", "-n", self.ns, "-l", f"app={dep}", "-o", "json")
        items = json.loads(out)["items"]
        return sorted((p["metadata"]["name"] for p in items
                       if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")),
                      key=lambda n: n)

    def wait_pods(self, dep, n, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            ps = self.pods(dep)
            if len(ps) == n:
                return ps
            time.sleep(1)
        raise RuntimeError(f"{self.ns}/{dep}: not {n} running pods after {timeout} s")

    def snapshot(self):
        out = self.kubectl("get", "remediations.homeostat.dev", "-n", self.ns, "-o", "json", check=False)
        try:
            items = json.loads(out)["items"] if out else []
        except ValueError:
            items = []
        with open(os.path.join(self.out, "remediations.jsonl"), "a") as f:
            for it in items:
                uid = it["metadata"]["uid"]
                if uid not in self.rems:
                    self.rems[uid] = it
                    f.write(json.dumps(it) + "\n")

    def poll(self, files):
        """homeostat diagnose with every configuration's policy, every 5 s: when is each due."""
        args = [self.bin, "diagnose", "--prometheus-url", self.prom, "--namespace", self.ns, "--output", "json"]
        for f in files:
            args += ["--policy", f]
        with open(os.path.join(self.out, "diagnose.jsonl"), "a") as log:
            nxt = time.time()
            while not self.stop.is_set():
                nxt += 5.0
                t = time.time()
                r = subprocess.run(args, capture_output=True, text=True)
                if r.returncode != 0:
                    self.say(f"diagnose failed (retrying in 5 s): {r.stderr.strip()[:300]}")
                else:
                    for f in json.loads(r.stdout).get("findings", []):
                        if f.get("action", {}).get("type", "None") not in ("None", None):
                            cfg = f["verdicts"][0]["fault"] if f.get("verdicts") else "?"
                            row = {"time": t, "config": cfg, "workload": f["target"]["name"], "pods": f["pods"]}
                            self.due.append(row)
                            log.write(json.dumps(row) + "\n")
                    log.flush()
                self.stop.wait(max(0.0, nxt - time.time()))

    def record(self, **kw):
        self.onsets.append(kw)
        with open(os.path.join(self.out, "onsets.tsv"), "a") as f:
            f.write("\t".join(f"{k}={v}" for k, v in kw.items()) + "\n")

    def run(self):
        self.say(f"{self.rounds} rounds, one fault then one hard negative at a time, deadline {self.deadline:.0f} s")
        faults = [f"fault-{i}" for i in range(4)]
        objs = [self.deployment(f, [("MODE", "idle")]) for f in faults]
        objs.append(self.deployment("neg-burst", [("MODE", "idle")]))
        for n in ("neg-warmup", "neg-rollout"):
            # New pods spin for their first 30 s; the ones created now are held idle by default.env.
            self.set(n, "default.env", "MODE=idle\n")
            objs.append(self.deployment(n, [("MODE", "spin"), ("SPIN_FOR", "30s")]))
        for f in faults + ["neg-burst"]:
            self.set(f, "default.env", "")
        # The live operator acts (in dry run) with the alert path's hold; diagnose polls them all.
        live = [c for c in CONFIGS if c[0] == "fixed" and c[1] == "1m"][0]
        objs.append(self.policy(live, True))
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
        files = []
        for c in CONFIGS:
            path = os.path.join(self.out, f"policy-{c[0]}-{c[1]}.json")
            with open(path, "w") as f:
                json.dump(self.policy(c, True), f)
            files.append(path)
        for d in faults + ["neg-burst", "neg-warmup", "neg-rollout"]:
            self.wait_pods(d, 3)
        self.say("pods running; letting them pass homeostat's 60 s warm-up")
        time.sleep(70)
        poller = threading.Thread(target=self.poll, args=(files,), daemon=True)
        poller.start()
        for r in range(self.rounds):
            t0 = time.time()
            dep = faults[r % len(faults)]
            pod = self.pods(dep)[0]
            time.sleep(self.rng.uniform(0, 15))  # a random phase against scrapes, rules and sweeps
            self.set(dep, f"{pod}.env", "MODE=spin\nTHREADS=1\n")
            onset = time.time()
            self.record(round=r, deployment=dep, kind="fault", pod=pod, onset=f"{onset:.3f}", duration="")
            while time.time() < onset + self.deadline:
                time.sleep(5)
                self.snapshot()
            self.set(dep, f"{pod}.env", "MODE=idle\n")
            kind = NEGATIVES[r % len(NEGATIVES)]
            d = self.rng.uniform(20, 40)
            if kind == "burst":
                pod = self.pods("neg-burst")[0]
                self.set("neg-burst", f"{pod}.env", f"MODE=spin\nSPIN_FOR={d:.0f}s\n")
            else:
                dep = f"neg-{kind}"
                d = 30.0
                pods = self.pods(dep)
                for p in pods:
                    self.set(dep, f"{p}.env", "MODE=idle\n")
                self.unset(dep, "default.env")
                if kind == "warmup":
                    # Back to 3 (the previous warm-up's pod goes), then one more that warms up.
                    self.kubectl("scale", "-n", self.ns, f"deployment/{dep}", "--replicas=3")
                    pods = self.wait_pods(dep, 3)
                    for p in pods:
                        self.set(dep, f"{p}.env", "MODE=idle\n")
                    self.kubectl("scale", "-n", self.ns, f"deployment/{dep}", "--replicas=4")
                else:
                    patch = {"spec": {"template": {"metadata": {"annotations": {"bench/rollout": str(r)}}}}}
                    self.kubectl("patch", "-n", self.ns, f"deployment/{dep}", "--type=merge", "-p", json.dumps(patch))
                pod = ""
            self.record(round=r, deployment=f"neg-{kind}", kind=kind, pod=pod, onset=f"{time.time():.3f}",
                        duration=f"{d:.0f}")
            time.sleep(d + 15)
            if kind == "burst":
                self.set("neg-burst", f"{pod}.env", "MODE=idle\n")  # the next burst is a change of mode
            self.say(f"round {r} done ({time.time() - t0:.0f} s)")
        # Watch the last negative as long as the others were watched (into the next fault).
        end = time.time() + 75
        while time.time() < end:
            time.sleep(5)
            self.snapshot()
        self.stop.set()
        poller.join(timeout=30)
        self.report()

    def alerts(self):
        out = []
        try:
            with open(os.path.join(self.out, "alerts.jsonl")) as f:
                for line in f:
                    out.append(json.loads(line))
        except FileNotFoundError:
            pass
        return out

    def report(self):
        alerts = self.alerts()
        onsets = sorted(self.onsets, key=lambda o: float(o["onset"]))
        lat, wrong, wrong_pod = {}, {}, {}

        def created(rem):
            return calendar.timegm(time.strptime(rem["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))

        # Each event is watched from its onset to the next event on the same Deployment: what
        # fires in that span, on that Deployment, is its outcome.
        for i, o in enumerate(onsets):
            t = float(o["onset"])
            dep = o["deployment"]
            later = [float(x["onset"]) for x in onsets[i + 1:] if x["deployment"] == dep]
            until = later[0] if later else math.inf
            mine = lambda pod: pod.startswith(dep + "-")
            acts = {}  # path key -> [(delay, pods)]
            for c in CONFIGS:
                key = (f"homeostat {c[0]}", c[1])
                acts[key] = [(x["time"] - t, x["pods"]) for x in self.due
                             if x["config"] == f"{c[0]}-{c[1]}" and x["workload"] == dep and t <= x["time"] < until]
            key = ("homeostat operator fixed", "1m")
            acts[key] = [(created(x) - t, x["spec"].get("pods", [])) for x in self.rems.values()
                         if x["spec"]["target"]["name"] == dep and t - 1 <= created(x) < until]
            for theta in THETAS:
                for hold in ALERT_HOLDS:
                    name = alert_name(theta, hold)
                    acts[(f"alert theta={theta}", hold)] = [
                        (a["received"] - t, [a["labels"].get("pod", "")]) for a in alerts
                        if a["labels"].get("alertname") == name and mine(a["labels"].get("pod", ""))
                        and t <= a["received"] < until]
            for key, xs in acts.items():
                if o["kind"] == "fault":
                    right = sorted(x[0] for x in xs if o["pod"] in x[1])
                    lat.setdefault(key, []).append(right[0] if right and right[0] <= self.deadline else math.inf)
                    wrong_pod[key] = wrong_pod.get(key, 0) + sum(1 for x in xs if o["pod"] not in x[1])
                else:
                    c = wrong.setdefault(key, {}).setdefault(o["kind"], [0, 0])
                    c[0] += bool(xs)
                    c[1] += 1

        def q(xs, p):
            xs = sorted(xs)
            if not xs:
                return math.nan
            k = (len(xs) - 1) * p
            lo, hi = math.floor(k), math.ceil(k)
            if math.isinf(xs[hi]) or math.isinf(xs[lo]):
                return math.inf
            return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

        def fmt(x):
            return "never" if math.isinf(x) else f"{x:.1f}"

        best = {}  # hold -> the alert rule with the lowest median (the tuned alert path)
        for (path, hold), xs in lat.items():
            if path.startswith("alert"):
                m = q(xs, 0.5)
                if hold not in best or m < best[hold][1]:
                    best[hold] = (path, m, q(xs, 0.9))
        print()
        for (path, hold), xs in sorted(lat.items()):
            med, p90 = q(xs, 0.5), q(xs, 0.9)
            fired = sum(1 for x in xs if not math.isinf(x))
            ref = best.get(hold, ("", math.nan, math.nan))
            rm = med / ref[1] if not math.isinf(ref[1]) else math.nan
            rp = p90 / ref[2] if not math.isinf(ref[2]) else math.nan
            print(f"LATENCY path='{path}' hold={hold} n={len(xs)} fired={fired} median_s={fmt(med)} p90_s={fmt(p90)} "
                  f"ratio_median={rm:.2f} ratio_p90={rp:.2f} vs='{ref[0]} {hold}' wrong_pod={wrong_pod.get((path, hold), 0)} "
                  f"all_s={','.join(fmt(x) for x in xs)}")
        for (path, hold), kinds in sorted(wrong.items()):
            k = sum(c[0] for c in kinds.values())
            n = sum(c[1] for c in kinds.values())
            per = " ".join(f"{kind}={c[0]}/{c[1]}" for kind, c in sorted(kinds.items()))
            print(f"NEGATIVES path='{path}' hold={hold} wrong={k}/{n} rate={100.0 * k / max(n, 1):.1f}% {per}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "rules":
        rules(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "run":
        b = Bench()
        missing = [k for k in ("BENCH_IMAGE", "BENCH_NODE_DIR", "BENCH_PROM", "BENCH_BIN") if not os.environ.get(k)]
        if missing:
            sys.exit(f"{', '.join(missing)} not set: run through e2e/bench latency")
        b.run()
    elif len(sys.argv) >= 2 and sys.argv[1] == "report":
        # Re-score a finished run from its raw files: drive.py report (BENCH_OUT etc. set).
        b = Bench()
        with open(os.path.join(b.out, "onsets.tsv")) as f:
            for line in f:
                kv = dict(x.split("=", 1) for x in line.rstrip("\n").split("\t"))
                kv["round"] = int(kv["round"])
                b.onsets.append(kv)
        with open(os.path.join(b.out, "remediations.jsonl")) as f:
            for line in f:
                it = json.loads(line)
                b.rems[it["metadata"]["uid"]] = it
        with open(os.path.join(b.out, "diagnose.jsonl")) as f:
            b.due = [json.loads(line) for line in f]
        b.report()
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
