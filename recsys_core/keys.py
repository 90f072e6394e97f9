"""The Redis key layout: every key family this system uses is named here, once.

Everything that belongs to one run lives under a *generation* namespace ``{prefix}:g{generation}:``.
``/cleanup`` increments the generation, so the new run starts in an empty namespace at once; events and
writes tagged with an older generation are refused by the Lua scripts that check it, and the old namespace is
deleted afterwards. Only a few keys live outside any generation (the generation counter itself, the
pipeline's heartbeat and lease, and the collectors' announcements).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GlobalKeys:
    prefix: str

    @property
    def generation(self) -> str:
        """int: the current run; INCR'd by /cleanup."""
        return f"{self.prefix}:generation"

    @property
    def dataset(self) -> str:
        """str: a mark of this Redis dataset, set once by the first /recs read that finds it missing. It changes
        only when Redis lost its data; a replica that sees it change drops everything it cached (versions start
        over after such a loss, so they alone cannot tell)."""
        return f"{self.prefix}:dataset"

    @property
    def pipeline_generation(self) -> str:
        """int: the generation whose state the pipeline holds in memory (it resets on a change)."""
        return f"{self.prefix}:pipeline:generation"

    @property
    def pipeline_heartbeat(self) -> str:
        """str with a TTL: present while a pipeline process is alive."""
        return f"{self.prefix}:pipeline:heartbeat"

    @property
    def pipeline_leader(self) -> str:
        """str with a TTL: the token of the pipeline process that holds the lease (consumes and publishes)."""
        return f"{self.prefix}:pipeline:leader"

    @property
    def pipeline_leader_epoch(self) -> str:
        """int: INCR'd by every acquisition of the lease, so a holder can tell whether anyone held it since."""
        return f"{self.prefix}:pipeline:leader_epoch"

    @property
    def collectors(self) -> str:
        """set: instance ids of the collector processes that announced themselves (see ``collector``)."""
        return f"{self.prefix}:collectors"

    def collector(self, instance_id: str) -> str:
        """int with a TTL: the generation this collector process stamps on events; gone when it dies."""
        return f"{self.prefix}:collector:{instance_id}"

    @property
    def retrain_requests(self) -> str:
        """list: retrain requests pushed by tools/tests; the pipeline pops them."""
        return f"{self.prefix}:pipeline:retrain_requests"

    def generation_pattern(self, generation: int) -> str:
        return f"{self.prefix}:g{generation}:*"

    def for_generation(self, generation: int) -> RunKeys:
        return RunKeys(f"{self.prefix}:g{generation}")


@dataclass(frozen=True, slots=True)
class RunKeys:
    """Keys of one generation (one run between two /cleanup calls)."""

    base: str

    # --- catalog ---
    @property
    def catalog_ids(self) -> str:
        """list: item ids in the order they were first added; an item's position is its index everywhere."""
        return f"{self.base}:catalog:ids"

    @property
    def catalog_index(self) -> str:
        """hash: item id -> index into catalog_ids."""
        return f"{self.base}:catalog:index"

    @property
    def catalog_genres(self) -> str:
        """hash: item id -> JSON list of genres (a repeated add overwrites)."""
        return f"{self.base}:catalog:genres"

    @property
    def catalog_genre_names(self) -> str:
        """set: every genre name an /add_items batch of the run has named (bounds the genre matrix)."""
        return f"{self.base}:catalog:genre_names"

    @property
    def catalog_titles(self) -> str:
        """hash: item id -> human title, when the loader knew one (MovieLens)."""
        return f"{self.base}:catalog:titles"

    @property
    def catalog_version(self) -> str:
        """int: INCR'd by every /add_items batch, so replicas know when to reload the catalog."""
        return f"{self.base}:catalog:version"

    # --- events and global item statistics ---
    @property
    def events(self) -> str:
        """stream: every stored interaction (the durable log the pipeline retrains from)."""
        return f"{self.base}:events"

    @property
    def seen_messages(self) -> str:
        """set: ids of /interact messages already stored, for idempotent redelivery."""
        return f"{self.base}:events:seen"

    def store_replies(self, call_id: str) -> str:
        """string, expiring: the replies of one event-store script call, as JSON, so that a retry of a call whose
        reply was lost (the connection dropped after Redis ran it) gets them instead of seeing redeliveries."""
        return f"{self.base}:events:replies:{call_id}"

    @property
    def item_likes(self) -> str:
        """hash: item id -> number of likes."""
        return f"{self.base}:stats:likes"

    @property
    def item_dislikes(self) -> str:
        """hash: item id -> number of dislikes."""
        return f"{self.base}:stats:dislikes"

    @property
    def item_impressions(self) -> str:
        """hash: item id -> number of times /recs showed it (written by the recommendations service)."""
        return f"{self.base}:stats:impressions"

    @property
    def counters(self) -> str:
        """hash: run-wide counters (events, messages, duplicates, stale, recs served)."""
        return f"{self.base}:counters"

    # --- bandit snapshot (built by the pipeline, read by /recs) ---
    @property
    def bandit_snapshot(self) -> str:
        """bytes: an .npz of per-item likes/dislikes/impressions aligned with the catalog index."""
        return f"{self.base}:bandit:snapshot"

    @property
    def bandit_version(self) -> str:
        """int: INCR'd whenever a new snapshot is written."""
        return f"{self.base}:bandit:version"

    @property
    def co_likes(self) -> str:
        """bytes: an .npz of each item's top co-like neighbours (rows aligned with the catalog index)."""
        return f"{self.base}:co_likes:blob"

    @property
    def co_likes_version(self) -> str:
        """int: INCR'd whenever new co-like neighbours are written."""
        return f"{self.base}:co_likes:version"

    # --- models ---
    @property
    def model_current(self) -> str:
        """int: the published model version /recs serves; flipped atomically after the blob is written."""
        return f"{self.base}:model:current"

    @property
    def model_versions(self) -> str:
        """zset: published versions (score = version); old ones beyond the kept count are deleted."""
        return f"{self.base}:model:versions"

    @property
    def model_counter(self) -> str:
        """int: the version source (INCR)."""
        return f"{self.base}:model:counter"

    def model_blob(self, version: int) -> str:
        """bytes: an .npz with the item side of one model version (item factors, ids, neighbours)."""
        return f"{self.base}:model:{version}:blob"

    def model_user_factors(self, version: int) -> str:
        """hash user id -> float32 bytes: the user side of one model version, read per request by /recs (so a
        replica's memory does not grow with the number of users)."""
        return f"{self.base}:model:{version}:users"

    def model_meta(self, version: int) -> str:
        """str: JSON metadata of one model version (trained at, counts, MLflow run)."""
        return f"{self.base}:model:{version}:meta"

    # --- per-user state ---
    def user_shown(self, user_id: str) -> str:
        """set: every item id /recs has returned to this user (never shown again)."""
        return f"{self.base}:user:{user_id}:shown"

    def user_feedback(self, user_id: str) -> str:
        """hash: item id -> "like" | "dislike" (the user's latest answer per item)."""
        return f"{self.base}:user:{user_id}:feedback"

    def user_history(self, user_id: str) -> str:
        """list: JSON {item_id, action, ts} newest first, capped (for the debug UI)."""
        return f"{self.base}:user:{user_id}:history"

    def user_twins(self, user_id: str) -> str:
        """str: what users who answered like this one liked and were shown, one ``item<TAB>liked<TAB>shown``
        line per item (``recsys_core.algorithms.twins.TwinLift``), written by the pipeline with a TTL."""
        return f"{self.base}:user:{user_id}:twins"

    @property
    def twin_links(self) -> str:
        """hash user id -> twin user id: the pipeline's links between twins (``ReactionBook.link``), kept so a
        restarted pipeline links its users again."""
        return f"{self.base}:twins:links"

    def user_ab_tally(self, user_id: str) -> str:
        """hash: g (experiment group), n (impressions), l (likes) of this user, for per-user A/B intervals."""
        return f"{self.base}:user:{user_id}:ab"

    def user_sources(self, user_id: str) -> str:
        """hash: item id -> JSON {source, group}: why /recs chose an item it showed (for the debug UI)."""
        return f"{self.base}:user:{user_id}:sources"

    # --- logs and status ---
    @property
    def recs_log(self) -> str:
        """stream: one entry per /recs answer with the user's experiment group (capped)."""
        return f"{self.base}:recs:log"

    @property
    def pipeline_status(self) -> str:
        """hash: last training time, duration, MLflow run id/url, offline metrics."""
        return f"{self.base}:pipeline:status"

    @property
    def run_uid(self) -> str:
        """string: a random id of this run, so that MLflow tells it from an earlier run of the same generation
        number (a Redis that lost its data counts generations from 0 again, while MLflow keeps its runs)."""
        return f"{self.base}:run_uid"
