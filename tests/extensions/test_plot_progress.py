"""An X/Y/Z plot's progress counts cells (#19 item 4): /sdapi/v1/progress reports A1111's state.job_no/job_count
over the whole plot (cells × batches), and `progress` (hence eta_relative) spans the plot, not one cell's steps."""

from __future__ import annotations

import threading
import time

from tests.extensions.conftest import write_extension

# every step takes at least 40 ms, so each cell lasts long enough for the polls below to see it
SLOW_STEPS = """
    import time

    def setup(ext):
        ext.on("step_end", lambda info: time.sleep(0.04))
"""


def test_xyz_progress_counts_cells_and_spans_the_plot(make_app, serve, data_dir):
    write_extension(data_dir / "extensions", "slowsteps", SLOW_STEPS)
    client = serve(make_app("--nowebui"))
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["state"]["job_count"] == 0 and idle["progress"] == 0

    body = {
        "prompt": "a red circle",
        "steps": 5,
        "seed": 7,
        "n_iter": 1,
        "script_name": "X/Y/Z plot",
        "script_args": ["Seed", "1, 2", "CFG Scale", "5, 7", "Nothing", "", False, False, False, 0],
    }
    done: dict = {}
    thread = threading.Thread(target=lambda: done.update(r=client.post("/sdapi/v1/txt2img", json=body)))
    thread.start()
    seen = []
    while thread.is_alive():
        p = client.get("/sdapi/v1/progress").json()
        if p["state"]["job"] and p["state"]["sampling_steps"]:
            seen.append(
                (
                    p["state"]["job_no"],
                    p["state"]["job_count"],
                    p["progress"],
                    p["eta_relative"],
                    p["state"]["sampling_step"],
                )
            )
        time.sleep(0.02)
    thread.join()
    assert done["r"].status_code == 200, done["r"].text

    assert {count for _, count, *_ in seen} == {4}  # 2 × 2 cells of one batch each, for the whole plot
    cells = [no for no, *_ in seen]
    assert cells == sorted(cells) and set(cells) <= {0, 1, 2, 3} and len(set(cells)) >= 3  # counted cell by cell
    for no, count, progress, eta, step in seen:
        assert no / count - 1e-6 <= progress <= (no + 1) / count + 1e-6, (no, progress)  # the whole plot's fraction
        assert eta >= 0
    first_cell = [(progress, eta) for no, _, progress, eta, step in seen if no == 0 and step >= 1]
    # in the first cell at most a quarter of the plot is done: the ETA left is for the other cells too
    assert first_cell and all(progress <= 0.25 + 1e-6 for progress, _ in first_cell)
    assert max(eta for _, eta in first_cell) > 0
    progresses = [progress for _, _, progress, _, _ in seen]
    assert progresses == sorted(progresses)  # it never goes back at a new cell

    # a plain job (no plot) is counted as before: its batches
    thread = threading.Thread(
        target=lambda: done.update(
            r=client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 4, "seed": 1, "n_iter": 2})
        )
    )
    thread.start()
    plain = []
    while thread.is_alive():
        p = client.get("/sdapi/v1/progress").json()
        if p["state"]["job"] and p["state"]["sampling_steps"]:
            plain.append((p["state"]["job_no"], p["state"]["job_count"]))
        time.sleep(0.02)
    thread.join()
    assert plain and {count for _, count in plain} == {2} and {no for no, _ in plain} <= {0, 1}
