"""Joining a Ray cluster that is already running (#22): `--workers ray://HOST:PORT` (Ray Client) and
`--ray-address auto`, against a head started with `ray start` on loopback for this module. Each Easel head is its
own process, as it would be on a real machine; the workers are actors in the cluster, not in a private runtime."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="pip install -r requirements-ray.txt")

REPO = Path(__file__).resolve().parents[2]
NODE_IP = "127.0.0.2"  # as the private runtime (pool.LOCAL_NODE_IP): Ray rewrites 127.0.0.1 to the LAN address


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_processes_mentioning(text: str) -> None:
    import psutil

    mine = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in p.info["cmdline"] or []):
                mine.append(p)
        except (psutil.Error, TypeError):
            continue
    for p in mine:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(mine, timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = Path(sys.executable).with_name("ray")
    port, client_port = _free_port(), _free_port()
    # the client proxier gives each Ray Client driver's own server 30 s to come up by default: on a busy 2-core CI
    # machine it once took longer ("Starting Ray client server failed", an empty log); 120 s here
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "120",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    # a short folder of its own: Ray puts unix sockets under it (<temp>/session_<date>_<pid>/sockets/plasma_store),
    # and under pytest-xdist's longer basetemp (…/popen-gw0/ray-cluster0) the path passed the 107-byte socket limit
    temp = Path(tempfile.mkdtemp(prefix="easel-ray-", dir="/tmp"))
    cmd = [
        str(ray),
        "start",
        "--head",
        f"--port={port}",
        f"--ray-client-server-port={client_port}",
        f"--node-ip-address={NODE_IP}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=240, env=env)
    try:
        yield {"client": f"ray://{NODE_IP}:{client_port}", "gcs": f"{NODE_IP}:{port}", "env": env}
    finally:  # only this cluster's processes (`ray stop` would end every Ray runtime on the machine)
        _kill_processes_mentioning(str(temp))
        shutil.rmtree(temp, ignore_errors=True)


HEAD = r"""
import json, sys
from fastapi.testclient import TestClient
from webui.app import Application
from webui.api.server import build_fastapi
from webui.flags import parse_args
app = Application(parse_args(sys.argv[1:]))
app.catalog.demo_dir = None
app.start(wait_for_model=True)
from tests.api.conftest import wait_until
wait_until(lambda: any(w["state"] == "idle" for w in app.workers.list()), 300, 0.5)
with TestClient(build_fastapi(app)) as c:
    r = c.post("/sdapi/v1/txt2img", json={"prompt": "joined", "seed": 3, "steps": 2, "width": 64, "height": 64})
    assert r.status_code == 200, r.text
    workers = c.get("/easel/v1/workers").json()
rows = app.history.list(limit=5)
app.stop()
print(json.dumps({"worker": rows[0]["worker"], "workers": workers["workers"], "mode": workers["mode"]}))
"""


@pytest.mark.parametrize("how", ["client", "auto"])
def test_a_head_joins_a_running_cluster(cluster, how, tmp_path, tiny_models):
    import json

    shutil.copytree(tiny_models, tmp_path / "models")
    flags = ["--workers", cluster["client"]] if how == "client" else ["--ray-address", "auto"]
    env = dict(cluster["env"])
    if how == "auto":  # `ray start` recorded the cluster on this machine; auto finds it (or RAY_ADDRESS)
        env["RAY_ADDRESS"] = cluster["gcs"]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            HEAD,
            "--data-dir",
            str(tmp_path),
            "--api",
            "--nowebui",
            "--ray-num-workers",
            "1",
            "--threads",
            "1",
            *flags,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["mode"] == "ray" and len(seen["workers"]) == 1
    assert seen["worker"] == seen["workers"][0]["id"]  # the job ran on the cluster's worker, not on the head
