"""Operations an on-call engineer relies on: the nightly schedule fires on a real Prefect server, `serve` refuses
a server whose scheduler does not run, SIGINT and SIGTERM stop it cleanly, bad input exits 2 before any server
starts, a held store lock exits 3, and the temporary Prefect server dies with its parent, kill -9 included.

Every command runs as a subprocess with its own PREFECT_HOME; every process a test starts is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import polars as pl
import pytest

from pipelines.cli import EXIT_INVALID, EXIT_LOCKED, is_lock_conflict
from pipelines.store.layout import Store, StoreError, StoreLocked

REPO = Path(__file__).resolve().parents[1]
TEXT_ONLY = ["extract.modalities=['text']", "train.modalities=['text']", "data.demo=false"]


# --- helpers ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
               PREFECT_LOGGING_LEVEL="INFO", PYTHONUNBUFFERED="1", **extra)
    return env


def _sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipelines", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return done, time.monotonic() - started


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Stop a process this test started, by its PID."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no output)"


@contextmanager
def recording_api():
    """A stand-in Prefect API that answers everything and records each request: a test that expects a
    command to stop before it talks to any Prefect server asserts that nothing was recorded."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            requests.append(f"{self.command} {self.path}")
            body = b"true"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", requests
    finally:
        server.shutdown()
        server.server_close()


def _write_catalog(root: Path, rows: int = 6) -> tuple[Path, Path]:
    catalog, interactions = root / "catalog.parquet", root / "interactions.parquet"
    pl.DataFrame({"item_id": [f"i{k}" for k in range(rows)], "title": [f"title {k}" for k in range(rows)],
                  "description": [f"a thing number {k}" for k in range(rows)]}).write_parquet(catalog)
    pl.DataFrame({"user_id": ["u0", "u1"], "item_id": ["i0", "i1"],
                  "ts": pl.Series(["2026-11-01T00:00:00", "2026-11-02T00:00:00"]).str.to_datetime()}
                 ).write_parquet(interactions)
    return catalog, interactions


def _data_overrides(catalog: Path, interactions: Path, store: Path) -> list[str]:
    return [f"data.catalog='{catalog}'", f"data.interactions='{interactions}'", f"store.root='{store}'", *TEXT_ONLY]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# --- serve refuses what would never fire -------------------------------------------------------------------
def test_serve_refuses_to_start_without_a_real_prefect_server(tmp_path):
    done, seconds = _cli(["serve", "--cron", "* * * * *"], _env(tmp_path / "home"), timeout=90)
    assert done.returncode == EXIT_INVALID, done.stderr[-3000:]
    assert "PREFECT_API_URL is not set" in done.stderr and "never fire" in done.stderr
    assert "make server" in done.stderr and "make serve" in done.stderr
    assert "Traceback" not in done.stderr and "temporary Prefect server ready" not in done.stderr
    print(f"serve refused in {seconds:.1f}s")


def test_serve_refuses_a_prefect_api_that_does_not_answer(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/api"
    done, _ = _cli(["serve"], _env(tmp_path / "home", PREFECT_API_URL=url), timeout=90)
    assert done.returncode == EXIT_INVALID, done.stderr[-3000:]
    assert f"the Prefect API at {url} does not answer" in done.stderr and "make server" in done.stderr


def test_serve_rejects_a_bad_cron_before_talking_to_prefect(tmp_path):
    with recording_api() as (url, requests):
        done, _ = _cli(["serve", "--cron", "61 * * * *"], _env(tmp_path / "home", PREFECT_API_URL=url), timeout=90)
    assert done.returncode == EXIT_INVALID, done.stderr[-3000:]
    assert "--cron '61 * * * *'" in done.stderr and "not a valid schedule" in done.stderr
    assert requests == []


# --- pre-flight: bad input and a held lock come back before any Prefect server -----------------------------
@pytest.mark.parametrize("command", ["extract", "train", "nightly"])
def test_bad_input_exits_2_before_any_prefect_server(command, tmp_path):
    catalog, interactions = _write_catalog(tmp_path)
    store = tmp_path / "store"
    if command == "extract":  # a catalog without its text column
        pl.read_parquet(catalog).drop("title").write_parquet(catalog)
        expected = "column 'title': [missing column]"
    else:  # interactions without a timestamp; train finds embeddings in the store
        pl.read_parquet(interactions).drop("ts").write_parquet(interactions)
        (store / "current").mkdir(parents=True)
        (store / "current" / "text.parquet").touch()
        expected = "column 'ts': [missing column]"
    with recording_api() as (url, requests):
        done, seconds = _cli([command, *_sets(_data_overrides(catalog, interactions, store))],
                             _env(tmp_path / "home", PREFECT_API_URL=url), timeout=120)
    assert done.returncode == EXIT_INVALID, done.stderr[-3000:]
    assert expected in done.stderr and "nothing was written" in done.stderr
    assert requests == [], f"talked to Prefect before validating: {requests[:5]}"
    assert not (store / "runs").exists() and not (store / "embeddings").exists()
    print(f"{command}: exit 2 in {seconds:.1f}s")


def test_train_without_embeddings_says_run_extract_first(tmp_path):
    catalog, interactions = _write_catalog(tmp_path)
    with recording_api() as (url, requests):
        done, _ = _cli(["train", *_sets(_data_overrides(catalog, interactions, tmp_path / "store"))],
                       _env(tmp_path / "home", PREFECT_API_URL=url))
    assert done.returncode == EXIT_INVALID, done.stderr[-3000:]
    assert "no current embeddings" in done.stderr and "make extract" in done.stderr
    assert requests == []


@pytest.mark.parametrize("engine", ["prefect", "local"])
def test_a_held_store_lock_exits_3(engine, tmp_path):
    catalog, interactions = _write_catalog(tmp_path)
    store = tmp_path / "store"
    with recording_api() as (url, requests), Store(store).lock("extract pid 4242 (the test holds it)"):
        done, _ = _cli(["extract", "--engine", engine, *_sets(_data_overrides(catalog, interactions, store))],
                       _env(tmp_path / "home", PREFECT_API_URL=url))
    assert done.returncode == EXIT_LOCKED, done.stderr[-3000:]
    assert "is locked by another run (extract pid 4242 (the test holds it)" in done.stderr
    assert "Traceback" not in done.stderr and requests == []
    assert not (store / "embeddings").exists()


def test_lock_conflict_is_told_apart_from_other_store_errors():
    assert is_lock_conflict(StoreLocked("store/demo is locked by another run (train pid 1). Fix: wait"))
    assert not is_lock_conflict(StoreError("no published run in store/demo. Fix: run `make train`."))


# --- the temporary Prefect server never outlives its parent ------------------------------------------------
@pytest.mark.flow
@pytest.mark.timeout(300)
def test_temporary_prefect_server_dies_with_its_parent_on_kill_9(tmp_path):
    catalog, interactions = _write_catalog(tmp_path, rows=400)
    args = [sys.executable, "-m", "pipelines", "extract", *_sets(_data_overrides(catalog, interactions,
                                                                                  tmp_path / "store"))]
    out = tmp_path / "cli.log"
    parent, servers = None, []
    try:
        with open(out, "w") as fh:
            parent = subprocess.Popen(args, cwd=REPO, env=_env(tmp_path / "home"), stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and parent.poll() is None:
            servers = [pid for pid in _descendants(parent.pid) if "uvicorn" in _cmdline(pid)]
            port = next((c.split("--port ")[1].split()[0] for c in map(_cmdline, servers) if "--port " in c), None)
            if port:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        else:
            pytest.fail(f"no temporary server answered while the parent ran:\n{_tail(out)}")
        assert len(servers) == 1, f"one temporary server per run, found {[_cmdline(p) for p in servers]}"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=20)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(map(_alive, servers)):
            time.sleep(0.2)
        assert not any(map(_alive, servers)), f"temporary server {servers} outlived its parent (kill -9)"
    finally:
        _stop(parent, signal.SIGKILL)
        for pid in servers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# --- the nightly schedule fires on a real Prefect server ---------------------------------------------------
def _ignore_sigint() -> None:
    """What `serve &` in a shell script does to the child (and what made the old `serve` deaf to SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _wait_for(predicate, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n" + "\n".join(f"--- {p.name}\n{_tail(p)}"
                                                                                  for p in logs))


def _flow_runs(api: str, states: list[str]) -> list[dict]:
    body = {"deployments": {"name": {"any_": ["mmrec-nightly"]}}, "flow_runs": {"state": {"type": {"any_": states}}}}
    try:
        response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10)
    except httpx.HTTPError:
        return []
    return response.json() if response.status_code == 200 else []


def _deployment(api: str) -> dict:
    return httpx.get(f"{api}/deployments/name/nightly/mmrec-nightly", timeout=10).json()


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.flow
@pytest.mark.timeout(600)
def test_served_nightly_deployment_fires_on_a_real_prefect_server(tmp_path):
    from tests.extract_helpers import make_demo, overrides_for

    demo = make_demo(tmp_path)
    overrides = overrides_for(demo, tmp_path / "store", ("text",),
                              ["train.modalities=['text']", "train.tune.trials=1", "train.item_cold.enabled=false"])
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_log, serve_log, term_log = tmp_path / "server.log", tmp_path / "serve.log", tmp_path / "serve-term.log"
    server = serve = serve_term = None
    try:
        with open(server_log, "w") as fh:
            server = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                                       "127.0.0.1", "--port", str(port)], cwd=REPO, env=_env(tmp_path / "server-home"),
                                      stdout=fh, stderr=subprocess.STDOUT)
        _wait_for(lambda: _healthy(api), 180, "`prefect server start`", [server_log])
        serve_env = _env(tmp_path / "serve-home", PREFECT_API_URL=api)
        with open(serve_log, "w") as fh:
            serve = subprocess.Popen([sys.executable, "-m", "pipelines", "serve", "--cron", "* * * * *",
                                      *_sets(overrides)], cwd=REPO, env=serve_env, stdout=fh,
                                     stderr=subprocess.STDOUT, preexec_fn=_ignore_sigint)

        def completed() -> bool:
            bad = _flow_runs(api, ["FAILED", "CRASHED"])
            assert not bad, f"scheduled run failed: {bad[0]['state']}\n{_tail(serve_log)}"
            assert serve.poll() is None, f"serve exited with {serve.returncode}\n{_tail(serve_log)}"
            return bool(_flow_runs(api, ["COMPLETED"]))

        _wait_for(completed, 300, "a COMPLETED run of the scheduled mmrec-nightly deployment", [serve_log, server_log])
        run = _flow_runs(api, ["COMPLETED"])[0]
        assert run["auto_scheduled"] and run["parameters"]["overrides"] == overrides
        assert Store(tmp_path / "store").latest_run().exists()

        serve.send_signal(signal.SIGINT)  # Ctrl-C, even for a process started in the background
        assert serve.wait(timeout=60) == 0, _tail(serve_log)
        assert "SIGINT received" in serve_log.read_text() and "Traceback" not in serve_log.read_text()
        assert _deployment(api)["paused"] is True  # nothing piles up while no process serves it

        with open(term_log, "w") as fh:  # SIGTERM (systemd's stop) as well
            serve_term = subprocess.Popen([sys.executable, "-m", "pipelines", "serve", "--cron", "0 2 * * *",
                                           *_sets(overrides)], cwd=REPO, env=serve_env, stdout=fh,
                                          stderr=subprocess.STDOUT)
        _wait_for(lambda: "Ctrl-C or SIGTERM stops it" in term_log.read_text(), 120, "the second serve", [term_log])
        assert _deployment(api)["paused"] is False  # serving again resumes the schedule
        time.sleep(2)
        serve_term.send_signal(signal.SIGTERM)
        assert serve_term.wait(timeout=60) == 0, _tail(term_log)
        assert "SIGTERM received" in term_log.read_text() and "Traceback" not in term_log.read_text()

        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        assert server.poll() is not None
    finally:
        for proc in (serve, serve_term, server):
            _stop(proc)
    print(json.dumps({"flow_run": run["name"], "expected_start": run["expected_start_time"],
                      "total_run_time_s": run["total_run_time"]}))
