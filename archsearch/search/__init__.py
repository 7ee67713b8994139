"""The search layer: the only part of archsearch that knows Optuna.

Owns the study and its storage (`storage`, `journal`, `retry`), the one engine that runs every
trial and the events it emits (`engine`, `events`), trial sources (sampling, ablation queues),
workers, heartbeats and signals, and the checks made before a study writes (`preflight`). May
import everything below it (trial, train, measure, data, nn, plan, schema, metrics, errors),
never `results`, `folder`, `report`, `ablation` or `cli`: those observe the engine's events.
"""
