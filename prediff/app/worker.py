"""A job runner that does model work in a separate worker process.

Why a process: the Streamlit app has imported protobuf's C++ implementation before any page runs, and
MindSpore's generated protobuf modules then fail to import ("Descriptors cannot be created directly"). The
worker is a fresh Python (``python -m prediff.app.worker``) started with
``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python``, so MindSpore imports cleanly there; the app process never
imports MindSpore. A long sampling run in the worker also leaves the UI responsive.

Each :class:`JobRunner` owns one worker process (started on the first job, restarted after a crash or a forced
stop) and talks to it over a private socket pair, so the runners of several browser sessions never share state.
The worker runs jobs one after another in submission order; loaded models can stay cached inside it between
jobs. Protocol, all messages pickled through :class:`multiprocessing.connection.Connection`:

* app -> worker: ``("run", job_id, "module:function", pickled_kwargs)``, ``("cancel", job_id)``;
* worker -> app: ``("started", job_id)``, ``("progress", job_id, fraction, message)``,
  ``("done", job_id, result)``, ``("failed", job_id, error_type, message, traceback_text)``,
  ``("cancelled", job_id)``.

A job function is any importable module-level function ``function(progress, **kwargs) -> result`` (the worker
imports its module by name; ``sys.path`` of the app is passed on). It reports with ``progress(fraction,
message)``, which raises :class:`JobCancelled` once the job has been cancelled, so cancellation is
cooperative; :meth:`JobRunner.stop_worker` ends a job that does not report.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
import weakref
from multiprocessing.connection import Connection
from typing import Any, Callable

from prediff.errors import PreDiffError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED_STATES = (DONE, FAILED, CANCELLED)


class JobCancelled(Exception):
    """Raised inside a job by its progress callback once the job has been cancelled."""


class JobFailed(PreDiffError):
    """A job ended with an error; the message is the job's readable error."""


@dataclasses.dataclass
class JobStatus:
    """What the app knows about one job.

    Attributes
    ----------
    job_id : unique id returned by :meth:`JobRunner.submit`.
    label : short description given at submission (shown in the UI).
    state : "queued", "running", "done", "failed" or "cancelled".
    progress : fraction done in [0, 1] as last reported by the job.
    message : the job's last progress message.
    result : the job's return value once ``state == "done"``.
    error_type, error : exception class name and readable message once ``state == "failed"``.
    traceback : the worker's traceback text for unexpected (non-user) errors, "" for user errors.
    submitted, finished : ``time.time()`` stamps.
    """

    job_id: str
    label: str = ""
    state: str = QUEUED
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    submitted: float = dataclasses.field(default_factory=time.time)
    finished: float | None = None

    @property
    def finished_ok(self) -> bool:
        return self.state == DONE

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)


def _close_worker(process: subprocess.Popen | None, connection: Connection | None) -> None:
    """Close the socket (the worker exits on end-of-file) and reap the process."""
    if connection is not None:
        connection.close()
    if process is not None and process.poll() is None:
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _function_reference(function: Callable) -> str:
    """``"module:qualname"`` of a module-level function; the worker imports it from there."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise ValueError(f"{function!r} cannot run in the worker process: pass a module-level function of an "
                         "importable module (not a lambda, a nested function or a function of __main__)")
    return f"{module}:{qualname}"


def _resolve(reference: str) -> Callable:
    module_name, qualname = reference.split(":", 1)
    target = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


class JobRunner:
    """Submit, follow, cancel and collect jobs run in this runner's own worker process.

    Thread-safe: Streamlit may run a session's script and its fragments in different threads.

    Parameters
    ----------
    env : extra environment variables for the worker (e.g. ``{"PREDIFF_DEVICE": "GPU"}``).
    """

    def __init__(self, env: dict[str, str] | None = None):
        self._env = dict(env or {})
        self._lock = threading.RLock()
        self._process: subprocess.Popen | None = None
        self._connection: Connection | None = None
        self._jobs: dict[str, JobStatus] = {}
        self._finalizer = None

    @property
    def environment(self) -> dict[str, str]:
        """The extra environment variables the worker is started with (a copy)."""
        return dict(self._env)

    # --- worker lifecycle ---------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        parent_socket, child_socket = socket.socketpair()
        env = dict(os.environ)
        env.update(self._env)
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
        # the worker must import job functions from wherever the app imported them
        env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        command = [sys.executable, "-m", "prediff.app.worker", str(child_socket.fileno())]
        self._process = subprocess.Popen(command, env=env, pass_fds=(child_socket.fileno(),),
                                         stdin=subprocess.DEVNULL)
        child_socket.close()
        self._connection = Connection(parent_socket.detach())
        if self._finalizer is not None:
            self._finalizer.detach()
        # a session whose runner is garbage-collected must not leave its worker behind
        self._finalizer = weakref.finalize(self, _close_worker, self._process, self._connection)

    def _worker_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker, None when none runs."""
        with self._lock:
            return self._process.pid if self._worker_alive() else None

    def stop_worker(self) -> None:
        """End the worker process now; its running and queued jobs become cancelled. The next submit starts a
        fresh worker (models cached in the old one are lost)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.kill()
            self._reap(reason=None)

    def shutdown(self) -> None:
        """Stop the worker and forget all jobs."""
        self.stop_worker()
        with self._lock:
            self._jobs.clear()

    def _reap(self, reason: str | None) -> None:
        """Forget a dead worker; mark what it was doing as failed (``reason``) or cancelled (None)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._process = None
        self._connection = None
        for status in self._jobs.values():
            if status.active:
                status.finished = time.time()
                if reason is None:
                    status.state = CANCELLED
                else:
                    status.state = FAILED
                    status.error_type = "WorkerError"
                    status.error = reason

    # --- jobs ---------------------------------------------------------------------------------------------

    def submit(self, function: Callable, /, label: str = "", **kwargs) -> str:
        """Queue ``function(progress, **kwargs)`` in the worker; returns the job id.

        ``function`` must be a module-level function of an importable module; ``kwargs`` must be picklable.
        """
        job_id = f"job-{uuid.uuid4().hex[:12]}"
        reference = _function_reference(function)
        with self._lock:
            self._drain()
            if not self._worker_alive():
                self._start_worker()
            self._jobs[job_id] = JobStatus(job_id=job_id, label=label or getattr(function, "__name__", "job"))
            try:
                payload = pickle.dumps(kwargs)
            except Exception as error:  # an unpicklable argument: fail this job only, readably
                status = self._jobs[job_id]
                status.state, status.error_type, status.finished = FAILED, type(error).__name__, time.time()
                status.error = f"the job's arguments cannot be sent to the worker process ({error})"
                return job_id
            try:
                self._connection.send(("run", job_id, reference, payload))
            except (OSError, ValueError) as error:
                self._reap(reason=f"could not send the job to the worker ({error})")
        return job_id

    def cancel(self, job_id: str) -> None:
        """Ask the worker to cancel ``job_id`` (a queued job never starts; a running job stops at its next
        progress report)."""
        with self._lock:
            status = self._jobs.get(job_id)
            if status is None or not status.active:
                return
            if status.state == QUEUED and not self._worker_alive():
                status.state, status.finished = CANCELLED, time.time()
                return
            try:
                self._connection.send(("cancel", job_id))
            except (OSError, ValueError, AttributeError):
                self._reap(reason="the worker process is gone")

    def _apply(self, message: tuple) -> None:
        kind, job_id = message[0], message[1]
        status = self._jobs.get(job_id)
        if status is None:
            return
        if kind == "started":
            status.state = RUNNING
        elif kind == "progress":
            status.progress = float(message[2])
            status.message = str(message[3])
        elif kind == "done":
            status.state, status.result, status.progress = DONE, message[2], 1.0
        elif kind == "failed":
            status.state = FAILED
            status.error_type, status.error, status.traceback = message[2], message[3], message[4]
        elif kind == "cancelled":
            status.state = CANCELLED
        if status.state in FINISHED_STATES:
            status.finished = time.time()

    def _drain(self) -> None:
        """Read every message the worker has sent; notice a dead worker."""
        if self._connection is None:
            return
        try:
            while self._connection.poll(0):
                self._apply(self._connection.recv())
        except (EOFError, OSError):
            pass
        if not self._worker_alive():
            code = None if self._process is None else self._process.returncode
            self._reap(reason=f"the worker process stopped unexpectedly (exit code {code}); this usually means "
                              "it ran out of memory — try fewer ensemble members or a smaller model, then retry")

    def status(self, job_id: str) -> JobStatus:
        """Current status of ``job_id`` (reads pending worker messages first)."""
        with self._lock:
            self._drain()
            if job_id not in self._jobs:
                raise KeyError(f"unknown job id {job_id!r}")
            return dataclasses.replace(self._jobs[job_id])

    def jobs(self) -> list[JobStatus]:
        """Status of every job of this runner, oldest first."""
        with self._lock:
            self._drain()
            return [dataclasses.replace(status) for status in self._jobs.values()]

    def wait(self, job_id: str, timeout: float | None = None, poll_interval: float = 0.05) -> JobStatus:
        """Block until ``job_id`` finishes (or ``timeout`` seconds pass); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if not status.active or (deadline is not None and time.monotonic() >= deadline):
                return status
            time.sleep(poll_interval)

    def result(self, job_id: str) -> Any:
        """Return value of a finished job; raises :class:`JobFailed` with the readable error otherwise."""
        status = self.status(job_id)
        if status.state == DONE:
            return status.result
        if status.state == FAILED:
            raise JobFailed(status.error)
        raise JobFailed(f"job {status.label!r} is {status.state}, it has no result")

    def forget(self, job_id: str) -> None:
        """Drop a finished job (and its result) from the runner."""
        with self._lock:
            status = self._jobs.get(job_id)
            if status is not None and not status.active:
                del self._jobs[job_id]


# --- the worker process -------------------------------------------------------------------------------------


class _Progress:
    """The ``progress`` callable handed to job functions inside the worker."""

    def __init__(self, job_id: str, send: Callable, cancelled: set, lock: threading.Lock):
        self.job_id = job_id
        self._send = send
        self._cancelled = cancelled
        self._lock = lock

    @property
    def cancelled(self) -> bool:
        """True once the app has asked to cancel this job."""
        with self._lock:
            return self.job_id in self._cancelled

    def __call__(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` (0-1) done and a short message; raises :class:`JobCancelled` if cancelled."""
        if self.cancelled:
            raise JobCancelled(self.job_id)
        self._send(("progress", self.job_id, min(max(float(fraction), 0.0), 1.0), str(message)))


def _serve(connection: Connection) -> None:
    """Worker main loop: a reader thread takes jobs and cancellations; jobs run here one at a time."""
    jobs: queue.Queue = queue.Queue()
    cancelled: set[str] = set()
    cancel_lock = threading.Lock()
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            connection.send(message)

    def read() -> None:
        try:
            while True:
                message = connection.recv()
                if message[0] == "run":
                    jobs.put(message[1:])
                elif message[0] == "cancel":
                    with cancel_lock:
                        cancelled.add(message[1])
        except (EOFError, OSError):
            # the app closed the socket or died: nothing will collect results any more
            os._exit(0)

    threading.Thread(target=read, name="prediff-worker-reader", daemon=True).start()
    while True:
        job_id, reference, payload = jobs.get()
        with cancel_lock:
            skip = job_id in cancelled
        if skip:
            send(("cancelled", job_id))
            continue
        send(("started", job_id))
        try:
            function = _resolve(reference)
            kwargs = pickle.loads(payload)
            result = function(_Progress(job_id, send, cancelled, cancel_lock), **kwargs)
            send(("done", job_id, result))
        except JobCancelled:
            send(("cancelled", job_id))
        except PreDiffError as error:
            send(("failed", job_id, type(error).__name__, str(error), ""))
        except Exception as error:
            send(("failed", job_id, type(error).__name__, f"{type(error).__name__}: {error}",
                  traceback.format_exc()))


if __name__ == "__main__":
    # run the package's copy of this module, so JobCancelled & co. are the classes job functions import
    from prediff.app.worker import _serve as serve_jobs

    serve_jobs(Connection(int(sys.argv[1])))
