"""The pipeline (port 5002 for health/status/retrain): consumes events, keeps the bandit current, trains BPR."""
