"""N concurrent HTTP clients against a real server on the tiny model: throughput, p50/p95 latency, lost requests,
and the queue's own overhead per job next to the bare generation time (target ≤ 10 ms, zero lost).

    python benchmarks/queue_load.py [--clients 20] [--requests 3] [--steps 2]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from _common import temp_data_dir, write_model


def main() -> None:
    import requests

    from tests.conftest import LiveServer
    from webui.app import Application
    from webui.flags import parse_args
    from webui.generation.control import JobControl
    from webui.generation.requests import Txt2ImgRequest
    from webui.generation.txt2img import run_txt2img

    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    a = ap.parse_args()
    data = temp_data_dir()
    write_model("tiny", data / "models" / "Stable-diffusion")
    app = Application(parse_args(["--data-dir", str(data), "--api", "--nowebui"]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    req = Txt2ImgRequest(prompt="a red circle", steps=a.steps, seed=1)

    # bare generation vs the same work through the queue (submit → worker → history → done), sequentially
    bare, queued = [], []
    for _ in range(10):
        t0 = time.perf_counter()
        run_txt2img(req, app.generation, app.options.view(), JobControl(), save=False, save_grid=False)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        app.jobs.wait(app.submit_txt2img(req, from_api=True))
        queued.append(time.perf_counter() - t0)
    overhead = statistics.median(queued) - statistics.median(bare)

    latencies, lost = [], []
    lock = threading.Lock()
    with LiveServer(app) as srv:

        def client(i: int) -> None:
            for j in range(a.requests):
                t0 = time.perf_counter()
                try:
                    r = requests.post(
                        f"{srv.url}/sdapi/v1/txt2img",
                        json={"prompt": f"c{i}-{j}", "steps": a.steps, "seed": i},
                        timeout=600,
                    )
                    ok = r.status_code == 200 and len(r.json()["images"]) == 1
                except requests.RequestException:
                    ok = False
                with lock:
                    (latencies if ok else lost).append(time.perf_counter() - t0)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    app.stop()
    total = a.clients * a.requests
    q = statistics.quantiles(latencies, n=20)
    print(
        f"{a.clients} clients x {a.requests} requests: {len(latencies)}/{total} answered, {len(lost)} lost, "
        f"throughput {len(latencies) / wall:.2f} req/s, latency p50 {statistics.median(latencies):.2f} s, "
        f"p95 {q[18]:.2f} s"
    )
    print(
        f"bare generation {statistics.median(bare) * 1000:.1f} ms, through the queue "
        f"{statistics.median(queued) * 1000:.1f} ms: overhead {overhead * 1000:.2f} ms per job (target <= 10 ms)"
    )


if __name__ == "__main__":
    main()
