"""The search layer: the only part of archsearch that knows Optuna."""
