"""A simulated-user load generator that speaks the HardML contract and scores a deployment.

The flow (see ``grader.grading``): healthchecks, ``/cleanup``, the MovieLens catalog through ``/add_items``,
then simulated MovieLens users asking ``/recs`` and reporting likes/dislikes to ``/interact``. Everything the
service answers is kept as raw traces; metrics, reference points, the HardML score and A/B effects are pure
functions of those traces, written to ``summary.json`` and ``report.html``.
"""
