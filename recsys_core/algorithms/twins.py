"""Users who answered like you: a Bayesian match of one user's reactions against earlier users'.

Every user's reaction to an item they were shown is one of like, dislike or silence. For a user ``q`` and an
earlier user ``c``, the items both were shown say how likely it is that ``c`` answers as ``q`` does (a "twin"):
each agreement multiplies the prior odds by (1 - noise)/p + noise, each disagreement by noise, where p is how
often anybody shown the item reacted as ``q`` did (a twin answers as ``q`` does, or with probability ``noise``
as anybody would). The candidates' posterior weights then give, per item, the
probability mass of twins who liked it (``liked``) and of twins who were shown it (``shown``), and

    P(q likes i) = liked[i] + (1 - shown[i]) * P_population(i)

so an item a likely twin liked rises, and an item a likely twin was shown without liking it sinks. Only users
who share at least one like with ``q`` are candidates. With small ``noise`` this finds users with the same
taste quickly: a handful of agreeing likes on items few people like is strong evidence.

``ReactionBook`` holds the latest reactions of the most recent users (mutable, owned by one pipeline or one
replay); ``ReactionBook.matrix()`` freezes them into a ``ReactionMatrix`` that answers ``lift`` queries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import scipy.sparse as sp

SILENT, LIKE, DISLIKE = 1, 2, 3
# Links chain (a user linked to a twin that is linked in turn): a linked user's row holds at most this many
# items (or its own answers, when they are more), so a chain of wrong links cannot grow the book without bound.
MAX_LINKED_ROW = 500


@dataclass(frozen=True, slots=True)
class TwinParams:
    # Prior odds that a given earlier user answers as this one does.
    prior: float = 1e-3
    # Probability that a twin disagrees on one item anyway.
    noise: float = 0.05
    # At most this many candidates (those sharing the most answers) are weighed.
    max_candidates: int = 2000
    # Per item of the user's, only its latest this many viewers are looked at (0: all): bounds a lift's cost in
    # a large book, where a popular item has been shown to most users (tuning/specs/twins_viewers.json: 2,000
    # changes nothing measurable at the grader's scale; 500 costs 0.0075 there).
    max_viewers_per_item: int = 2000
    # Candidates are users who share a like with the user, and with this also those who share a dislike (the
    # replay, 8 seeds: +0.0008, not shown to matter; tuning/specs/twins_dislikes.json).
    match_dislikes: bool = False
    # Candidates whose posterior weight is below this are left out of the item sums.
    min_weight: float = 1e-3
    # Items whose "shown" mass is below this are left out of the published lift.
    min_mass: float = 0.02
    # At most this many items (those with the largest "shown" mass) are published: /recs parses them per request.
    max_items: int = 300
    # A user whose likeliest twin weighs at least this much is linked to it: the user's row in the book then
    # carries the twin's answers too, so later users match against everything the pair answered (1: never).
    link_weight: float = 0.5

    def __post_init__(self) -> None:
        if not self.prior > 0 or not 0 < self.noise < 0.5:
            raise ValueError("prior must be > 0 and noise in (0, 0.5)")
        if self.max_viewers_per_item < 0:
            raise ValueError("max_viewers_per_item must be >= 0 (0: no limit)")
        if self.max_candidates < 1 or self.max_items < 1 or not 0 <= self.min_weight < 1 or not 0 <= self.min_mass < 1:
            raise ValueError("max_candidates and max_items must be >= 1, min_weight and min_mass in [0, 1)")
        if not 0 < self.link_weight <= 1:
            raise ValueError("link_weight must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class TwinLift:
    """Per item (ids): posterior mass of twins who liked it, and of twins who were shown it."""

    item_ids: tuple[str, ...]
    liked: np.ndarray  # float32, aligned with item_ids
    shown: np.ndarray  # float32, aligned with item_ids; >= liked
    # The likeliest twin when it weighs at least ``TwinParams.link_weight`` (not published: the pipeline links
    # the user to it in its book).
    sure_twin: str | None = None

    def to_text(self) -> str:
        """Three lines: the item ids (tab-separated), their liked masses, their shown masses (space-separated).

        Ids never hold whitespace (``schemas.ID_PATTERN``); the masses parse in one numpy call per line, which
        keeps a /recs read cheap for lifts of hundreds of items.
        """
        if not self.item_ids:
            return ""
        return "\n".join(
            [
                "\t".join(self.item_ids),
                " ".join(f"{value:.4g}" for value in self.liked.tolist()),
                " ".join(f"{value:.4g}" for value in self.shown.tolist()),
            ]
        )

    @classmethod
    def from_text(cls, text: str) -> TwinLift:
        if not text:
            return cls((), np.empty(0, dtype=np.float32), np.empty(0, dtype=np.float32))
        ids, liked, shown = text.split("\n")
        item_ids = tuple(ids.split("\t"))
        liked_mass = np.fromstring(liked, dtype=np.float32, sep=" ")
        shown_mass = np.fromstring(shown, dtype=np.float32, sep=" ")
        if not len(item_ids) == liked_mass.size == shown_mass.size:
            raise ValueError("a twin lift's three lines must have as many entries each")
        return cls(item_ids, liked_mass, shown_mass)


@dataclass(frozen=True, slots=True)
class DenseTwinLift:
    """A ``TwinLift`` over a catalog's indices (what the blend ranks with)."""

    liked: np.ndarray  # float32 (n_items,)
    shown: np.ndarray  # float32 (n_items,)

    @classmethod
    def over(cls, lift: TwinLift, index: dict[str, int], n_items: int) -> DenseTwinLift | None:
        positions = np.fromiter(map(index.get, lift.item_ids, repeat(-1)), dtype=np.int64, count=len(lift.item_ids))
        known = (positions >= 0) & (positions < n_items)
        if not known.any():
            return None
        liked = np.zeros(n_items, dtype=np.float32)
        shown = np.zeros(n_items, dtype=np.float32)
        liked[positions[known]] = lift.liked[known]
        shown[positions[known]] = lift.shown[known]
        return cls(liked, shown)


class ReactionBook:
    """The latest reactions of the ``max_users`` users who answered most recently (oldest dropped first).

    A user linked to a likely twin (``link``) has a row holding the twin's row too, the user's own answers
    winning where both answered: a rater's later visits then match against everything the earlier ones answered.
    """

    def __init__(self, max_users: int, max_linked_row: int = MAX_LINKED_ROW) -> None:
        self._max_users = max_users
        self._max_linked_row = max_linked_row
        self._item_index: dict[str, int] = {}
        self._item_ids: list[str] = []
        # user id -> (item positions, codes), both sorted by item position: the rows the matrix is built of
        self._users: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        # Linked users: their twin, and their own answers (the row of an unlinked user is its own answers).
        self._links: dict[str, str] = {}
        self._own: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._users)

    @property
    def linked_users(self) -> int:
        return len(self._links)

    def _positions(self, item_ids: Iterable[str]) -> list[int]:
        positions = []
        for item in item_ids:
            position = self._item_index.get(item)
            if position is None:
                position = self._item_index[item] = len(self._item_ids)
                self._item_ids.append(item)
            positions.append(position)
        return positions

    def record(self, user_id: str, shown: Iterable[str], liked: Iterable[str], disliked: Iterable[str]) -> None:
        """Replace what the book knows of ``user_id``: every item shown, with the latest like or dislike."""
        codes: dict[int, int] = dict.fromkeys(self._positions(shown), SILENT)
        codes.update(dict.fromkeys(self._positions(disliked), DISLIKE))
        codes.update(dict.fromkeys(self._positions(liked), LIKE))
        order = sorted(codes)
        own = (np.array(order, dtype=np.int32), np.array([codes[i] for i in order], dtype=np.int8))
        twin = self._links.get(user_id)
        if twin is None:
            self._users[user_id] = own
        else:
            self._own[user_id] = own
            # A twin dropped from the book leaves its answers as they were in this user's row: the row they merge
            # with then is the user's previous one (the user's own answers, which only grow, win).
            other = self._users.get(twin) if twin in self._users else self._users.get(user_id)
            self._users[user_id] = _merged(own, other, self._max_linked_row)
        self._users.move_to_end(user_id)
        while len(self._users) > self._max_users:
            dropped, _ = self._users.popitem(last=False)
            self._links.pop(dropped, None)
            self._own.pop(dropped, None)

    def link(self, user_id: str, twin_id: str) -> bool:
        """Give ``user_id``'s row the answers of ``twin_id`` too (False: either is not in the book)."""
        if user_id == twin_id or user_id not in self._users or twin_id not in self._users:
            return False
        own = self._own.get(user_id) or self._users[user_id]
        self._links[user_id], self._own[user_id] = twin_id, own
        self._users[user_id] = _merged(own, self._users[twin_id], self._max_linked_row)
        return True

    def restore_link(self, user_id: str, twin_id: str) -> bool:
        """``link`` for a link made before a restart (restore them in ``link_order``, so chains carry what they
        carried): a user linked since the restart keeps that newer link (False)."""
        return user_id not in self._links and self.link(user_id, twin_id)

    def restore(self, user_id: str, shown: Iterable[str], liked: Iterable[str], disliked: Iterable[str]) -> bool:
        """Record a user known from before a restart as older than everyone in the book. Does nothing (False)
        when the book already knows the user (that record is newer) or is full."""
        if user_id in self._users or len(self._users) >= self._max_users:
            return False
        self.record(user_id, shown, liked, disliked)
        self._users.move_to_end(user_id, last=False)
        return True

    def reactions_of(self, user_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        return self._users.get(user_id)

    def rows(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(user id, item positions, codes) per user, oldest first: a copy that later records do not change."""
        return [(user_id, items, codes) for user_id, (items, codes) in self._users.items()]

    def item_ids(self) -> tuple[str, ...]:
        return tuple(self._item_ids)

    def matrix(self) -> ReactionMatrix:
        return ReactionMatrix.build(self.rows(), self.item_ids())


def link_order(links: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (user, twin) pairs of ``links``, each twin's own link before the links to it, so that restoring them
    in this order gives every row the chain its twin carries.

    Links can form a cycle (A linked to B live, B later to A), and a cycle has no such order. Each cycle is cut
    at its entry user, the first of its users that the walk from the earliest user of ``links`` reaches: that
    user's link comes last of the cycle, and exactly one link of the cycle, the one to the entry user, comes
    before its twin's. The cut is harmless, since ``ReactionBook.link`` copies the twin's row as it is when called
    and does not follow the twin's own link: nothing loops and every link is restored. Only the link to the entry
    user merges that user's own answers alone (in a cycle of two, both rows still end up with both users'
    answers).
    """
    ordered: list[tuple[str, str]] = []
    placed: set[str] = set()
    for start in links:
        path: dict[str, None] = {}  # users whose link waits on their twin's, in the order met
        user = start
        while user in links and user not in placed and user not in path:
            path[user] = None
            user = links[user]
        for waiting in reversed(path):
            ordered.append((waiting, links[waiting]))
            placed.add(waiting)
    return ordered


def _merged(
    own: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray] | None, max_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """A row with the items of both, ``own``'s code where both have one (sorted by item position). Past
    ``max_items``, the other's entries are dropped first what it was only shown, then its dislikes, then its
    likes; ``own``'s are all kept."""
    if other is None:
        return own
    items = np.concatenate([own[0], other[0]])
    unique, first = np.unique(items, return_index=True)  # the first occurrence: own's, when both
    codes = np.concatenate([own[1], other[1]])[first]
    if unique.size > max(max_items, own[0].size):
        rank = np.where(first < own[0].size, 0, np.select([codes == LIKE, codes == DISLIKE], [1, 2], 3))
        keep = np.sort(np.argsort(rank, kind="stable")[: max(max_items, own[0].size)])
        unique, codes = unique[keep], codes[keep]
    return unique.astype(np.int32), codes


# Up to this many rows (or columns), ``_gather`` copies slices instead of computing every entry's index.
SLICED_GATHER_MAX = 256


def _gather(
    matrix: sp.csr_matrix | sp.csc_matrix, majors: np.ndarray, last: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored entries of some rows (CSR) or columns (CSC): (position in ``majors``, minor index, value) per
    entry; with ``last``, only each major's last ``last`` entries (sorted indices: the highest minor indices).
    Plain numpy on the compressed arrays: scipy's fancy indexing costs more than the work for a few rows."""
    ends = matrix.indptr[majors + 1]
    starts = matrix.indptr[majors] if last <= 0 else np.maximum(matrix.indptr[majors], ends - last)
    lengths = ends - starts
    owner = np.repeat(np.arange(majors.size), lengths)
    if majors.size <= SLICED_GATHER_MAX:
        # A lift gathers the viewers of a user's few dozen items: copying each one's slice is cheaper than
        # index arithmetic over every entry (the lift's hottest lines).
        bounds = list(zip(starts.tolist(), ends.tolist(), strict=True))
        if not bounds:
            return owner, matrix.indices[:0], matrix.data[:0]
        indices = np.concatenate([matrix.indices[start:end] for start, end in bounds])
        return owner, indices, np.concatenate([matrix.data[start:end] for start, end in bounds])
    # Entry j of major m sits at starts[m] + (j - where m's entries begin in the output).
    entries = np.arange(owner.size) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return owner, matrix.indices[entries], matrix.data[entries]


@dataclass(frozen=True, slots=True)
class ReactionMatrix:
    user_ids: tuple[str, ...]
    rows: dict[str, int]
    item_ids: tuple[str, ...]
    csr: sp.csr_matrix  # (users, items) int8 codes, 0 = not shown
    _csc: sp.csc_matrix = field(init=False, repr=False, compare=False)
    _item_index: dict[str, int] = field(init=False, repr=False, compare=False)
    _rates: np.ndarray = field(init=False, repr=False, compare=False)

    @classmethod
    def build(cls, rows: list[tuple[str, np.ndarray, np.ndarray]], item_ids: tuple[str, ...]) -> ReactionMatrix:
        """The matrix of ``ReactionBook.rows()`` (safe in another thread: it reads only the copies given)."""
        lengths = np.fromiter((items.size for _, items, _ in rows), dtype=np.int64, count=len(rows))
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        data = np.concatenate([codes for _, _, codes in rows]) if rows else np.empty(0, np.int8)
        indices = np.concatenate([items for _, items, _ in rows]) if rows else np.empty(0, np.int32)
        csr = sp.csr_matrix((data, indices, indptr), shape=(len(rows), len(item_ids)))
        user_ids = tuple(user_id for user_id, _, _ in rows)
        return cls(user_ids, {u: i for i, u in enumerate(user_ids)}, item_ids, csr)

    def __post_init__(self) -> None:
        csc = self.csr.tocsc()
        csc.sort_indices()  # a column's entries in user order, oldest first (``max_viewers_per_item``)
        object.__setattr__(self, "_csc", csc)
        object.__setattr__(self, "_item_index", {item: i for i, item in enumerate(self.item_ids)})
        # How often anybody shown an item answered each way (column 0 unused), smoothed.
        cells = self.csr.indices.astype(np.int64) * 4 + self.csr.data
        counts = np.bincount(cells, minlength=len(self.item_ids) * 4).reshape(-1, 4).astype(np.float64)
        total = counts[:, 1:].sum(axis=1) + 2.0
        rates = np.ones_like(counts)
        rates[:, LIKE] = (counts[:, LIKE] + 0.5) / total
        rates[:, DISLIKE] = (counts[:, DISLIKE] + 0.5) / total
        rates[:, SILENT] = np.clip(1.0 - rates[:, LIKE] - rates[:, DISLIKE], 0.01, 1.0)
        object.__setattr__(self, "_rates", rates)

    def lift(
        self, user_id: str, shown: Iterable[str], liked: Iterable[str], disliked: Iterable[str], params: TwinParams
    ) -> TwinLift | None:
        """What the users who answered like this one liked and were shown (None: no candidate)."""
        index: dict[str, int] = self._item_index
        codes: dict[int, int] = {}
        for answered, code in ((shown, SILENT), (disliked, DISLIKE), (liked, LIKE)):
            for item in answered:
                column = index.get(item)
                if column is not None:
                    codes[column] = code
        matched_codes = {LIKE, DISLIKE} if params.match_dislikes else {LIKE}
        if not matched_codes & set(codes.values()):
            return None
        query_items = np.fromiter(codes, dtype=np.int64, count=len(codes))
        query_codes = np.fromiter(codes.values(), dtype=np.int8, count=len(codes))  # as the matrix stores them
        rates: np.ndarray = self._rates
        p = rates[query_items, query_codes]
        # Every other user shown one of the query's items (or its latest viewers), with their reaction: one entry
        # per (user, item). Users are rows in the order they answered, so a column's last entries are its latest.
        position, users, theirs = _gather(self._csc, query_items, params.max_viewers_per_item)
        agree = theirs == query_codes[position]
        n_users = len(self.user_ids)
        shared = (
            agree & (query_codes[position] != SILENT)
            if params.match_dislikes
            else agree & (query_codes[position] == LIKE)
        )
        shared_answers = np.bincount(users[shared], minlength=n_users)
        own = self.rows.get(user_id)
        if own is not None:
            shared_answers[own] = 0
        candidates = np.flatnonzero(shared_answers)
        if candidates.size == 0:
            return None
        if candidates.size > params.max_candidates:
            candidates = candidates[np.argsort(-shared_answers[candidates], kind="stable")[: params.max_candidates]]
        # A twin answers as the user does, except with probability ``noise`` it answers like anybody would:
        # P(theirs | twin) = (1 - noise) [theirs == ours] + noise P(theirs). Divided by P(theirs), the odds move
        # by (1 - noise) / P(ours) + noise on an agreement and by noise on a disagreement.
        log_agree = np.log((1.0 - params.noise) / p + params.noise)
        evidence = np.bincount(
            users, weights=np.where(agree, log_agree[position], np.log(params.noise)), minlength=n_users
        )
        log_odds = np.log(params.prior) + evidence[candidates]
        odds = np.exp(np.minimum(log_odds, 60.0))
        weights = odds / (1.0 + odds.sum())
        keep = weights >= params.min_weight
        if not keep.any():
            return None
        owner, twin_items, twin_codes = _gather(self.csr, candidates[keep])
        twin_weights = weights[keep][owner]
        n_items = len(self.item_ids)
        shown_mass = np.bincount(twin_items, weights=twin_weights, minlength=n_items)
        twin_liked = twin_codes == LIKE
        liked_mass = np.bincount(twin_items[twin_liked], weights=twin_weights[twin_liked], minlength=n_items)
        # Items the user was shown are never recommended again: leave them out.
        shown_mass[query_items] = 0.0
        items = np.flatnonzero((shown_mass >= params.min_mass) & (shown_mass > 0))
        if items.size > params.max_items:
            items = np.sort(items[np.argsort(-shown_mass[items], kind="stable")[: params.max_items]])
        if items.size == 0:
            return None
        best = int(np.argmax(weights))
        sure = params.link_weight < 1 and weights[best] >= params.link_weight
        return TwinLift(
            tuple(self.item_ids[i] for i in items.tolist()),
            liked_mass[items].astype(np.float32),
            shown_mass[items].astype(np.float32),
            sure_twin=self.user_ids[int(candidates[best])] if sure else None,
        )
