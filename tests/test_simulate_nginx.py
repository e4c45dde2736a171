"""``wide-logging simulate`` on a real nginx access log: nginx in front of uvicorn, passing
its ``$request_id`` to the app, and the app sampling at 10% with the deployment's key. The
requests simulate keeps of nginx's log are the ones the app kept."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_servers import AppServer, uvicorn

from conftest import wait_for
from servers import free_port, required
from wide_logging.tools.cli import main

pytestmark = pytest.mark.slow
KEY = "nginx-test-deployment-key-0123456789"
NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format timed '$remote_addr - $remote_user [$time_local] "$request" $status '
                     '$body_bytes_sent "$http_referer" "$http_user_agent" '
                     '$request_time $request_id';
    access_log {tmp}/access.log timed;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{app_port};
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
}}
"""


@pytest.fixture
def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        required("nginx", "apt-get install -y nginx (./scripts/test does it where it can)")
    assert found is not None
    return found


@pytest.fixture
def nginx_in_front(nginx_binary: str, tmp_path: Path) -> Iterator[tuple[AppServer, int, Path]]:
    app = AppServer(
        uvicorn("apps.asgi_app:app"),
        tmp_path / "app",
        WIDE_LOGGING_NORMAL_RATE="0.1",
        WIDE_LOGGING_SAMPLING_KEY=KEY,
    )
    (tmp_path / "app").mkdir()
    app.start()
    folder = tmp_path / "nginx"
    folder.mkdir()
    port = free_port()
    (folder / "nginx.conf").write_text(NGINX_CONF.format(tmp=folder, port=port, app_port=app.port))
    nginx = subprocess.Popen(
        [nginx_binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: _answers(port), timeout=20, what="nginx to listen")
        yield app, port, folder / "access.log"
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful: the log is complete
        nginx.wait(20)
        if app.process is not None and app.process.poll() is None:
            app.stop()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ok", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_simulate_keeps_of_nginx_log_what_the_app_behind_it_kept(
    nginx_in_front: tuple[AppServer, int, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, port, access_log = nginx_in_front
    plan = ["/ok?page=2"] * 400 + ["/fail"] * 20
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda path: _get(port, path), plan))
    assert statuses.count(500) == 20
    app.stop()  # the app flushes its events
    kept_by_app = {e["request_id"] for e in app.stored()}
    assert 20 < len(kept_by_app) < 120  # the 20 errors and about 10% of the rest

    kept_out = tmp_path / "kept.log"
    command = ["simulate", str(access_log), "--normal-rate", "0.1", "--key", KEY]
    assert main([*command, "--kept-out", str(kept_out), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["formats_in"] == {"nginx": 1}
    lines = access_log.read_text().splitlines()
    # every request nginx logged (and the ones that waited for the app to listen)
    assert result["events_in"] == len(lines) >= 420
    assert result["errors_in"] == result["errors_kept"] == 20
    kept_by_simulate = {line.split()[-1] for line in kept_out.read_text().splitlines()}
    assert kept_by_simulate == kept_by_app
    assert [r["route"] for r in result["routes"]] == ["/ok", "/fail"]
