"""Alertmanager webhook receiver for e2e/latency/run: appends one JSON line per firing alert, with
the wall-clock time it arrived, to the file named on the command line.

    python3 hook.py PORT FILE
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, FILE = int(sys.argv[1]), sys.argv[2]


class Hook(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def do_POST(self):
        now = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            doc = json.loads(body)
        except ValueError as e:
            print(f"hook: undecodable payload ({e}), ignored", file=sys.stderr)
            self.send_response(400)
            self.end_headers()
            return
        with open(FILE, "a") as f:
            for a in doc.get("alerts", []):
                if a.get("status") == "firing":
                    f.write(json.dumps({"received": now, "labels": a.get("labels", {}),
                                        "startsAt": a.get("startsAt")}) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Hook).serve_forever()
