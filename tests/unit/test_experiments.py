"""A/B experiments: config validation, strategy building and the stable hash assignment."""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import mmh3
import pytest

from recsys_core.algorithms.bandit import BetaThompson
from recsys_core.experiments import (
    BUCKETS,
    Experiment,
    ExperimentConfig,
    ExperimentConfigError,
    GroupOutcome,
    live_report,
    load_experiment,
    parse_experiment,
)
from recsys_core.strategies.bandit import ThompsonStrategy
from recsys_core.strategies.bpr import BPRStrategy

THREE_GROUPS = """
name: ranking-test
groups:
  - {name: A, strategy: thompson, share: 0.5}
  - {name: B, strategy: bpr, share: 0.3, params: {beta_per_silent_impression: 1.0}}
  - {name: C, strategy: thompson, share: 0.2, params: {prior_alpha: 2.0}}
"""


def _config(name: str = "exp", shares: tuple[float, ...] = (0.5, 0.5), strategy: str = "thompson") -> dict[str, Any]:
    groups = [{"name": f"G{i}", "strategy": strategy, "share": share} for i, share in enumerate(shares)]
    return {"name": name, "groups": groups}


def _experiment(config: dict[str, Any] | str) -> Experiment:
    return Experiment.from_config(parse_experiment(config, "test"))


def _user_ids(n: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n)]


# --- configuration errors ----------------------------------------------------------------------------------


def test_shares_not_adding_to_one() -> None:
    with pytest.raises(ExperimentConfigError) as error:
        parse_experiment(_config(shares=(0.5, 0.6)), "EXPERIMENT_CONFIG")
    message = str(error.value)
    assert "invalid experiment configuration in EXPERIMENT_CONFIG" in message
    assert "group shares must add up to 1, got 1.1" in message
    assert "G0=0.5" in message and "G1=0.6" in message


def test_shares_within_float_tolerance_are_fine() -> None:
    experiment = _experiment(_config(shares=(0.1,) * 10))
    assert len(experiment.groups) == 10
    assert [g.upper_bucket for g in experiment.groups] == [1000 * (i + 1) for i in range(10)]


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_share_out_of_range(share: float) -> None:
    with pytest.raises(ExperimentConfigError):
        parse_experiment(_config(shares=(share, 1.0 - share)), "test")


def test_duplicate_group_names() -> None:
    config = {"name": "x", "groups": [{"name": "A", "strategy": "thompson", "share": 0.5}] * 2}
    with pytest.raises(ExperimentConfigError, match="group names must be unique"):
        parse_experiment(config, "test")


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(ExperimentConfigError) as error:
        _experiment(_config(name="exp-1", shares=(1.0,), strategy="magic"))
    message = str(error.value)
    assert "experiment 'exp-1', group 'G0'" in message
    assert "unknown strategy 'magic'" in message
    assert "known: blend, bpr, thompson" in message


def test_unknown_param_is_an_error() -> None:
    config = _config(shares=(1.0,))
    config["groups"][0]["params"] = {"exploration": 3}
    with pytest.raises(ExperimentConfigError) as error:
        _experiment(config)
    assert "invalid parameters for strategy 'thompson'" in str(error.value)
    assert "exploration" in str(error.value)


def test_invalid_prior_is_an_error() -> None:
    config = _config(shares=(1.0,), strategy="bpr")
    config["groups"][0]["params"] = {"prior_alpha": 0}
    with pytest.raises(ExperimentConfigError, match="Beta priors must be positive"):
        _experiment(config)


@pytest.mark.parametrize(
    "raw",
    ["name: [unclosed", "just a string", "[1, 2]", "{}", '{"name": "x", "groups": []}', '{"name": "x", "extra": 1}'],
)
def test_malformed_configs(raw: str) -> None:
    with pytest.raises(ExperimentConfigError, match="invalid experiment configuration in somewhere"):
        parse_experiment(raw, "somewhere")


# --- building ----------------------------------------------------------------------------------------------


def test_groups_and_strategies_built() -> None:
    experiment = _experiment(THREE_GROUPS)
    assert experiment.name == "ranking-test"
    assert [g.name for g in experiment.groups] == ["A", "B", "C"]
    assert [g.strategy_name for g in experiment.groups] == ["thompson", "bpr", "thompson"]
    assert [g.upper_bucket for g in experiment.groups] == [5000, 8000, BUCKETS]
    assert experiment.control.name == "C"  # the group named C, wherever it is listed (the grader's rule)
    a, b, c = (g.strategy for g in experiment.groups)
    assert isinstance(a, ThompsonStrategy) and a.bandit == BetaThompson()
    assert isinstance(b, BPRStrategy) and b.fallback == ThompsonStrategy(BetaThompson(beta_per_silent_impression=1.0))
    assert isinstance(c, ThompsonStrategy) and c.bandit.prior_alpha == 2.0
    assert experiment.describe()["groups"][1]["params"] == {"beta_per_silent_impression": 1.0}


def test_single() -> None:
    config = ExperimentConfig.single("bpr", {"prior_beta": 2.0})
    assert config.name == "default"
    assert [(g.name, g.strategy, g.share, g.params) for g in config.groups] == [("C", "bpr", 1.0, {"prior_beta": 2.0})]


# --- assignment --------------------------------------------------------------------------------------------


def test_bucket_is_the_documented_hash() -> None:
    experiment = _experiment(THREE_GROUPS)
    salt = mmh3.hash("ranking-test", signed=False)
    assert experiment.salt_seed == salt
    for user in _user_ids(50):
        assert experiment.bucket(user) == mmh3.hash(user, seed=salt, signed=False) % BUCKETS


def test_assignment_follows_bucket_boundaries() -> None:
    experiment = _experiment(THREE_GROUPS)
    for user in _user_ids(3000):
        bucket = experiment.bucket(user)
        expected = "A" if bucket < 5000 else "B" if bucket < 8000 else "C"
        assert experiment.assign(user).name == expected


def test_assignment_deterministic_across_instances() -> None:
    first, second = _experiment(THREE_GROUPS), _experiment(THREE_GROUPS)
    users = _user_ids(1000)
    assert [first.assign(u).name for u in users] == [second.assign(u).name for u in users]
    assert [first.assign(u).name for u in users] == [first.assign(u).name for u in users]


def test_salt_reshuffles_users() -> None:
    users = _user_ids(4000)
    one = _experiment(_config(name="exp-one"))
    two = _experiment(_config(name="exp-two"))
    moved = sum(one.assign(u).name != two.assign(u).name for u in users) / len(users)
    assert 0.4 < moved < 0.6  # independent 50/50 splits disagree half the time


def test_group_proportions() -> None:
    experiment = _experiment(THREE_GROUPS)
    users = _user_ids(20_000, seed=99)
    counts = Counter(experiment.assign(u).name for u in users)
    for name, share in (("A", 0.5), ("B", 0.3), ("C", 0.2)):
        assert abs(counts[name] / len(users) - share) < 0.02, (name, counts)


# --- load_experiment ---------------------------------------------------------------------------------------


def test_load_inline_yaml() -> None:
    experiment = load_experiment(None, THREE_GROUPS, "thompson")
    assert [g.name for g in experiment.groups] == ["A", "B", "C"]


def test_load_inline_json_wins_over_file(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(THREE_GROUPS, encoding="utf-8")
    inline = json.dumps(_config(name="from-json", shares=(0.25, 0.75)))
    experiment = load_experiment(path, inline, "thompson")
    assert experiment.name == "from-json"
    assert [g.upper_bucket for g in experiment.groups] == [2500, BUCKETS]


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(THREE_GROUPS, encoding="utf-8")
    assert load_experiment(path, None, "thompson").name == "ranking-test"
    assert load_experiment(path, "", "thompson").name == "ranking-test"  # an empty inline value is "not set"


def test_load_bad_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ngroups:\n  - {name: A, strategy: thompson, share: 0.7}\n", encoding="utf-8")
    with pytest.raises(ExperimentConfigError, match=f"invalid experiment configuration in {path}"):
        load_experiment(path, None, "thompson")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExperimentConfigError, match="cannot read EXPERIMENT_FILE"):
        load_experiment(tmp_path / "missing.yaml", None, "thompson")


def test_load_default_single_group() -> None:
    experiment = load_experiment(None, None, "bpr")
    assert experiment.name == "default"
    assert [(g.name, g.strategy_name, g.upper_bucket) for g in experiment.groups] == [("C", "bpr", BUCKETS)]
    assert isinstance(experiment.assign("anyone").strategy, BPRStrategy)


@pytest.mark.parametrize(
    ("strategy", "parameter", "value"),
    [
        # The reviewer's case: JSON's Infinity (a string to YAML), then YAML's own non-finite floats.
        ("blend", "explore_slots", "Infinity"),
        ("blend", "explore_slots", ".inf"),
        ("blend", "prior_strength", ".nan"),
        ("blend", "prior_mean", ".nan"),
        ("blend", "taste_weight", "-.inf"),
        ("blend", "diversity_weight", ".nan"),
        ("blend", "explore_below", ".nan"),
        ("thompson", "prior_alpha", ".nan"),
        ("thompson", "prior_alpha", "NaN"),  # pydantic reads the string as a float
        ("thompson", "beta_per_silent_impression", ".inf"),
        ("bpr", "prior_beta", "Infinity"),
    ],
)
def test_a_non_finite_strategy_param_is_refused_at_load(strategy: str, parameter: str, value: str) -> None:
    inline = (
        f'{{"name": "x", "groups": [{{"name": "C", "strategy": "{strategy}", "share": 1.0, '
        f'"params": {{"{parameter}": {value}}}}}]}}'
    )
    with pytest.raises(ExperimentConfigError) as error:
        load_experiment(None, inline, "blend")
    message = str(error.value)
    assert parameter in message
    assert "finite number" in message


def test_load_default_unknown_strategy() -> None:
    with pytest.raises(ExperimentConfigError, match="unknown strategy 'nope'"):
        load_experiment(None, None, "nope")


def test_the_like_rate_variance_takes_users_as_the_unit() -> None:
    """The per-user sums the scripts keep give the delta-method variance of a ratio of per-user totals."""
    rng = random.Random(7)
    shown = [rng.choice([10, 20, 40, 80]) for _ in range(300)]
    likes = [sum(rng.random() < 0.05 + 0.3 * (u % 3 == 0) for _ in range(n)) for u, n in enumerate(shown)]
    outcome = GroupOutcome(
        "C",
        impressions=sum(shown),
        likes=sum(likes),
        users=len(shown),
        likes_sq=sum(x * x for x in likes),
        impressions_sq=sum(n * n for n in shown),
        likes_x_impressions=sum(x * n for x, n in zip(likes, shown, strict=True)),
    )
    rate = sum(likes) / sum(shown)
    residuals = [x - rate * n for x, n in zip(likes, shown, strict=True)]
    mean_shown = sum(shown) / len(shown)
    expected = sum(e * e for e in residuals) / (len(shown) - 1) / (len(shown) * mean_shown**2)
    variance = outcome.like_rate_variance()
    assert variance is not None
    assert variance == pytest.approx(expected, rel=1e-9)
    # Users who like much or little make it wider than if every impression were an independent draw.
    assert variance > rate * (1 - rate) / sum(shown)
    assert GroupOutcome("C", impressions=10, likes=1, users=1).like_rate_variance() is None


def test_live_report_reads_each_groups_counters_and_compares_with_the_control() -> None:
    experiment = Experiment.from_config(
        parse_experiment(
            {
                "name": "e",
                "groups": [
                    {"name": "C", "strategy": "blend", "share": 0.5},
                    {"name": "T:1", "strategy": "thompson", "share": 0.5},
                ],
            },
            "test",
        )
    )
    # C: two users shown 50 each, liking 4 and 6; T:1: two users shown 100 each, liking 30 and 10.
    counters = {
        "recs": 30,
        "impressions": 300,
        **{"recs:C": 10, "impressions:C": 100, "likes:C": 10, "users:C": 2},
        **{"likes_sq:C": 16 + 36, "impressions_sq:C": 2 * 2500, "likes_x_impressions:C": 50 * 10},
        **{"recs:T:1": 20, "impressions:T:1": 200, "likes:T:1": 40, "dislikes:T:1": 5, "users:T:1": 2},
        **{"likes_sq:T:1": 900 + 100, "impressions_sq:T:1": 2 * 10000, "likes_x_impressions:T:1": 100 * 40},
    }
    control, treatment = live_report(experiment, counters)
    assert (control["name"], control["users"], control["impressions"], control["likes"], control["dislikes"]) == (
        "C",
        2,
        100,
        10,
        0,
    )
    assert control["like_rate"] == 0.1 and control["vs_control"] is None
    assert treatment["like_rate"] == 0.2 and treatment["dislikes"] == 5
    # Per user: C's residuals are -1 and +1 around 5 likes each, T:1's +10 and -10 around 20.
    var_c = 2 / 1 / (2 * 50**2)
    var_t = 200 / 1 / (2 * 100**2)
    low, high = control["like_rate_95"]
    half_c = 1.959964 * math.sqrt(var_c)
    assert low == pytest.approx(0.1 - half_c) and high == pytest.approx(0.1 + half_c)
    versus = treatment["vs_control"]
    assert versus["difference"] == pytest.approx(0.1)
    half = 1.959964 * math.sqrt(var_c + var_t)
    assert versus["low"] == pytest.approx(0.1 - half) and versus["high"] == pytest.approx(0.1 + half)

    empty = live_report(experiment, {})
    assert empty[0]["like_rate"] is None and empty[0]["like_rate_95"] is None and empty[1]["vs_control"] is None


def test_the_control_is_the_group_named_c_else_the_first_in_the_live_report_too() -> None:
    def experiment_of(names: list[str]) -> Experiment:
        groups = [{"name": name, "strategy": "blend", "share": 0.5} for name in names]
        return Experiment.from_config(parse_experiment({"name": "e", "groups": groups}, "test"))

    assert experiment_of(["A", "B"]).control.name == "A"
    listed_second = experiment_of(["T1", "C"])
    assert listed_second.control.name == "C"
    counters = {"impressions:T1": 100, "likes:T1": 20, "impressions:C": 100, "likes:C": 10}
    treatment, control = live_report(listed_second, counters)
    assert control["vs_control"] is None and treatment["name"] == "T1"


def test_a_share_too_small_for_a_bucket_is_refused_not_silently_empty() -> None:
    groups = [
        {"name": "C", "strategy": "blend", "share": 0.99995},
        {"name": "T1", "strategy": "blend", "share": 0.00005},
    ]
    with pytest.raises(ExperimentConfigError, match="gets none of the"):
        Experiment.from_config(parse_experiment({"name": "e", "groups": groups}, "test"))


# --- names and values that would break the header, the hash or the grader -----------------------------------


@pytest.mark.parametrize("name", ["Ω", "a\nb", " T1", "T1 ", "(none)", "a b", "x" * 33, ""])
def test_a_group_name_that_cannot_travel_in_the_header_is_refused(name: str) -> None:
    config = {"name": "x", "groups": [{"name": name, "strategy": "thompson", "share": 1.0}]}
    with pytest.raises(ExperimentConfigError, match="must be 1-32 characters of A-Z a-z 0-9"):
        parse_experiment(config, "test")


@pytest.mark.parametrize("name", ["C", "T1", "arm-2.b", "v:1+x_y", "x" * 32])
def test_header_safe_group_names_are_accepted(name: str) -> None:
    config = {"name": "x", "groups": [{"name": name, "strategy": "thompson", "share": 1.0}]}
    assert parse_experiment(config, "test").groups[0].name == name


def test_a_duplicate_yaml_key_is_refused_not_last_wins() -> None:
    # The experiment name is the hashing salt: a silently overridden name would reshuffle every user.
    raw = "name: first\nname: second\ngroups: [{name: C, strategy: thompson, share: 1.0}]\n"
    with pytest.raises(ExperimentConfigError, match="duplicate key 'name'"):
        parse_experiment(raw, "test")
    nested = "name: x\ngroups: [{name: C, strategy: thompson, share: 0.5, share: 1.0}]\n"
    with pytest.raises(ExperimentConfigError, match="duplicate key 'share'"):
        parse_experiment(nested, "test")


def test_yaml_merge_keys_still_share_defaults_between_groups() -> None:
    raw = """
name: x
groups:
  - &arm {name: C, strategy: blend, share: 0.5, params: {explore_slots: 2.0}}
  - <<: *arm
    name: T1
"""
    groups = parse_experiment(raw, "test").groups
    assert [(g.name, g.share, g.params) for g in groups] == [
        ("C", 0.5, {"explore_slots": 2.0}),
        ("T1", 0.5, {"explore_slots": 2.0}),
    ]


def test_a_boolean_share_is_refused_an_integer_one_is_fine() -> None:
    with pytest.raises(ExperimentConfigError, match="share"):
        parse_experiment("name: x\ngroups: [{name: C, strategy: thompson, share: true}]\n", "test")
    assert parse_experiment("name: x\ngroups: [{name: C, strategy: thompson, share: 1}]\n", "test").groups[0].share == 1
