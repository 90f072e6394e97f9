"""Pure numerical building blocks: the bandit, the BPR wrapper, top-k selection and re-ranking."""
