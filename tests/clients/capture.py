"""Records the request bodies the official clients send, into captured/<call>.json, for the
Rust server tests to replay (tests/serving.rs). Run with the clients' virtual environment:

    target/clients/venv/bin/python tests/clients/capture.py

(after `bash tests/clients/setup.sh`).

A local HTTP server takes the requests and answers each with an error, so the calls fail
after sending; only what they sent is kept."""

import json
import pathlib
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from calls import calls

seen = []


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", 0))
        seen.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        answer = json.dumps({"error": {"message": "captured", "type": "invalid_request_error"}})
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Recorder)
threading.Thread(target=server.serve_forever, daemon=True).start()
out = pathlib.Path(__file__).parent / "captured"
out.mkdir(exist_ok=True)
for name, call in calls(f"http://127.0.0.1:{server.server_port}/v1", "run"):
    seen.clear()
    try:
        call()
    except Exception:
        pass
    (out / f"{name}.json").write_text(json.dumps(seen[0], indent=2) + "\n")
    print(name, json.dumps(seen[0]["body"]))

# The Node package's calls, run by node with the packages of tests/clients/setup.sh.
url = f"http://127.0.0.1:{server.server_port}/v1"
here = pathlib.Path(__file__).parent
seen.clear()
subprocess.run(["node", str(here / "run_clients.mjs"), url, "run", "--capture"], check=True)
for name, request in zip(["node_completion", "node_chat_streamed"], seen):
    (out / f"{name}.json").write_text(json.dumps(request, indent=2) + "\n")
    print(name, json.dumps(request["body"]))
server.shutdown()
