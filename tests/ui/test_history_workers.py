"""The History tab with workers on Ray (#22): a Worker column (with the retries), the retry log in a job's details,
and the Workers table (what GET /easel/v1/workers lists). The live Ray side: test_ray_workers.py."""

from __future__ import annotations

from webui.ui.history_tab import COLUMNS, WORKER_COLUMNS, job_details, job_row, worker_rows


def _job(**extra):
    return {
        "id": "j",
        "kind": "txt2img",
        "status": "done",
        "prompt": "a cat",
        "params": {"steps": 3},
        "created_at": 0,
        "result": None,
        **extra,
    }


def test_the_worker_column_and_the_retry_log():
    row = dict(zip(COLUMNS, job_row(_job(worker="ab12cd34", retries=1, retry_log=["worker 9f (pid 77) died"]))))
    assert row["Worker"] == "ab12cd34 (retried 1×)"
    assert dict(zip(COLUMNS, job_row(_job())))["Worker"] == ""  # the local worker
    details = job_details(_job(worker="ab12cd34", retries=1, retry_log=["worker 9f (pid 77) died <x>"]))
    assert "worker ab12cd34" in details and "Retried 1×" in details and "died &lt;x&gt;" in details


def test_the_workers_table():
    rows = worker_rows(
        [
            {
                "id": "w1",
                "state": "busy",
                "host": "gpu-box",
                "pid": 4242,
                "device": "cuda:0",
                "loaded_models": ["a.safetensors [1234]", "b [5678]"],
                "job": "j9",
                "jobs_done": 3,
                "last_heartbeat": 100.0,
            },
            {
                "id": "w2",
                "state": "starting",
                "node": "n2",
                "loaded_models": [],
                "jobs_done": 0,
                "last_heartbeat": None,
            },
        ],
        now=112.4,
    )
    assert [dict(zip(WORKER_COLUMNS, r)) for r in rows] == [
        {
            "Worker": "w1",
            "State": "busy",
            "Host": "gpu-box",
            "PID": 4242,
            "Device": "cuda:0",
            "Loaded models": "a.safetensors [1234], b [5678]",
            "Job": "j9",
            "Jobs done": 3,
            "Heartbeat": "12 s ago",
        },
        {
            "Worker": "w2",
            "State": "starting",
            "Host": "n2",
            "PID": "",
            "Device": "",
            "Loaded models": "",
            "Job": "",
            "Jobs done": 0,
            "Heartbeat": "",
        },
    ]
