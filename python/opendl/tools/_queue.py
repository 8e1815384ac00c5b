"""TrainingQueue: trainings of several tools run one after the other in a background thread."""

from __future__ import annotations

import itertools
import threading

from .. import _proc
from ..errors import HOperatorError
from ._tool import _Tool, _timeout

_ids = itertools.count(1)


class TrainingJob:
    """One queued training. ``state``: 'pending', 'running', 'done', 'failed' or 'cancelled'; ``error`` holds
    the exception of a failed job; ``iterations_trained`` the iterations it completed."""

    def __init__(self, tool, dataset, split, augmentation, iterations):
        self.id = next(_ids)
        self.tool, self.dataset, self.split = tool, dataset, split
        self.augmentation, self.iterations = augmentation, iterations
        self.state = "pending"
        self.error = None
        self.iterations_trained = 0

    def __repr__(self) -> str:
        return f"TrainingJob(id={self.id}, {type(self.tool).__name__}, state={self.state!r})"


class TrainingQueue:
    """Queued trainings run one after the other, in the order of ``pending``. ``add`` queues a training (the
    arguments of the tool's ``train``) and returns its TrainingJob; the queue starts the next job as soon as the
    previous one ends. ``move`` reorders pending jobs, ``cancel`` removes a pending job or stops the running
    one, ``wait`` blocks until the queue is empty. A tool may be queued more than once (its jobs continue its
    training, in queue order). A failed job (its exception in ``job.error``) does not stop
    the queue."""

    def __init__(self):
        self._cond = threading.Condition()
        self._pending = []
        self._running = None
        self._finished = []
        self._worker = None

    @property
    def pending(self) -> list:
        with self._cond:
            return list(self._pending)

    @property
    def running(self):
        with self._cond:
            return self._running

    @property
    def finished(self) -> list:
        with self._cond:
            return list(self._finished)

    def add(self, tool, dataset, split, augmentation=None, iterations=None) -> TrainingJob:
        """Queues ``tool.train(dataset, split, augmentation, iterations)``; the arguments are checked as train
        checks them, now (what depends on the jobs before it, such as the split a new tool locks to, is checked
        again when the job starts)."""
        op = "TrainingQueue.add"
        if not isinstance(tool, _Tool):
            raise HOperatorError(1201, f"tool must be an opendl.tools tool (Classifier, Segmenter, Locator), got "
                                       f"{type(tool).__name__}", op)
        tool._check_training(dataset, split, augmentation, iterations, op)
        job = TrainingJob(tool, dataset, split, augmentation, iterations)
        with self._cond:
            self._pending.append(job)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="opendl-training-queue", daemon=True)
                self._worker.start()
            self._cond.notify_all()
        return job

    def _job(self, job, op: str) -> TrainingJob:
        if not isinstance(job, TrainingJob):
            raise HOperatorError(1201, f"job must be a TrainingJob, got {type(job).__name__}", op)
        return job

    def move(self, job: TrainingJob, position: int) -> None:
        """Moves a pending job to ``position`` (0: next to run) among the pending jobs."""
        op = "TrainingQueue.move"
        self._job(job, op)
        with self._cond:
            if job not in self._pending:
                raise HOperatorError(1301, f"{job} is not pending (only pending jobs can be moved)", op)
            if not _proc.is_int(position) or not 0 <= position < len(self._pending):
                raise HOperatorError(1302, f"position must be in 0..{len(self._pending) - 1}, got {position!r}", op)
            self._pending.remove(job)
            self._pending.insert(position, job)

    def cancel(self, job: TrainingJob) -> None:
        """Removes a pending job; a running job's training is stopped (its completed iterations are kept)."""
        op = "TrainingQueue.cancel"
        self._job(job, op)
        with self._cond:
            if job in self._pending:
                self._pending.remove(job)
                job.state = "cancelled"
                self._finished.append(job)
                self._cond.notify_all()
                return
            running = self._running is job
            if running:
                job.state = "cancelled"
        if running:
            job.tool.stop_training(wait=False)
        elif job.state not in ("done", "failed", "cancelled"):
            raise HOperatorError(1301, f"{job} is not in this queue", op)

    def wait(self, timeout: float = -1) -> bool:
        """Blocks until no job is pending or running; False on timeout (seconds; -1: no limit)."""
        timeout = _timeout(timeout, "TrainingQueue.wait")
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and self._running is None, timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._pending:
                    self._worker = None
                    return
                job = self._pending.pop(0)
                job.state = "running"
                self._running = job
            started = False
            try:
                job.tool.train(job.dataset, job.split, job.augmentation, job.iterations)
                started = True
                with self._cond:
                    cancelled = job.state == "cancelled"  # by a cancel that came before train() took it
                if cancelled:
                    job.tool.stop_training(wait=False)
                job.iterations_trained = job.tool.wait_for_training_completion()
                if job.state == "running":
                    job.state = "done"
            except Exception as e:  # the job fails, the queue goes on
                if started:  # the iterations it completed before failing
                    job.iterations_trained = job.tool.current_training_finished_iterations
                job.error = e
                job.state = "failed"
            with self._cond:
                self._running = None
                self._finished.append(job)
                self._cond.notify_all()
