"""Where a CLI run's Prefect API comes from, and the one server process this project ever starts itself.

- `PREFECT_API_URL` set (environment or the active Prefect profile): that server is used; nothing starts.
- unset: a temporary server (uvicorn, the same app Prefect's own temporary server runs) started here rather
  than by Prefect, so that it cannot outlive this process: on Linux the kernel kills it when its parent dies
  (PR_SET_PDEATHSIG), kill -9 included, and it is stopped at exit otherwise. Prefect's own lazily started
  temporary server is switched off for the run, so exactly one server starts per process.
- `serve` needs a real server (`make server`): a temporary server runs no scheduler, so a schedule served
  against it never fires.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.errors import PipelineError

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
SERVE_FIX = ("Fix: start a Prefect server with `make server` (its own terminal, or a systemd unit), then run "
             "`make serve`; or set PREFECT_API_URL=http://HOST:PORT/api to a running `prefect server start`.")
RUN_FIX = ("Fix: start that server (`make server`), point PREFECT_API_URL at a running one, or unset "
           "PREFECT_API_URL to let this command start a temporary server of its own.")


class PrefectAPIError(PipelineError):
    """No usable Prefect API for this command; the message says how to get one."""


def configured_api_url() -> str | None:
    """PREFECT_API_URL as Prefect resolves it (environment first, then the active profile)."""
    from prefect.settings import PREFECT_API_URL

    return os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value() or None


def check_health(api_url: str, fix: str, timeout: float = 5.0) -> None:
    import httpx

    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        raise PrefectAPIError(f"the Prefect API at {api_url} does not answer ({type(exc).__name__}: {exc}). "
                              f"{fix}") from exc
    if response.status_code >= 500:  # 401/403 (an API key problem) are left to Prefect's own, clearer error
        raise PrefectAPIError(f"the Prefect API at {api_url} answers /health with HTTP {response.status_code}. "
                              f"{fix}")


def require_scheduling_server() -> str:
    """The API URL of a running Prefect server, for `serve`; refuses Prefect's temporary server."""
    url = configured_api_url()
    if not url:
        raise PrefectAPIError("`serve` needs a running Prefect server, and PREFECT_API_URL is not set: Prefect "
                              "would start a temporary server whose scheduler does not run, so the schedule "
                              f"would never fire. {SERVE_FIX}")
    check_health(url, SERVE_FIX)
    return url


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent_fn():
    """A preexec_fn that asks the kernel to SIGKILL the child when the forking thread's process dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: no loading in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class TemporaryServer:
    """A Prefect API server on a free loopback port, owned by this process (dies with it)."""

    def __init__(self, startup_timeout: float | None = None):
        self.startup_timeout = startup_timeout or float(
            os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - stays open as the server subprocess's log

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _spawn(self) -> subprocess.Popen:
        import prefect

        self.port = _free_port()
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                   "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "error", "--lifespan", "on"]
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        # Its own session: a Ctrl-C meant for the run does not take the API away from under it first.
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                start_new_session=True, preexec_fn=_die_with_parent_fn())

    def _failure(self, why: str) -> PrefectAPIError:
        self._log.seek(0)
        tail = self._log.read()[-2000:].decode(errors="replace").strip()
        output = f"\n{tail}" if tail else ""
        return PrefectAPIError(f"the temporary Prefect server {why}; nothing was run.{output}\nFix: raise "
                               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (a loaded machine starts it "
                               "slowly), or run `make server` and set PREFECT_API_URL to it.")

    def start(self) -> str:
        import httpx

        log.info("starting a temporary Prefect server (set PREFECT_API_URL to use a running one)")
        deadline = time.monotonic() + self.startup_timeout
        self.process = self._spawn()
        for attempt in range(3):
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                        log.info("temporary Prefect server ready at %s (pid %d)", self.api_url, self.process.pid)
                        return self.api_url
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            if self.process.poll() is None:  # timed out
                self.stop()
                raise self._failure(f"did not answer within {self.startup_timeout:.0f}s")
            if attempt < 2:  # the port was taken between choosing and binding it: another port
                self.process = self._spawn()
        raise self._failure(f"exited with code {self.process.returncode}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_SERVER: TemporaryServer | None = None


def _own_server_url() -> str | None:
    """The URL of this process's temporary server while it runs."""
    if _SERVER is not None and _SERVER.process is not None and _SERVER.process.poll() is None:
        return _SERVER.api_url
    return None


def _start_own_server() -> str:
    """Start this process's temporary server (once); it is stopped at exit, and dies with the process."""
    global _SERVER
    server = TemporaryServer()
    server.start()
    _SERVER = server
    atexit.register(server.stop)
    return server.api_url


@contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API for a flow run in this process: PREFECT_API_URL, or a temporary server this process owns."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    url = _own_server_url() or configured_api_url()
    if url is None:
        if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            raise PrefectAPIError("PREFECT_API_URL is not set and PREFECT_SERVER_EPHEMERAL_ENABLED is false, so no "
                                  "Prefect server may be started for this run. " + RUN_FIX)
        url = _start_own_server()
    elif url != _own_server_url():
        check_health(url, RUN_FIX)
    # Child processes (Dask workers, flow-run subprocesses) read the environment; this process reads settings.
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_SERVER_EPHEMERAL_ENABLED: False}):
            yield url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def serve_until_stopped(deployment) -> str:
    """Serve a deployment until SIGINT or SIGTERM; either stops it cleanly (in-flight runs are cancelled and
    the schedule paused, so nothing piles up while no process serves it). Returns the signal's name."""
    from prefect.runner import Runner

    runner = Runner(name=deployment.name, pause_on_shutdown=True)
    runner.add_deployment(deployment)
    received: list[str] = []

    def on_signal(signum: int, _frame) -> None:
        received.append(signal.Signals(signum).name)
        log.info("%s received: stopping the runner", received[-1])
        if runner.stopping or not runner.started or len(received) > 1:
            raise SystemExit(0)
        runner.stopping = True
        runner.execute_in_background(runner.astop)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    runner.handle_sigterm = lambda *args, **kwargs: on_signal(signal.SIGTERM, None)  # start() installs it
    log.info("serving deployment %s; Ctrl-C or SIGTERM stops it", deployment.name)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, SystemExit):
        pass
    return received[0] if received else "none"
