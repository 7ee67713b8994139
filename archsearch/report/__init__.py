"""Reports: pure computations on the results table, and their renderers.

Computations (pandas/numpy, no plotting): `pareto` (fronts, knee), `hypervolume` (exact volume,
reference point, history), `effects` (bootstrap medians per field value), `importance` (Optuna
PED-ANOVA per objective), `analysis` (all of them for one or several studies).
Renderers: `plots` (matplotlib PNGs), `document` (Markdown and self-contained HTML), `sections`
(the report's text), `samples` (the front's sample grids: planned, drawn on the CPU, cached,
and their section), `build` (`archsearch report`: files and the console summary), `console`
and `network` (views used by other commands). Nothing here imports torch except `network`, and
`samples` inside the function that draws a grid.
Submodules are imported where used, so that `import archsearch.report.console` stays light.
May import `results`, `metrics`, `schema` and `errors` (and the search layer's event base class,
for the live display; inside functions, `samples` to draw grids and `export.source` for the
name of a trial's checkpoint); importing any module here loads no torch.
"""
