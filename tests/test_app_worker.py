"""The model-worker job runner: results, progress, readable errors, cancellation, crashes, isolation."""

from __future__ import annotations

import os
import sys
import time

import pytest

from prediff.app.worker import CANCELLED, DONE, FAILED, JobFailed, JobRunner
from prediff.errors import DataError


def add_job(progress, a, b):
    progress(0.5, "adding")
    return {"sum": a + b, "pid": os.getpid(), "protobuf": os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"),
            "streamlit_loaded": "streamlit" in sys.modules}


def user_error_job(progress):
    raise DataError("the folder X is empty; pass a SEVIR folder")


def bug_job(progress):
    return 1 / 0


def slow_job(progress, steps, delay):
    for step in range(steps):
        progress(step / steps, f"step {step}")
        time.sleep(delay)
    return steps


def environment_job(progress, name):
    return os.environ.get(name)


def crash_job(progress):
    os._exit(3)


@pytest.fixture
def runner():
    runner = JobRunner()
    yield runner
    runner.shutdown()


def test_result_progress_and_environment(runner):
    job = runner.submit(add_job, label="add", a=2, b=3)
    status = runner.wait(job, timeout=30)
    assert status.state == DONE, status.error
    assert status.result["sum"] == 5
    assert status.result["pid"] != os.getpid()
    assert status.result["protobuf"] == "python"
    assert status.result["streamlit_loaded"] is False
    assert status.progress == 1.0 and status.label == "add"
    assert runner.result(job)["sum"] == 5


def test_errors_are_readable(runner):
    user = runner.submit(user_error_job)
    bug = runner.submit(bug_job)
    user_status = runner.wait(user, timeout=30)
    bug_status = runner.wait(bug, timeout=30)
    assert user_status.state == FAILED and user_status.error_type == "DataError"
    assert "pass a SEVIR folder" in user_status.error and user_status.traceback == ""
    assert bug_status.state == FAILED and "ZeroDivisionError" in bug_status.error
    assert "Traceback" in bug_status.traceback
    with pytest.raises(JobFailed, match="pass a SEVIR folder"):
        runner.result(user)
    # the worker survives job errors
    assert runner.wait(runner.submit(add_job, a=1, b=1), timeout=30).result["sum"] == 2


def test_cancel_running_and_queued(runner):
    running = runner.submit(slow_job, steps=200, delay=0.02)
    queued = runner.submit(add_job, a=1, b=2)
    deadline = time.monotonic() + 30
    while runner.status(running).state != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.cancel(queued)
    runner.cancel(running)
    assert runner.wait(running, timeout=30).state == CANCELLED
    assert runner.wait(queued, timeout=30).state == CANCELLED
    assert runner.status(running).progress < 1.0


def test_crash_is_reported_and_worker_restarts(runner):
    first_pid = runner.wait(runner.submit(add_job, a=0, b=0), timeout=30).result["pid"]
    crashed = runner.wait(runner.submit(crash_job), timeout=30)
    assert crashed.state == FAILED and "exit code 3" in crashed.error
    again = runner.wait(runner.submit(add_job, a=4, b=4), timeout=30)
    assert again.state == DONE and again.result["pid"] != first_pid


def test_stop_worker_cancels_stuck_job(runner):
    job = runner.submit(slow_job, steps=1, delay=60)
    deadline = time.monotonic() + 30
    while runner.status(job).state != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.stop_worker()
    assert runner.status(job).state == CANCELLED
    assert runner.worker_pid is None


def test_bad_jobs_fail_without_breaking_the_runner(runner):
    with pytest.raises(ValueError, match="module-level function"):
        runner.submit(lambda progress: 1)
    job = runner.submit(add_job, a=(x for x in []), b=1)  # a generator cannot be pickled
    status = runner.status(job)
    assert status.state == FAILED and "cannot be sent" in status.error
    with pytest.raises(KeyError):
        runner.status("job-unknown")


def test_sessions_are_isolated():
    first, second = JobRunner(), JobRunner()
    try:
        jobs_a = [first.submit(add_job, a=i, b=0) for i in range(3)]
        jobs_b = [second.submit(add_job, a=100 + i, b=0) for i in range(3)]
        results_a = [first.wait(job, timeout=30).result for job in jobs_a]
        results_b = [second.wait(job, timeout=30).result for job in jobs_b]
        assert [r["sum"] for r in results_a] == [0, 1, 2]
        assert [r["sum"] for r in results_b] == [100, 101, 102]
        assert {r["pid"] for r in results_a}.isdisjoint({r["pid"] for r in results_b})
        assert {job.job_id for job in first.jobs()} == set(jobs_a)
    finally:
        first.shutdown()
        second.shutdown()


def test_worker_exits_when_runner_is_dropped():
    runner = JobRunner()
    runner.wait(runner.submit(add_job, a=1, b=1), timeout=30)
    process = runner._process
    del runner
    import gc

    gc.collect()
    assert process.wait(timeout=10) is not None


def test_extra_environment_reaches_the_worker():
    runner = JobRunner(env={"PREDIFF_DEVICE": "GPU"})
    try:
        assert runner.environment == {"PREDIFF_DEVICE": "GPU"}
        assert runner.wait(runner.submit(environment_job, name="PREDIFF_DEVICE"), timeout=30).result == "GPU"
    finally:
        runner.shutdown()
