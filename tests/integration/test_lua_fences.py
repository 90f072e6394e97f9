"""Small fenced scripts of recsys_core.lua run directly on the real Redis (their callers are the pipeline's)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from recsys_core import lua
from recsys_core.keys import GlobalKeys

pytestmark = pytest.mark.integration


async def test_a_late_mlflow_run_id_lands_only_on_its_own_models_status(
    redis_and_keys: tuple[Redis, GlobalKeys],
) -> None:
    redis_client, keys = redis_and_keys
    status = keys.for_generation(0).pipeline_status
    await redis_client.hset(status, "model_version", "2")
    script = redis_client.register_script(lua.HSET_IF_MODEL)
    # The run id of model 1 came after model 2's status replaced model 1's: refused.
    assert await script(keys=[keys.generation, status], args=[0, 1, "mlflow_run_id", "run-of-v1"]) == 0
    assert await redis_client.hget(status, "mlflow_run_id") is None
    assert await script(keys=[keys.generation, status], args=[0, 2, "mlflow_run_id", "run-of-v2"]) == 1
    assert await redis_client.hget(status, "mlflow_run_id") == b"run-of-v2"
    # An older run's write is refused whatever the version.
    assert await script(keys=[keys.generation, status], args=[1, 2, "mlflow_run_id", "x"]) == lua.STALE_GENERATION


async def test_the_runs_uid_is_set_once(redis_and_keys: tuple[Redis, GlobalKeys]) -> None:
    redis_client, keys = redis_and_keys
    uid_key = keys.for_generation(0).run_uid
    script = redis_client.register_script(lua.RUN_UID_IF_CURRENT)
    assert await script(keys=[keys.generation, uid_key], args=[0, "first"]) == b"first"
    # A second process (or a restart) asking later gets the uid MLflow's parent run is already tagged with.
    assert await script(keys=[keys.generation, uid_key], args=[0, "second"]) == b"first"
    assert await script(keys=[keys.generation, keys.for_generation(1).run_uid], args=[1, "stale"]) is None
    assert await redis_client.exists(keys.for_generation(1).run_uid) == 0
