"""Personal and content signals over the catalog, each a score vector (higher = more likely liked).

All functions are pure numpy over the catalog's genre matrix, the global evidence and one user's profile.
"""

from __future__ import annotations

import numpy as np

from recsys_core.catalog import CatalogView


def taste_scores(
    catalog: CatalogView,
    liked: np.ndarray,
    disliked: np.ndarray,
    population_likes: np.ndarray,
    smoothing: float,
    dislike_weight: float,
) -> np.ndarray:
    """How much more than the population this user likes each item's genres (a smoothed log-lift).

    The user's genre distribution of likes is shrunk towards the population's by ``smoothing`` pseudo-likes,
    so one like moves little and a clear pattern moves a lot; dislikes subtract their genres' share.
    """
    n_items, n_genres = catalog.genre_matrix.shape
    if n_genres == 0 or (liked.size == 0 and disliked.size == 0):
        return np.zeros(n_items)
    population = population_genre_share(catalog, population_likes)
    return catalog.genre_mean @ genre_lift(catalog, liked, disliked, population, smoothing, dislike_weight)


def population_genre_share(catalog: CatalogView, population_likes: np.ndarray) -> np.ndarray:
    """Each genre's share of all likes (+1 per genre, so no share is 0): the taste profile's baseline."""
    population = population_likes @ catalog.genre_float + 1.0
    return population / population.sum()


def genre_lift(
    catalog: CatalogView,
    liked: np.ndarray,
    disliked: np.ndarray,
    population: np.ndarray,
    smoothing: float,
    dislike_weight: float,
) -> np.ndarray:
    """Per genre, the user's smoothed log-lift over ``population`` (``taste_scores`` averages it per item)."""
    genres = catalog.genre_float
    user_likes = genres[liked].sum(axis=0) if liked.size else np.zeros(genres.shape[1])
    user = (user_likes + smoothing * population) / (liked.size + smoothing)
    lift = np.log(user / population)
    if disliked.size and dislike_weight:
        share = genres[disliked].sum(axis=0) / (disliked.size + smoothing)
        lift = lift - dislike_weight * share
    return lift


def neighbour_scores(
    n_items: int, anchors: np.ndarray, neighbour_indices: np.ndarray, neighbour_sims: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(score, best anchor) per item: the summed similarity to the anchor items, and which anchor gave most.

    ``neighbour_indices``/``neighbour_sims`` hold each item's top neighbours (rows beyond them are unknown).
    """
    positions, items, sims = neighbour_entries(anchors, neighbour_indices, neighbour_sims, n_items)
    scores = np.bincount(items, weights=sims, minlength=n_items)
    return scores, strongest_label(items, sims, anchors[positions], n_items)


def neighbour_entries(
    anchors: np.ndarray, neighbour_indices: np.ndarray, neighbour_sims: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every listed neighbour of the anchors, flat: (position of its anchor in ``anchors``, item, similarity).

    Similarities are clipped at 0; anchors without a row and neighbours outside the catalog are left out.
    """
    known = np.flatnonzero(anchors < neighbour_indices.shape[0])
    rows = neighbour_indices[anchors[known]]
    sims = np.maximum(neighbour_sims[anchors[known]].astype(np.float64), 0.0)
    valid = rows < n_items
    positions = np.broadcast_to(known[:, None], rows.shape)[valid]
    return positions, rows[valid].astype(np.int64), sims[valid]


def strongest_label(items: np.ndarray, values: np.ndarray, labels: np.ndarray, n_items: int) -> np.ndarray:
    """Per item, the label of its largest positive value among the entries (the first of equals); -1 if none."""
    result = np.full(n_items, -1, dtype=np.int64)
    positive = values > 0
    items, values, labels = items[positive], values[positive], labels[positive]
    if items.size == 0:
        return result
    order = np.lexsort((-values, items))  # by item, then largest value first; stable among equals
    first = np.flatnonzero(np.r_[True, items[order][1:] != items[order][:-1]])
    result[items[order[first]]] = labels[order[first]]
    return result


def mmr_rerank(
    candidates: np.ndarray,
    relevance: np.ndarray,
    genre_matrix: np.ndarray,
    k: int,
    diversity_weight: float,
    genre_cap: int,
) -> np.ndarray:
    """Greedy maximal-marginal-relevance selection of ``k`` of ``candidates`` (best first).

    Each step picks the candidate maximising ``(1 - w) * relevance - w * max genre-Jaccard to the picked``,
    skipping items that would put any genre in more than ``genre_cap`` picked items (while others remain).
    ``relevance`` is aligned with ``candidates`` and should be on a 0..1 scale.
    """
    if candidates.size == 0 or k <= 0:
        return candidates[:0]
    genres = genre_matrix[candidates].astype(np.float64)
    sizes = genres.sum(axis=1)
    picked: list[int] = []
    max_similarity = np.zeros(candidates.size)
    genre_counts = np.zeros(genre_matrix.shape[1])
    available = np.ones(candidates.size, dtype=bool)
    for _ in range(min(k, candidates.size)):
        objective = (1.0 - diversity_weight) * relevance - diversity_weight * max_similarity
        within_cap = available & ~((genres > 0) & (genre_counts >= genre_cap)).any(axis=1)
        pool = within_cap if within_cap.any() else available
        choice = int(np.flatnonzero(pool)[np.argmax(objective[pool])])
        picked.append(choice)
        available[choice] = False
        genre_counts += genres[choice]
        overlap = genres @ genres[choice]
        union = sizes + sizes[choice] - overlap
        similarity = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
        max_similarity = np.maximum(max_similarity, similarity)
    return candidates[np.array(picked, dtype=np.int64)]
