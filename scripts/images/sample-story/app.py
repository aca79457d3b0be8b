"""ops-sandbox sample story app: FastAPI on uvicorn (httptools, uvloop), as the story server runs.

The contract of the sandbox's sample apps (the same for frontend, backend and story):
env PORT (8000), VERSION, STARTUP_DELAY (s before listening), HEALTH_PATH (/health),
FAIL_MODE (never-healthy | exit | wrong-port | route-5xx), DRAIN_SECONDS (graceful shutdown cap, 10; 0 = exit at
once on SIGTERM, an app that does not drain).
Routes: HEALTH_PATH; .../stats (connections accepted, requests served); .../slow?s=N (sleep N s, 1, at most 60);
.../env?name=K (that variable's value); .../deps (a new connection to postgres and to redis each, as libpq's PG*
env and REDIS_HOST/REDIS_PASSWORD say: 200 when both answer, 503 naming the one that does not); anything else
echoes version, path and hostname. Never 404.
Keep-alive and SIGTERM are uvicorn's own: 5 s idle timeout; on SIGTERM it stops accepting, closes idle
connections, answers requests in flight with Connection: close and exits when they are done.
"""
import asyncio
import os
import signal
import socket
import sys
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

PORT = int(os.environ.get("PORT") or 8000)
VERSION = os.environ.get("VERSION") or "dev"
STARTUP_DELAY = float(os.environ.get("STARTUP_DELAY") or 0)
HEALTH_PATH = os.environ.get("HEALTH_PATH") or "/health"
FAIL_MODE = (os.environ.get("FAIL_MODE") or "").strip()
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS") or 10)
HOSTNAME = socket.gethostname()

# A connection is its client's address and port: the ASGI scope names no connection otherwise.
peers = set()
counters = {"requests": 0}

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def log(msg):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} sample-story[{VERSION}] {msg}", flush=True)


def reply(status, body):
    return JSONResponse(body, status_code=status, headers={"X-App-Version": VERSION})


@app.middleware("http")
async def count(request: Request, call_next):
    counters["requests"] += 1
    if request.client:
        peers.add((request.client.host, request.client.port))
    return await call_next(request)


@app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
async def anything(request: Request, path: str):
    await request.body()  # read what was sent, so a kept-alive connection stays in step
    route = request.url.path
    last = route.rstrip("/").rsplit("/", 1)[-1]
    if route == HEALTH_PATH:
        if FAIL_MODE == "never-healthy":
            return reply(500, {"status": "unhealthy", "version": VERSION})
        return reply(200, {"status": "ok", "version": VERSION})
    if last == "stats":
        return reply(200, {"version": VERSION, "connections": len(peers), "requests": counters["requests"]})
    if last == "env":
        name = request.query_params.get("name", "")
        return reply(200, {"name": name, "value": os.environ.get(name)})
    if last == "deps":
        status = await asyncio.to_thread(deps)
        return reply(200 if all(v == "ok" for v in status.values()) else 503, {"version": VERSION, **status})
    if last == "slow":
        try:
            seconds = min(60.0, max(0.0, float(request.query_params.get("s", "1"))))
        except ValueError:
            seconds = 1.0
        await asyncio.sleep(seconds)
    if FAIL_MODE == "route-5xx":
        return reply(500, {"error": "route-5xx", "version": VERSION, "path": route})
    return reply(200, {"version": VERSION, "path": route, "hostname": HOSTNAME})


def deps():
    """Postgres (SELECT 1) and redis (PING), each on a new connection with a 2 s timeout: "ok" or the error."""
    import psycopg2
    import redis

    out = {}
    try:
        with psycopg2.connect("", connect_timeout=2) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        conn.close()
        out["db"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        out["db"] = f"{type(e).__name__}: {str(e).strip()[:120]}"
    try:
        r = redis.Redis(host=os.environ.get("REDIS_HOST", "redis"), password=os.environ.get("REDIS_PASSWORD"),
                        socket_timeout=2, socket_connect_timeout=2)
        r.ping()
        r.close()
        out["redis"] = "ok"
    except Exception as e:  # noqa: BLE001
        out["redis"] = f"{type(e).__name__}: {str(e).strip()[:120]}"
    return out


class Server(uvicorn.Server):
    def handle_exit(self, sig, frame):
        if DRAIN_SECONDS <= 0:
            log(f"received {signal.Signals(sig).name}, DRAIN_SECONDS=0: exiting at once")
            os._exit(0)
        log(f"received {signal.Signals(sig).name}, draining (at most {DRAIN_SECONDS:g} s)")
        super().handle_exit(sig, frame)


def main():
    if FAIL_MODE == "exit":
        log("FAIL_MODE=exit: exiting with status 1")
        return 1
    if STARTUP_DELAY > 0:
        log(f"starting in {STARTUP_DELAY:g}s")
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        time.sleep(STARTUP_DELAY)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    port = PORT + 1 if FAIL_MODE == "wrong-port" else PORT
    log(f"listening on 0.0.0.0:{port} (health {HEALTH_PATH}, fail mode {FAIL_MODE or 'none'})")
    config = uvicorn.Config(
        app,
        host="0.0.0.0",
        port=port,
        timeout_graceful_shutdown=DRAIN_SECONDS,
        access_log=False,
        server_header=False,
        log_level="info",
    )
    Server(config).run()
    log("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
