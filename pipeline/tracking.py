"""MLflow tracking of retrains, off the event loop and never on a request path.

Each /cleanup starts a new parent run (one per generation), so a grader run reads as one group; every retrain
is a nested run with parameters, metrics, the model as an artifact and the published version as a tag. A pipeline
that restarts, or a standby that takes over, finds the generation's parent run in MLflow and goes on under it. When
the MLflow server is down, training and serving go on and the failure is logged once, not per retrain.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
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
    params: dict[str, str | int | float]
    metrics: dict[str, float]
    # The whole model (users' factors too); serialized in the tracking thread, and only when MLflow is up.
    model: FactorModel


class MlflowTracker:
    """Blocking (call it through ``asyncio.to_thread``); remembers whether the server was down."""

    def __init__(self, tracking_uri: str, experiment_name: str, public_url: str) -> None:
        self._uri = tracking_uri.rstrip("/")
        self._public_url = public_url.rstrip("/")
        self._experiment_name = experiment_name
        self._experiment_id: str | None = None
        self._parent_runs: dict[int, str] = {}
        self._available = True
        # Fail fast instead of MLflow's default minutes of retries when the server is down.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

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

    def log_retrain(self, record: RetrainRecord) -> str | None:
        """The MLflow run id, or None when MLflow could not take it (logged once per outage)."""
        if not self._reachable():
            return None
        try:
            return self._log(record)
        except Exception as error:  # MLflow raises many kinds; a tracking failure must never stop training
            if self._available:
                log.warning("MLflow logging failed; retrains go on untracked: %s", error)
            self._available = False
            return None

    def start_generation(self, generation: int) -> str | None:
        """Open the parent run of a new generation (called when /cleanup starts a run)."""
        if not self._reachable():
            return None
        try:
            return self._parent_run(self._client(), generation)
        except Exception as error:  # see log_retrain
            log.warning("MLflow could not start the parent run of generation %d: %s", generation, error)
            return None

    def _client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self._uri)
        if self._experiment_id is None:
            experiment = client.get_experiment_by_name(self._experiment_name)
            self._experiment_id = (
                experiment.experiment_id if experiment else client.create_experiment(self._experiment_name)
            )
        return client

    def _log(self, record: RetrainRecord) -> str:
        from mlflow.entities import Metric, Param, RunTag

        client = self._client()
        parent_id = self._parent_run(client, record.generation)
        run = client.create_run(
            self._experiment_id,
            run_name=f"retrain-v{record.model_version}",
            tags={
                "mlflow.parentRunId": parent_id,
                "generation": str(record.generation),
                "model_version": str(record.model_version),
            },
        )
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), now, 0) for key, value in record.metrics.items()],
            params=[Param(key, str(value)) for key, value in record.params.items()],
            tags=[RunTag("published_model_version", str(record.model_version))],
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"model-v{record.model_version}.npz"
            path.write_bytes(record.model.to_bytes())
            client.log_artifact(run_id, str(path), artifact_path="model")
        client.set_terminated(run_id)
        return run_id

    def _parent_run(self, client: MlflowClient, generation: int) -> str:
        parent = self._parent_runs.get(generation)
        if parent is None:
            for older in list(self._parent_runs):
                client.set_terminated(self._parent_runs.pop(older))
            name = f"run-generation-{generation}"
            # The parent an earlier pipeline process of this deployment opened for this generation, if any.
            existing = client.search_runs(
                [self._experiment_id],
                filter_string=f"attributes.run_name = '{name}' and tags.generation = '{generation}'",
                order_by=["attributes.start_time ASC"],
                max_results=1,
            )
            if existing:
                parent = existing[0].info.run_id
            else:
                run = client.create_run(self._experiment_id, run_name=name, tags={"generation": str(generation)})
                parent = run.info.run_id
            self._parent_runs[generation] = parent
        return parent
