"""Reports: pure computations on the results table, and their renderers.

Computations (pandas/numpy, no plotting): `pareto` (fronts, knee), `hypervolume` (exact volume,
reference point, history), `effects` (bootstrap medians per field value), `importance` (Optuna
PED-ANOVA per objective), `analysis` (all of them for one or several studies).
Renderers: `plots` (matplotlib PNGs), `document` (Markdown and self-contained HTML), `sections`
(the report's text), `build` (`archsearch report`: files and the console summary), `console`
and `network` (views used by other commands). Nothing here imports torch except `network`.
Submodules are imported where used, so that `import archsearch.report.console` stays light.
May import `results`, `metrics`, `schema` and `errors` (and the search layer's event base class,
for the live display); importing any module here loads no torch.
"""
