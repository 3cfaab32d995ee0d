"""The rounds and the figures of e2e/latency/run (see there). Two commands:

    drive.py rules NS     print the Prometheus alerting rules of the classic path
    drive.py run          drive BENCH_ROUNDS rounds of faults and hard negatives, print the figures

`run` reads BENCH_IMAGE, BENCH_OUT, BENCH_NS, BENCH_NODE_DIR, BENCH_PROM, BENCH_ROUNDS (10),
BENCH_DEADLINE (170 s), BENCH_SEED (1) from the environment and drives the cluster with kubectl.
"""
import calendar
import json
import math
import os
import random
import subprocess
import sys
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
        self.image, self.out, self.ns = e["BENCH_IMAGE"], e["BENCH_OUT"], e["BENCH_NS"]
        self.node_dir, self.prom = e["BENCH_NODE_DIR"], e["BENCH_PROM"]
        self.rounds = int(e.get("BENCH_ROUNDS", "10"))
        self.deadline = float(e.get("BENCH_DEADLINE", "170"))
        self.rng = random.Random(int(e.get("BENCH_SEED", "1")))
        self.onsets = []  # dicts: round, deployment, config, kind, pod, onset, duration
        self.rems = {}  # uid -> remediation
        self.log = open(os.path.join(self.out, "drive.log"), "a")

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
            "metadata": {"name": name, "namespace": self.ns},
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

    def policy(self, name, cfg):
        _, hold, params = cfg
        params = dict(params)
        return {
            "apiVersion": "homeostat.dev/v1alpha1", "kind": "RemediationPolicy",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "targetRef": {"kind": "Deployment", "name": name},
                "interval": "5s",
                "faults": [{"name": "runaway", "pattern": "RunawayProcess", "for": hold,
                            "params": params, "action": {"type": "RestartPod"}}],
                "verify": {"stableFor": "20s", "timeout": "90s", "maxAttempts": 1},
                "guards": {"dryRun": True, "cooldown": "30m"},
            },
        }

    def create_round(self, r):
        """Round r's Deployments (one fault and one negative per configuration) and policies."""
        made = []
        for i, cfg in enumerate(CONFIGS):
            tag = f"{cfg[0]}-{cfg[1]}".replace("adaptive-min30s", "amin30").replace("adaptive", "adapt")
            f = f"f{r:02d}-{tag}"
            kind = NEGATIVES[(r + i) % len(NEGATIVES)]
            n = f"n{r:02d}-{tag}-{kind}"
            d = self.rng.uniform(20, 40)
            self.set(f, "default.env", "")
            objs = [self.deployment(f, [("MODE", "idle")]), self.policy(f, cfg)]
            if kind == "burst":
                self.set(n, "default.env", "")
                objs += [self.deployment(n, [("MODE", "idle")])]
            else:
                # New pods spin for their first d seconds; the ones created now are held idle
                # by default.env until the onset.
                self.set(n, "default.env", "MODE=idle\n")
                objs += [self.deployment(n, [("MODE", "spin"), ("SPIN_FOR", f"{d:.0f}s")])]
            objs += [self.policy(n, cfg)]
            self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
            made.append({"cfg": cfg, "fault": f, "neg": n, "kind": kind, "d": d})
        return made

    def pods(self, dep):
        out = self.kubectl("get", "pods", "-n", self.ns, "-l", f"app={dep}", "-o", "json")
        items = json.loads(out)["items"]
        return sorted(p["metadata"]["name"] for p in items
                      if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"))

    def wait_running(self, deps, timeout=150):
        end = time.time() + timeout
        while time.time() < end:
            if all(len(self.pods(d)) == 3 for d in deps):
                return
            time.sleep(2)
        raise RuntimeError(f"Deployments {deps} not all at 3 running pods after {timeout} s")

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

    def record(self, **kw):
        self.onsets.append(kw)
        with open(os.path.join(self.out, "onsets.tsv"), "a") as f:
            f.write("\t".join(f"{k}={v}" for k, v in kw.items()) + "\n")

    def run(self):
        self.say(f"{self.rounds} rounds, {len(CONFIGS)} homeostat configurations, deadline {self.deadline:.0f} s")
        nxt = self.create_round(0)
        self.wait_running([m[k] for m in nxt for k in ("fault", "neg")])
        self.say("round 0 created; letting its pods pass homeostat's 60 s warm-up")
        time.sleep(75)
        old = []
        for r in range(self.rounds):
            cur = nxt
            t0 = time.time()
            nxt = self.create_round(r + 1) if r + 1 < self.rounds else []
            self.snapshot()
            # This round's schedule: (time, what, item).
            events = []
            for m in cur:
                events.append((t0 + self.rng.uniform(0, 15), "fault", m))
                events.append((t0 + self.rng.uniform(5, 80), m["kind"], m))
            events.sort(key=lambda e: e[0])
            for at, what, m in events:
                time.sleep(max(0.0, at - time.time()))
                if what == "fault":
                    pod = self.pods(m["fault"])[0]
                    self.set(m["fault"], f"{pod}.env", "MODE=spin\nTHREADS=1\n")
                    self.record(round=r, deployment=m["fault"], config=f"{m['cfg'][0]}/{m['cfg'][1]}",
                                kind="fault", pod=pod, onset=f"{time.time():.3f}", duration="")
                elif what == "burst":
                    pod = self.pods(m["neg"])[0]
                    self.set(m["neg"], f"{pod}.env", f"MODE=spin\nSPIN_FOR={m['d']:.0f}s\n")
                    self.record(round=r, deployment=m["neg"], config=f"{m['cfg'][0]}/{m['cfg'][1]}",
                                kind="burst", pod=pod, onset=f"{time.time():.3f}", duration=f"{m['d']:.0f}")
                else:
                    for pod in self.pods(m["neg"]):
                        self.set(m["neg"], f"{pod}.env", "MODE=idle\n")
                    self.unset(m["neg"], "default.env")
                    if what == "warmup":
                        self.kubectl("scale", "-n", self.ns, f"deployment/{m['neg']}", "--replicas=4")
                    else:
                        patch = {"spec": {"template": {"metadata": {"annotations": {"bench/rollout": str(r)}}}}}
                        self.kubectl("patch", "-n", self.ns, f"deployment/{m['neg']}", "--type=merge", "-p", json.dumps(patch))
                    self.record(round=r, deployment=m["neg"], config=f"{m['cfg'][0]}/{m['cfg'][1]}",
                                kind=what, pod="", onset=f"{time.time():.3f}", duration=f"{m['d']:.0f}")
            last_fault = max(float(o["onset"]) for o in self.onsets if o["round"] == r and o["kind"] == "fault")
            while time.time() < last_fault + self.deadline:
                time.sleep(5)
                self.snapshot()
            for m in cur:
                for pod in self.pods(m["fault"]):
                    self.set(m["fault"], f"{pod}.env", "MODE=idle\n")
            self.snapshot()
            # The previous round's objects have now been watched for two rounds: remove them.
            for m in old:
                for dep in (m["fault"], m["neg"]):
                    self.kubectl("delete", "-n", self.ns, f"deployment/{dep}", f"remediationpolicy/{dep}",
                                 "--wait=false", "--ignore-not-found", check=False)
            old = cur
            self.say(f"round {r} done ({time.time() - t0:.0f} s)")
        # Watch the last round's negatives a little longer, then score.
        end = time.time() + 60
        while time.time() < end:
            time.sleep(5)
            self.snapshot()
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
        faults = [o for o in self.onsets if o["kind"] == "fault"]
        negs = [o for o in self.onsets if o["kind"] != "fault"]
        lat = {}  # (path, hold) -> list of seconds (inf = not within the deadline)
        wrong = {}  # (path, hold) -> [wrong, total] on hard negatives
        wrong_fault = {}  # (path, hold) -> actions on a pod that was not the faulty one
        by_target = {}
        for rem in self.rems.values():
            by_target.setdefault(rem["spec"]["target"]["name"], []).append(rem)

        def created(rem):
            return calendar.timegm(time.strptime(rem["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))

        for o in faults:
            key = ("homeostat " + o["config"].split("/")[0], o["config"].split("/")[1])
            onset = float(o["onset"])
            rs = sorted(by_target.get(o["deployment"], []), key=created)
            hit = [created(x) - onset for x in rs if o["pod"] in x["spec"].get("pods", [])]
            miss = [x for x in rs if o["pod"] not in x["spec"].get("pods", [])]
            wrong_fault[key] = wrong_fault.get(key, 0) + len(miss)
            t = hit[0] if hit and hit[0] <= self.deadline else math.inf
            lat.setdefault(key, []).append(t)
            for theta in THETAS:
                for hold in ALERT_HOLDS:
                    name = alert_name(theta, hold)
                    akey = (f"alert theta={theta}", hold)
                    ts = [a["received"] - onset for a in alerts
                          if a["labels"].get("alertname") == name and a["labels"].get("pod") == o["pod"]
                          and a["received"] >= onset]
                    lat.setdefault(akey, []).append(min(ts) if ts and min(ts) <= self.deadline else math.inf)
                    sib = [a for a in alerts if a["labels"].get("alertname") == name
                           and a["labels"].get("pod", "").startswith(o["deployment"] + "-")
                           and a["labels"].get("pod") != o["pod"]]
                    wrong_fault[akey] = wrong_fault.get(akey, 0) + len(sib)
        for o in negs:
            key = ("homeostat " + o["config"].split("/")[0], o["config"].split("/")[1])
            w = wrong.setdefault(key, {})
            acted = bool(by_target.get(o["deployment"]))
            c = w.setdefault(o["kind"], [0, 0])
            c[0] += acted
            c[1] += 1
            for theta in THETAS:
                for hold in ALERT_HOLDS:
                    name = alert_name(theta, hold)
                    fired = any(a["labels"].get("alertname") == name
                                and a["labels"].get("pod", "").startswith(o["deployment"] + "-") for a in alerts)
                    c = wrong.setdefault((f"alert theta={theta}", hold), {}).setdefault(o["kind"], [0, 0])
                    c[0] += fired
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

        best = {}  # hold -> best alert median (the tuned alert path)
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
            rm = med / ref[1] if ref[1] and not math.isinf(ref[1]) else math.nan
            rp = p90 / ref[2] if ref[2] and not math.isinf(ref[2]) else math.nan
            print(f"LATENCY path='{path}' hold={hold} n={len(xs)} fired={fired} median_s={fmt(med)} p90_s={fmt(p90)} "
                  f"ratio_median={rm:.2f} ratio_p90={rp:.2f} vs='{ref[0]} {hold}' wrong_pod={wrong_fault.get((path, hold), 0)}")
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
        b.report()
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
