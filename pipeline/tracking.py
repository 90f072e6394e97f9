"""MLflow tracking of retrains, off the event loop and never on a request path.

Each /cleanup starts a new parent run (one per generation), so a grader run reads as one group; every retrain
is a nested run with parameters, metrics, the model as an artifact and the published version as a tag. A pipeline
that restarts, or a standby that takes over, finds the generation's parent run in MLflow and goes on under it. When
the MLflow server is down, training and serving go on and the failure is logged once, not per retrain; the
retrains it missed are logged when it is back (tagged ``backfilled``, without the model artifact), so the runs
show every published version.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from recsys_core.algorithms.factors import FactorModel

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetrainRecord:
    generation: int
    model_version: int
    params: dict[str, object]  # logged as strings
    metrics: dict[str, float]
    # The whole model (users' factors too); serialized in the tracking thread, and only when MLflow is up. None
    # for a retrain kept to be logged later: a queue of whole models would hold gigabytes through an outage.
    model: FactorModel | None
    trigger: str = "scheduled"  # or "manual" (POST /retrain)
    run_uid: str = ""  # the run's uid in Redis (see ``RunKeys.run_uid``); "" when it could not be read
    trained_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))


# Retrains made while MLflow was down, logged once it is back; the oldest are dropped beyond this.
MAX_BACKFILL = 100


class MlflowTracker:
    """Blocking (call it through ``asyncio.to_thread``); remembers whether the server was down."""

    def __init__(self, tracking_uri: str, experiment_name: str, public_url: str, deployment: str = "") -> None:
        self._uri = tracking_uri.rstrip("/")
        self._public_url = public_url.rstrip("/")
        self._experiment_name = experiment_name
        # The Redis prefix: two deployments sharing an experiment name keep their parent runs apart.
        self._deployment = deployment
        self._experiment_id: str | None = None
        self._parent_runs: dict[tuple[int, str], str] = {}
        self._available = True
        self._missed: deque[RetrainRecord] = deque(maxlen=MAX_BACKFILL)
        self._closing = threading.Event()
        # Runs created for a retrain whose logging then failed part-way: a retry fills the same run in instead of
        # creating a second one for the same retrain.
        self._unfinished_runs: dict[tuple[int, int, int], str] = {}
        self.missed_total = 0  # retrains MLflow did not take when they were made (for /metrics)
        # Fail fast instead of MLflow's default minutes of retries when the server is down.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        # The client prints "View run ... at: <url>" for every run it ends; the pipeline logs the URL itself.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    def _reachable(self) -> bool:
        try:
            healthy = httpx.get(f"{self._uri}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy != self._available:
            if healthy:
                log.info("MLflow at %s is reachable again; retrains are tracked", self._uri)
            else:
                log.warning("MLflow at %s is unreachable; retrains go on untracked until it is back", self._uri)
            self._available = healthy
        return healthy

    def run_url(self, run_id: str) -> str:
        return f"{self._public_url}/#/experiments/{self._experiment_id}/runs/{run_id}"

    @property
    def backlog(self) -> int:
        """Retrains waiting to be logged once MLflow is back."""
        return len(self._missed)

    def log_retrain(self, record: RetrainRecord) -> str | None:
        """The MLflow run id, or None when MLflow could not take it (logged once per outage; the retrain is kept,
        without its model, and logged with the next one MLflow takes)."""
        if not self._reachable():
            self._miss(record)
            return None
        try:
            self._backfill()
            return self._log(record)
        except Exception as error:  # MLflow raises many kinds; a tracking failure must never stop training
            if self._available:
                log.warning("MLflow logging failed; retrains go on untracked: %r", error)
            self._available = False
            self._miss(record)
            return None

    def _miss(self, record: RetrainRecord) -> None:
        self.missed_total += 1
        self._missed.append(replace(record, model=None))

    def _backfill(self) -> None:
        """Logs the retrains missed while MLflow was down, oldest first; stops at the first failure (raised), and
        once ``close()`` was called: a backlog of 100 runs takes minutes, and the process exits only after it."""
        if self._missed:
            log.info("logging %d retrains made while MLflow was unreachable", len(self._missed))
        while self._missed and not self._closing.is_set():
            self._log(self._missed[0])
            self._missed.popleft()
        if self._missed:
            log.info("stopping: %d retrains made while MLflow was unreachable stay unlogged", len(self._missed))

    def close(self) -> None:
        """The pipeline is stopping: a backfill in progress ends after the run it is logging (thread-safe)."""
        self._closing.set()

    def start_generation(self, generation: int, run_uid: str = "") -> str | None:
        """Open the parent run of a new generation (called when /cleanup starts a run)."""
        if not self._reachable():
            return None
        try:
            return self._parent_run(*self._connect(), generation, run_uid)
        except Exception as error:  # see log_retrain
            log.warning("MLflow could not start the parent run of generation %d: %r", generation, error)
            return None

    def _connect(self) -> tuple[MlflowClient, str]:
        """A client, and the experiment's id (looked up, or created, once)."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self._uri)
        if self._experiment_id is None:
            experiment = client.get_experiment_by_name(self._experiment_name)
            self._experiment_id = (
                experiment.experiment_id if experiment else client.create_experiment(self._experiment_name)
            )
        return client, self._experiment_id

    def _log(self, record: RetrainRecord) -> str:
        from mlflow.entities import Metric, Param, RunTag

        client, experiment_id = self._connect()
        parent_id = self._parent_run(client, experiment_id, record.generation, record.run_uid)
        tags = {
            "mlflow.parentRunId": parent_id,
            "generation": str(record.generation),
            "model_version": str(record.model_version),
            "trigger": record.trigger,
        }
        retrain = (record.generation, record.model_version, record.trained_at_ms)
        run_id = self._unfinished_runs.get(retrain)
        if run_id is None:
            run_id = client.create_run(
                experiment_id,
                run_name=f"retrain-v{record.model_version}",
                start_time=record.trained_at_ms,
                tags=tags,
            ).info.run_id
            self._unfinished_runs[retrain] = run_id
        late_tags = [RunTag("published_model_version", str(record.model_version))]
        if record.model is None:  # logged after an MLflow outage; its model artifact was not kept
            late_tags.append(RunTag("backfilled", "true"))
        client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), record.trained_at_ms, 0) for key, value in record.metrics.items()],
            params=[Param(key, str(value)) for key, value in record.params.items()],
            tags=late_tags,
        )
        if record.model is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"model-v{record.model_version}.npz"
                path.write_bytes(record.model.to_bytes())
                client.log_artifact(run_id, str(path), artifact_path="model")
        client.set_terminated(run_id)
        del self._unfinished_runs[retrain]
        return run_id

    def _parent_run(self, client: MlflowClient, experiment_id: str, generation: int, run_uid: str) -> str:
        parent = self._parent_runs.get((generation, run_uid))
        if parent is None:
            for older in list(self._parent_runs):
                client.set_terminated(self._parent_runs.pop(older))
            name = f"run-generation-{generation}"
            # What tells this run apart: the deployment (two may share an experiment name) and the run's uid
            # (generation numbers start again at 0 when Redis loses its data; MLflow keeps its runs).
            tags = {"generation": str(generation), "deployment": self._deployment}
            if run_uid:
                tags["run_uid"] = run_uid
            # The parent an earlier pipeline process of this deployment opened for this run, if any.
            conditions = [
                f"attributes.run_name = '{name}'",
                *(f"tags.{key} = '{value}'" for key, value in tags.items()),
            ]
            existing = client.search_runs(
                [experiment_id],
                filter_string=" and ".join(conditions),
                order_by=["attributes.start_time ASC"],
                max_results=1,
            )
            if existing:
                parent = existing[0].info.run_id
            else:
                parent = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
            self._parent_runs[(generation, run_uid)] = parent
        return parent
