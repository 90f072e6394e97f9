"""Every retrain is an MLflow run nested under its run's parent; MLflow down never stops training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.async_logging.run_operations import RunOperations

from pipeline.tracking import MlflowTracker, RetrainRecord
from recsys_core.algorithms.factors import FactorModel
from recsys_io.redis_client import as_str
from tests.integration.helpers import add_items, catalog, eventually, interact, new_id, recs
from tests.support.proxy import TcpProxy
from tests.support.stack import ServiceStack, free_port

pytestmark = pytest.mark.integration


def _seed_likes(client: httpx.Client, stack: ServiceStack, users: int = 4) -> None:
    ids, genres = catalog(60)
    add_items(client, stack.recs_url, ids, genres)
    for _ in range(users):
        user = new_id()
        shown = recs(client, stack.recs_url, user).json()["item_ids"]
        interact(client, stack.collector_url, user, shown[:3], ["like", "like", "dislike"])
    eventually(lambda: client.get(f"{stack.pipeline_url}/status").json()["events_applied"] >= users * 3, 10)


def _tiny_model(version: int) -> FactorModel:
    return FactorModel(
        version=version,
        user_ids=np.array(["u"], dtype=np.str_),
        user_factors=np.ones((1, 2), dtype=np.float32),
        item_ids=np.array(["a", "b"], dtype=np.str_),
        item_factors=np.ones((2, 2), dtype=np.float32),
        neighbour_indices=np.zeros((2, 1), dtype=np.int32),
        neighbour_sims=np.zeros((2, 1), dtype=np.float32),
    )


def test_retrains_are_nested_runs_with_params_metrics_artifact_and_version_tag(
    stack: ServiceStack, tmp_path: Path
) -> None:
    with httpx.Client(timeout=60) as client:
        client.get(f"{stack.recs_url}/cleanup")
        _seed_likes(client, stack)
        first = client.post(f"{stack.pipeline_url}/retrain").json()
        second = client.post(f"{stack.pipeline_url}/retrain").json()
        assert first["trained"] and second["trained"] and first["mlflow_run_id"] and second["mlflow_run_id"]
        client.get(f"{stack.recs_url}/cleanup")  # a new run: a new parent
        _seed_likes(client, stack)
        third = client.post(f"{stack.pipeline_url}/retrain").json()

    tracking = mlflow.MlflowClient(stack.mlflow_url)
    experiment = tracking.get_experiment_by_name(stack.tag)
    assert experiment is not None
    runs = {r.info.run_id: r for r in tracking.search_runs([experiment.experiment_id])}
    first_run, second_run, third_run = (runs[o["mlflow_run_id"]] for o in (first, second, third))
    parent = first_run.data.tags["mlflow.parentRunId"]
    assert second_run.data.tags["mlflow.parentRunId"] == parent
    assert third_run.data.tags["mlflow.parentRunId"] != parent
    assert runs[parent].data.tags["generation"] != third_run.data.tags["generation"]
    # The parent carries the run's uid from Redis, which tells it from a run of the same number after a wipe.
    third_parent = runs[third_run.data.tags["mlflow.parentRunId"]]
    run_uid = stack.redis.get(stack.run_key("run_uid"))
    assert run_uid is not None
    assert third_parent.data.tags["run_uid"] == as_str(run_uid)
    assert third_parent.data.tags["run_uid"] != runs[parent].data.tags["run_uid"]
    data = second_run.data
    assert data.tags["model_version"] == str(second["model_version"])
    assert data.params["strategy"] == "blend" and data.params["strategy.prior_strength"] == "20.0"
    assert data.params["factors"] == "64" and data.params["iterations"] == "60"
    for metric in ("training_seconds", "users", "items", "events", "offline_precision_at_10", "offline_ndcg_at_10"):
        assert metric in data.metrics, metric
    assert data.metrics["users"] == 4 and data.metrics["items"] == 60 and data.metrics["likes"] == 8
    artifacts = [a.path for a in tracking.list_artifacts(second_run.info.run_id, "model")]
    assert artifacts == [f"model/model-v{second['model_version']}.npz"]
    # The artifact is the whole model: the users' factors too, which replicas never load.
    local = tracking.download_artifacts(second_run.info.run_id, artifacts[0], str(tmp_path))
    logged = FactorModel.from_bytes(Path(local).read_bytes())
    assert logged.version == second["model_version"]
    assert logged.user_ids.size == 4 and logged.item_ids.size == 60


def test_mlflow_down_training_and_serving_go_on_and_it_is_logged_once(
    stack_factory: Callable[..., ServiceStack],
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    stack: ServiceStack = stack_factory(MLFLOW_TRACKING_URI=closed).start()
    with httpx.Client(timeout=60) as client:
        client.get(f"{stack.recs_url}/cleanup")
        _seed_likes(client, stack)
        outcomes = [client.post(f"{stack.pipeline_url}/retrain").json() for _ in range(3)]
        assert all(o["trained"] and o["mlflow_run_id"] is None for o in outcomes)
        assert client.get(f"{stack.recs_url}/status").json()["model_version"] == outcomes[-1]["model_version"]
        assert len(recs(client, stack.recs_url, new_id()).json()["item_ids"]) == 10
    log = stack.services["pipeline"].log_path.read_text()
    assert log.count("unreachable; retrains go on untracked") == 1, log[-3000:]


def test_a_restarted_or_standby_pipeline_goes_on_under_the_generations_parent_run(mlflow_url: str) -> None:
    """Two trackers of one deployment, as a pipeline before and after a restart (or a leader and the standby that
    took over): one parent run per generation, the retrains of both nested under it."""
    deployment = f"test-{new_id()}"
    model = _tiny_model(1)
    before, after = (MlflowTracker(mlflow_url, deployment, mlflow_url) for _ in range(2))
    parent = before.start_generation(3)
    first = before.log_retrain(RetrainRecord(3, 1, {"factors": 2}, {"likes": 1.0}, model))
    assert parent is not None and first is not None
    assert after.start_generation(3) == parent
    second = after.log_retrain(RetrainRecord(3, 2, {"factors": 2}, {"likes": 2.0}, model))
    assert second is not None
    new_generation = after.start_generation(4)
    assert new_generation not in (None, parent)

    tracking = mlflow.MlflowClient(mlflow_url)
    for run_id in (first, second):
        assert tracking.get_run(run_id).data.tags["mlflow.parentRunId"] == parent
    experiment = tracking.get_experiment_by_name(deployment)
    assert experiment is not None
    parents = tracking.search_runs(
        [experiment.experiment_id], filter_string="attributes.run_name LIKE 'run-generation-%'"
    )
    assert sorted(r.info.run_name for r in parents) == ["run-generation-3", "run-generation-4"]


def test_retrains_made_while_mlflow_was_down_are_logged_when_it_is_back(
    mlflow_url: str, proxy_for: Callable[[str], TcpProxy]
) -> None:
    proxy = proxy_for(mlflow_url)
    via_proxy = proxy.url_for(mlflow_url)
    deployment = f"test-{new_id()}"
    tracker = MlflowTracker(via_proxy, deployment, mlflow_url, deployment="prefix-a")
    assert tracker.log_retrain(RetrainRecord(5, 1, {"factors": 2}, {"likes": 1.0}, _tiny_model(1))) is not None
    proxy.pause()
    down = [
        tracker.log_retrain(RetrainRecord(5, v, {"factors": 2}, {"likes": float(v)}, _tiny_model(v), trigger=trigger))
        for v, trigger in ((2, "scheduled"), (3, "manual"))
    ]
    assert down == [None, None]
    assert tracker.missed_total == 2 and tracker.backlog == 2
    proxy.resume()
    fourth = tracker.log_retrain(RetrainRecord(5, 4, {"factors": 2}, {"likes": 4.0}, _tiny_model(4)))
    assert fourth is not None and tracker.backlog == 0 and tracker.missed_total == 2

    tracking = mlflow.MlflowClient(mlflow_url)
    experiment = tracking.get_experiment_by_name(deployment)
    assert experiment is not None
    runs = {
        r.info.run_name: r
        for r in tracking.search_runs([experiment.experiment_id], filter_string="attributes.run_name LIKE 'retrain-%'")
    }
    print({name: (run.data.tags.get("backfilled"), run.data.tags["trigger"]) for name, run in sorted(runs.items())})
    assert sorted(runs) == ["retrain-v1", "retrain-v2", "retrain-v3", "retrain-v4"], "every published version"
    for name in ("retrain-v2", "retrain-v3"):
        run = runs[name]
        assert run.data.tags["backfilled"] == "true" and run.data.metrics["likes"] == float(name[-1])
        assert tracking.list_artifacts(run.info.run_id, "model") == []  # the model was not kept through the outage
    assert runs["retrain-v3"].data.tags["trigger"] == "manual"
    assert runs["retrain-v2"].info.start_time < runs["retrain-v4"].info.start_time  # when it was trained
    assert "backfilled" not in runs["retrain-v4"].data.tags
    assert [a.path for a in tracking.list_artifacts(runs["retrain-v4"].info.run_id, "model")] == ["model/model-v4.npz"]


def test_two_deployments_sharing_an_experiment_name_keep_their_parent_runs_apart(mlflow_url: str) -> None:
    name = f"test-{new_id()}"
    first = MlflowTracker(mlflow_url, name, mlflow_url, deployment="prefix-a").start_generation(1)
    second = MlflowTracker(mlflow_url, name, mlflow_url, deployment="prefix-b").start_generation(1)
    again = MlflowTracker(mlflow_url, name, mlflow_url, deployment="prefix-a").start_generation(1)
    assert first is not None and second is not None
    assert second != first and again == first


def test_a_run_whose_generation_number_came_back_gets_its_own_parent(mlflow_url: str) -> None:
    """Redis lost its data (generations count from 0 again) while MLflow kept its runs: the new run's uid keeps
    its retrains out of the old run's parent of the same generation number."""
    name = f"test-{new_id()}"
    old = MlflowTracker(mlflow_url, name, mlflow_url, deployment="prefix").start_generation(1, "uid-of-the-old-run")
    new = MlflowTracker(mlflow_url, name, mlflow_url, deployment="prefix").start_generation(1, "uid-of-the-new-run")
    again = MlflowTracker(mlflow_url, name, mlflow_url, deployment="prefix").start_generation(1, "uid-of-the-new-run")
    assert old is not None and new is not None
    assert new != old and again == new
    record = RetrainRecord(1, 1, {"factors": 2}, {"likes": 1.0}, _tiny_model(1), run_uid="uid-of-the-new-run")
    run_id = MlflowTracker(mlflow_url, name, mlflow_url, deployment="prefix").log_retrain(record)
    assert run_id is not None
    assert mlflow.MlflowClient(mlflow_url).get_run(run_id).data.tags["mlflow.parentRunId"] == new


def test_a_retrain_whose_logging_failed_part_way_is_one_run_not_two(
    mlflow_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow took the run but failed on its metrics: the retry (with the next retrain) fills the same run in."""
    deployment = f"test-{new_id()}"
    tracker = MlflowTracker(mlflow_url, deployment, mlflow_url, deployment="prefix-a")
    real_log_batch = mlflow.MlflowClient.log_batch
    failures = iter([True])

    def log_batch_failing_once(
        self: mlflow.MlflowClient,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        synchronous: bool | None = None,
    ) -> RunOperations | None:
        if next(failures, False):
            raise mlflow.exceptions.MlflowException("injected: the server went away mid-log")
        return real_log_batch(self, run_id, metrics, params, tags, synchronous)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", log_batch_failing_once)
    assert tracker.log_retrain(RetrainRecord(5, 1, {"factors": 2}, {"likes": 1.0}, _tiny_model(1))) is None
    assert tracker.backlog == 1
    assert tracker.log_retrain(RetrainRecord(5, 2, {"factors": 2}, {"likes": 2.0}, _tiny_model(2))) is not None
    assert tracker.backlog == 0

    tracking = mlflow.MlflowClient(mlflow_url)
    experiment = tracking.get_experiment_by_name(deployment)
    assert experiment is not None
    runs = tracking.search_runs([experiment.experiment_id], filter_string="attributes.run_name LIKE 'retrain-%'")
    names = sorted(run.info.run_name for run in runs)
    print(names)
    assert names == ["retrain-v1", "retrain-v2"], "the half-logged retrain got a second run"
    first = next(run for run in runs if run.info.run_name == "retrain-v1")
    assert first.data.tags["backfilled"] == "true" and first.data.metrics["likes"] == 1.0
    assert first.info.status == "FINISHED"
