"""The shared Streamlit pieces of prediff.app.ui: the job panel (progress, Cancel, outcome) and tables."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from prediff.app import state as keys
from prediff.app.worker import JobRunner
from test_app_worker import add_job, slow_job, user_error_job

JOB_KEY = "demo.job"


def _panel_script():
    import streamlit as st

    from prediff.app.ui import job_panel

    status = job_panel("demo.job")
    st.caption(f"state: {None if status is None else status.state}")


@pytest.fixture(scope="module")
def runner():
    # one worker for the module: starting a process per test costs seconds on a busy machine
    job_runner = JobRunner(env={"PREDIFF_DEVICE": "CPU"})
    yield job_runner
    job_runner.shutdown()


def _panel(runner, job_id) -> AppTest:
    app = AppTest.from_function(_panel_script, default_timeout=30)
    app.session_state[keys.RUNNER] = runner
    app.session_state[JOB_KEY] = job_id
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def _button_keys(app) -> set[str]:
    return {button.key for button in app.button}


def test_running_job_has_cancel_and_finished_job_has_none(runner):
    job_id = runner.submit(slow_job, label="Slow job", steps=100, delay=0.05)
    app = _panel(runner, job_id)
    assert {f"{JOB_KEY}.cancel", f"{JOB_KEY}.stop"} <= _button_keys(app)
    assert app.caption[0].value in ("state: queued", "state: running")
    app.button(key=f"{JOB_KEY}.cancel").click().run()
    assert runner.wait(job_id, timeout=60).state == "cancelled"
    app.run()
    assert not _button_keys(app)
    assert "Slow job: cancelled." in app.warning[0].value
    assert app.caption[0].value == "state: cancelled"


@pytest.mark.parametrize("job, kwargs, outcome", [(add_job, {"a": 1, "b": 2}, "success"),
                                                  (user_error_job, {}, "error")])
def test_finished_job_shows_its_outcome_without_buttons(runner, job, kwargs, outcome):
    job_id = runner.submit(job, label="Quick job", **kwargs)
    assert not runner.wait(job_id, timeout=60).active
    app = _panel(runner, job_id)
    assert not _button_keys(app)
    boxes = app.success if outcome == "success" else app.error
    assert boxes and boxes[0].value.startswith("Quick job")
    if outcome == "error":
        assert "the folder X is empty" in boxes[0].value


def test_no_panel_without_a_job_or_for_a_forgotten_job(runner):
    app = _panel(runner, None)
    assert app.caption[0].value == "state: None" and not app.button
    app = _panel(runner, "job-unknown")
    assert app.caption[0].value == "state: None"
    assert JOB_KEY not in app.session_state
