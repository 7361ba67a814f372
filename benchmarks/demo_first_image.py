"""From `launch.py` start to the first answered request and to the first image on the bundled demo model, on a
fresh data dir, with the venv already set up. Targets: ≤ 15 s to serving, ≤ 2 s for a 20-step image.

    python benchmarks/demo_first_image.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    import requests

    port = free_port()
    data = tempfile.mkdtemp(prefix="easel-first-")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "launch.py"),
            "--skip-install",
            "--api",
            "--nowebui",
            "--port",
            str(port),
            "--data-dir",
            data,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/sdapi/v1"
    try:
        while True:
            try:
                if requests.get(f"{url}/sd-models", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 120:
                raise SystemExit("the server did not come up")
            time.sleep(0.05)
        serving = time.perf_counter() - t0
        body = {"prompt": "a red circle on a blue background", "steps": 20, "seed": 1}
        r = requests.post(f"{url}/txt2img", json=body, timeout=300)
        first = time.perf_counter() - t0
        assert r.status_code == 200, r.text[:300]
        times = []
        for i in range(3):
            t1 = time.perf_counter()
            requests.post(f"{url}/txt2img", json={**body, "seed": 2 + i}, timeout=300).raise_for_status()
            times.append(time.perf_counter() - t1)
        print(
            f"serving after {serving:.1f} s (target <= 15 s); first image after {first:.1f} s; "
            f"a 20-step 64x64 image takes {sorted(times)[1]:.2f} s warm (target <= 2 s)"
        )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
