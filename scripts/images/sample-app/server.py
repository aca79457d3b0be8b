#!/usr/bin/env python3
"""ops-sandbox sample app.

Env: PORT (3000), VERSION, STARTUP_DELAY (s, 0), HEALTH_PATH (/health),
DRAIN_SECONDS (10), FAIL_MODE (never-healthy | exit | wrong-port | route-5xx).
GET HEALTH_PATH -> 200 {"status":"ok","version":...}; /stats -> connections accepted and requests
served; any other path -> 200 {"version":...,"path":...,"hostname":...}; /slow sleeps first: ?s=N
seconds (1, at most 60).
HTTP/1.1 with keep-alive, as Node (Next.js), Tomcat and uvicorn serve: an idle connection is closed
after IDLE_TIMEOUT (5 s, Node's default).
SIGTERM/SIGINT: stop accepting, close idle keep-alive connections, finish in-flight requests
(<= DRAIN_SECONDS; each answered with Connection: close), exit 0.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT") or 3000)
VERSION = os.environ.get("VERSION") or "dev"
STARTUP_DELAY = float(os.environ.get("STARTUP_DELAY") or 0)
HEALTH_PATH = os.environ.get("HEALTH_PATH") or "/health"
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS") or 10)
FAIL_MODE = (os.environ.get("FAIL_MODE") or "").strip()
IDLE_TIMEOUT = float(os.environ.get("IDLE_TIMEOUT") or 5)
HOSTNAME = socket.gethostname()

stop_requested = threading.Event()
inflight_lock = threading.Condition()
inflight = 0
# Open connections that wait for their next request (socket -> True), closed at once on SIGTERM.
idle = {}
counters = {"connections": 0, "requests": 0}


def log(msg):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} sample-app[{VERSION}] {msg}", flush=True)


class Handler(BaseHTTPRequestHandler):
    server_version = "ops-sandbox-sample-app"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT  # an idle keep-alive connection is closed after this long
    # TCP_NODELAY, as Node, uvicorn and Tomcat set: the status line, headers and body go out in separate writes, and
    # on a kept-alive connection Nagle's algorithm would hold the body for the peer's delayed ACK (~40 ms).
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with inflight_lock:
            counters["connections"] += 1

    def handle_one_request(self):
        # Between requests the connection is idle: SIGTERM closes it then, never under a request.
        with inflight_lock:
            if stop_requested.is_set():
                self.close_connection = True
                return
            idle[self.connection] = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        finally:
            with inflight_lock:
                idle.pop(self.connection, None)
        if not self.raw_requestline:
            self.close_connection = True
            return
        with inflight_lock:
            counters["requests"] += 1
        if len(self.raw_requestline) > 65536 or not self.parse_request():
            return
        getattr(self, "do_" + self.command, self._handle)()
        self.wfile.flush()

    def _send(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        if stop_requested.is_set():
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self):
        # What the client sent is read to its end, so the next request on a kept-alive connection starts in step.
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True  # not worth parsing here: the connection goes after this response
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def _handle(self):
        self._read_body()
        path = self.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            if FAIL_MODE == "never-healthy":
                self._send(500, {"status": "unhealthy", "version": VERSION})
            else:
                self._send(200, {"status": "ok", "version": VERSION})
            return
        if path == "/stats":
            with inflight_lock:
                self._send(200, {"version": VERSION, **counters})
            return
        if path == "/slow" or path.startswith("/slow/"):
            query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
            try:
                time.sleep(min(60.0, max(0.0, float(query.get("s", "1")))))
            except ValueError:
                time.sleep(1)
        if FAIL_MODE == "route-5xx":
            self._send(500, {"error": "route-5xx", "version": VERSION, "path": self.path})
            return
        self._send(200, {"version": VERSION, "path": self.path, "hostname": HOSTNAME})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, fmt, *args):
        log(f"{self.address_string()} {fmt % args}")


class Server(ThreadingHTTPServer):
    """Counts accepted connections until their handler thread is done."""

    allow_reuse_address = True
    daemon_threads = True
    # listen() backlog: Python's default of 5 drops SYNs under a few dozen concurrent clients (1 s retransmits);
    # Node (Next.js) uses 511, uvicorn 2048, Tomcat 100.
    request_queue_size = 128

    def process_request(self, request, client_address):
        global inflight
        with inflight_lock:
            inflight += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        global inflight
        try:
            super().process_request_thread(request, client_address)
        finally:
            with inflight_lock:
                inflight -= 1
                inflight_lock.notify_all()


def on_signal(signum, _frame):
    log(f"received {signal.Signals(signum).name}, draining")
    stop_requested.set()


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if FAIL_MODE == "exit":
        log("FAIL_MODE=exit: exiting with status 1")
        sys.exit(1)
    if STARTUP_DELAY > 0:
        log(f"starting in {STARTUP_DELAY:g}s")
        if stop_requested.wait(STARTUP_DELAY):
            log("stopped during startup")
            return 0

    port = PORT + 1 if FAIL_MODE == "wrong-port" else PORT
    httpd = Server(("0.0.0.0", port), Handler)
    serve = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serve.start()
    log(f"listening on 0.0.0.0:{port} (health {HEALTH_PATH}, fail mode {FAIL_MODE or 'none'})")

    while not stop_requested.wait(3600):
        pass

    httpd.shutdown()       # stop the accept loop
    httpd.server_close()   # close the listening socket: new connections are refused
    with inflight_lock:    # idle keep-alive connections go now; busy ones after their response
        for conn in list(idle):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    deadline = time.monotonic() + DRAIN_SECONDS
    with inflight_lock:
        while inflight > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                log(f"drain timeout, {inflight} request(s) still in flight")
                break
            inflight_lock.wait(left)
    log("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
