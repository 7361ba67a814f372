"""Workers on Ray (#22): throughput with 1, 2 and 3 CPU workers, the queue's overhead per job over Ray against the
local worker, and how long a worker added at run time takes to run its first job.

    python benchmarks/workers.py [--jobs 6] [--steps 20] [--size 64] [--model tiny|mid]

One private local Ray runtime for the whole run (each worker count is a fresh head on it). Overhead per job =
(job finished − job created) − the seconds the work itself took (measured inside the worker for Ray, the job's
function for local), for a 1-step job on an idle, warm worker. Prints the CPU model next to the figures: the same
code runs at different speeds on different CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from _common import temp_data_dir, write_model  # noqa: E402  (puts the repo on sys.path)


REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown"


def make_head(data_dir, *flags: str):
    from webui.app import Application
    from webui.flags import parse_args

    app = Application(parse_args(["--data-dir", str(data_dir), "--threads", "1", *flags]))
    app.catalog.demo_dir = None
    app.start(wait_for_model=True)
    return app


def wait_workers(app, count: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while sum(w["state"] == "idle" for w in app.workers.list()) < count:
        if time.time() > deadline:
            raise RuntimeError(f"{count} workers not ready in {timeout} s: {app.workers.list()}")
        time.sleep(0.2)


def request(seed: int, steps: int, size: int):
    from webui.generation.requests import Txt2ImgRequest

    return Txt2ImgRequest(prompt=f"a red circle {seed}", seed=seed, steps=steps, width=size, height=size)


def throughput(app, jobs: int, steps: int, size: int) -> float:
    for warm in [app.submit_txt2img(request(i, 1, size), from_api=True) for i in range(3)]:
        app.jobs.wait(warm, timeout=600)  # every worker has loaded the checkpoint
    t0 = time.perf_counter()
    submitted = [app.submit_txt2img(request(i, steps, size), from_api=True) for i in range(jobs)]
    for job in submitted:
        app.jobs.wait(job, timeout=1200)
    return jobs / (time.perf_counter() - t0)


def overhead_ms(app, repeats: int, size: int) -> float:
    out = []
    for i in range(repeats):
        job = app.submit_txt2img(request(1000 + i, 1, size), from_api=True)
        app.jobs.wait(job, timeout=600)
        if app.workers is None:
            work = job.finished_at - job.started_at
        else:
            work = app.workers.work_seconds[job.id]
        out.append((job.finished_at - job.created_at - work) * 1000)
    return statistics.median(out)


def first_job_seconds(app, steps: int, size: int) -> float:
    queued = [app.submit_txt2img(request(i, steps, size), from_api=True) for i in range(8)]
    t0 = time.perf_counter()
    new = app.workers.add_worker()
    while not any(j.worker == new for j in queued):
        if all(j.done.is_set() for j in queued):
            raise RuntimeError("the queue ran dry before the new worker was ready: raise --steps")
        time.sleep(0.05)
    took = time.perf_counter() - t0
    for job in queued:
        app.jobs.wait(job, timeout=1200)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--model", choices=("tiny", "mid"), default="tiny")
    args = ap.parse_args()
    import ray

    data_dir = temp_data_dir()
    write_model(args.model, data_dir / "models" / "Stable-diffusion")
    rows = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "model": args.model,
        "size": args.size,
        "steps": args.steps,
        "jobs": args.jobs,
    }
    local = make_head(data_dir)
    rows["local_images_per_s"] = round(throughput(local, args.jobs, args.steps, args.size), 3)
    rows["local_overhead_ms"] = round(overhead_ms(local, 10, args.size), 2)
    local.stop()
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        namespace="easel-bench",
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}},
    )
    try:
        for n in (1, 2, 3):
            head = make_head(data_dir, "--workers", "ray", "--ray-num-workers", str(n))
            wait_workers(head, n)
            rows[f"ray_{n}_images_per_s"] = round(throughput(head, args.jobs, args.steps, args.size), 3)
            if n == 1:
                rows["ray_overhead_ms"] = round(overhead_ms(head, 10, args.size), 2)
                rows["new_worker_first_job_s"] = round(first_job_seconds(head, max(args.steps, 60), args.size), 2)
            head.stop()
    finally:
        ray.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
