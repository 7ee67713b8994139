"""The report's content: an `analysis.Report` and its figures turned into document blocks.

    blocks = report_blocks(report, figures, out_dir, samples)   # then document.to_markdown / to_html

Each section answers one question a reviewer asks: which trade-offs exist (front, knee), has the
search converged (hypervolume), what mattered (importance, marginal effects), where the loss
comes from (noise levels), what the front's models draw (sample grids, archsearch.report.samples),
and how the numbers were obtained (device, timing protocol, the shared validation set).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd

from ..metrics import METRICS, UNDER_LOAD_TOLERANCE
from ..results import setting_columns
from ..schema.paths import TRAIN, qualified
from .analysis import FrontView, Report, StudyAnalysis
from .console import format_metric, quality_columns
from .document import Block, Bullets, Heading, Image, Paragraph, Table
from .effects import value_label
from .hypervolume import REFERENCE_MARGIN
from .samples import SampleGrids, sample_blocks

__all__ = ["report_blocks", "front_display", "describe_reference", "hypervolume_box", "KNEE_DEFINITION"]

KNEE_DEFINITION = ("the front member nearest to the ideal point after scaling each objective to [0, 1] over the "
                   "front (0 = the front's best value, 1 = its worst)")


def report_blocks(report: Report, figures: dict[str, Path], out_dir: Path,
                  samples: dict[str, SampleGrids] | None = None) -> list[Block]:
    """The report's blocks; `samples` holds each study's drawn sample grids (report.samples)."""
    names = ", ".join(s.name for s in report.studies)
    blocks: list[Block] = [
        Heading(f"archsearch report: {names}", 1),
        Paragraph(f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC from the studies' storage. "
                  f"Objectives: {', '.join(f'`{o}` ({d})' for o, d in zip(report.objectives, report.directions))}."),
    ]
    several = len(report.studies) > 1
    if several:
        blocks += _comparison(report, figures)
    for study in report.studies:
        prefix = f"{study.name}-" if several else ""
        level = 3 if several else 2
        if several:
            blocks.append(Heading(f"Study {study.name}", 2))
        blocks += _summary(study, report, level)
        blocks += _front(study, report, figures.get(f"{prefix}pareto"), level)
        blocks += _baselines(study, report, level)
        blocks += _view(study, figures, prefix, level)
        blocks += _convergence(study, report, figures.get("hypervolume") if not several else None, level)
        blocks += _compute(study, figures.get(f"{prefix}rungs"), level)
        blocks += _importance(study, figures.get(f"{prefix}importance"), level)
        blocks += _effects(study, report, figures.get(f"{prefix}effects"), level)
        blocks += _buckets(study, figures.get(f"{prefix}buckets"), level)
        blocks += _verification(study, figures, prefix, level)
        blocks += sample_blocks((samples or {}).get(study.name), level)
        blocks += _failures(study, level)
        blocks += _protocol(study, level)
    return blocks


def _comparison(report: Report, figures: dict[str, Path]) -> list[Block]:
    rows = []
    for study in report.studies:
        best = {o: _best(study.feasible[o], d) for o, d in zip(report.objectives, report.directions)}
        rows.append({"study": study.name, "trials": len(study.input.df), "completed": len(study.completed),
                     "on the front": len(study.front), "hypervolume": f"{study.hypervolume:.4f}",
                     **{f"best {o}": format_metric(o, v) for o, v in best.items()}})
    blocks: list[Block] = [Heading("Comparison", 2)]
    if "fronts" in figures:
        blocks.append(Image(figures["fronts"], "Pareto fronts compared"))
    if "hypervolume" in figures:
        blocks.append(Image(figures["hypervolume"], "hypervolume over trials"))
    blocks.append(Table(pd.DataFrame(rows), caption=f"Hypervolumes share one reference point: {describe_reference(report)}."))
    return blocks


def _best(values: pd.Series, direction: str):
    values = values.dropna()
    if values.empty:
        return None
    return values.min() if direction == "minimize" else values.max()


def _summary(study: StudyAnalysis, report: Report, level: int) -> list[Block]:
    counts = study.counts
    states = ", ".join(f"{counts[s]} {s.lower()}" for s in ("COMPLETE", "FAIL", "PRUNED", "RUNNING", "WAITING") if counts.get(s))
    items = [f"**{len(study.input.df)} trials**: {states or 'none finished'}"
             + (f"; {counts['infeasible']} completed but infeasible" if counts.get("infeasible") else "")
             + (f"; {counts['reused']} reused an identical earlier trial" if counts.get("reused") else "")]
    if len(study.front):
        items.append(f"**{len(study.front)} trials on the Pareto front** of the {len(study.feasible)} completed, feasible ones")
    if study.knee is not None:
        values = ", ".join(f"{o} {format_metric(o, study.knee[o])}" for o in report.objectives)
        items.append(f"**knee: trial #{int(study.knee['number'])}** ({values})")
    if report.scale is not None:
        items.append(f"**hypervolume {study.hypervolume:.4f}** (normalized objectives; reference point "
                     f"{describe_reference(report, explain=False)})")
    if study.verification is not None:
        items.append(f"**retrained longer** (`archsearch verify`): {study.verification.verdict}")
    imps = study.importances
    if imps is not None and not imps.table.empty:
        for objective in report.objectives:
            top = ", ".join(f"`{name}` {value:.2f}" for name, value in imps.top(objective))
            items.append(f"mattered most for {objective}: {top}")
    return [Heading("Summary", level), Bullets(items)]


def describe_reference(report: Report, explain: bool = True) -> str:
    """The hypervolume's reference point in the objectives' units (and how it was chosen)."""
    if report.scale is None:
        return "none (no completed trial)"
    values = ", ".join(f"{o} = {format_metric(o, float(v))}" for o, v in zip(report.objectives, report.scale.reference_values))
    if not explain:
        return values
    scope = "completed trials of all compared studies" if len(report.studies) > 1 else "completed trials"
    return f"{values} (each objective's worst value over the {scope}, plus {REFERENCE_MARGIN:.0%} of its range)"


def hypervolume_box(report: Report) -> str:
    """The one sentence that says what the normalized hypervolume measures."""
    k = len(report.objectives)
    side = 1 + REFERENCE_MARGIN
    scope = "completed trials of all compared studies" if len(report.studies) > 1 else "completed trials"
    return (f"The hypervolume is the volume of the box [0, {side:g}]^{k} that the front dominates, after each "
            f"objective is rescaled to 0 at its best and 1 at its worst value over the {scope} (maximized ones "
            f"flipped), with the reference point, the box's far corner, at {side:g} in every objective "
            f"({describe_reference(report, explain=False)}): at most {side ** k:.4g}, and comparable between "
            f"studies only on the same box.")


def front_display(study: StudyAnalysis, objectives: list[str], view: FrontView | None = None) -> pd.DataFrame:
    """The front as text: trial (★ = knee), objectives, the sample quality measured (fd, kid,
    precision, recall and its time), params, flops, and the searched fields in which its members
    differ (every differing config field when the searched ones are unknown). With `view`, its
    front and knee in its two metrics instead."""
    front = study.front if view is None else view.front
    knee_row = study.knee if view is None else view.knee
    knee = int(knee_row["number"]) if knee_row is not None else None
    spread = [METRICS[o].spread for o in objectives if o in METRICS and METRICS[o].spread]  # is a speed gap real?
    extra = [c for c in (*spread, *quality_columns(front), "params", "flops", "peak_mem_mb")
             if c not in objectives and c in front.columns and front[c].notna().any()]
    numbers = front["number"].astype(int)
    if study.input.searched:
        values = {c: numbers.map(s).set_axis(front.index) for c, s in study.input.searched.items()}
    else:
        values = {c: front[c] for c in setting_columns(front.columns)}
    fields = {c: v.map(value_label) for c, v in values.items()}
    fields = {c: v for c, v in fields.items() if v.nunique() > 1}
    rows = []
    for index, row in front.iterrows():
        number = int(row["number"])
        out = {"trial": f"#{number}" + (" ★ knee" if number == knee else "")}
        out.update({c: format_metric(c, _clean(row[c])) for c in objectives + extra})
        out.update({c: v[index] for c, v in fields.items()})
        rows.append(out)
    return pd.DataFrame(rows)


def _clean(value):
    if isinstance(value, float) and value != value:
        return None
    return value.item() if hasattr(value, "item") else value


def _front(study: StudyAnalysis, report: Report, figure: Path | None, level: int) -> list[Block]:
    blocks: list[Block] = [Heading("Pareto front", level)]
    if figure is not None:
        blocks.append(Image(figure, "objectives of every trial, Pareto front and knee"))
    if study.front.empty:
        return blocks + [Paragraph("No completed, feasible trial: there is no front yet.")]
    several = len(report.objectives) > 2
    blocks.append(Paragraph(
        "A trial is on the front when no other completed, feasible trial is at least as good in every objective and "
        f"better in one{' (over all ' + str(len(report.objectives)) + ' objectives; the plot shows the first two)' if several else ''}. "
        f"The knee is {KNEE_DEFINITION}. The table lists the config fields in which the front's members differ; "
        "`pareto.csv` holds their full rows."))
    blocks.append(Table(front_display(study, report.objectives)))
    return blocks


def _baselines(study: StudyAnalysis, report: Report, level: int) -> list[Block]:
    """"Against the baselines": for each hand-designed network of `study.baselines`, the front
    members that dominate it and by how much (archsearch.report.baselines)."""
    from .baselines import describe_gain

    if not study.baselines:
        return []
    objectives, directions = report.objectives, report.directions
    rows = []
    for verdict in study.baselines:
        row = {"baseline": verdict.label, **{o: format_metric(o, v) for o, v in verdict.values.items()}}
        if verdict.state != "COMPLETE":
            row["dominated by"] = f"{verdict.state.lower()}: {verdict.fail_reason or ''}".strip()
        elif verdict.dominators.empty:
            row["dominated by"] = "none of the front"
        else:
            row["dominated by"] = "; ".join(
                f"#{int(d['number'])} (" + ", ".join(f"{o} {describe_gain(d[o], di)}" for o, di in zip(objectives, directions)) + ")"
                for _, d in verdict.dominators.iterrows())
        rows.append(row)
    beaten = sum(1 for v in study.baselines if not v.dominators.empty)
    return [Heading("Against the baselines", level), Paragraph(
        f"Hand-designed networks (`study.baselines`), each trained and measured by this study's own protocol as a fixed "
        f"trial of the study `{study.name}-baselines` (not counted among its trials, not seen by its sampler). "
        f"{beaten} of {len(study.baselines)} {'is' if len(study.baselines) == 1 else 'are'} dominated by the front. For "
        "each front member that dominates a baseline: × the baseline's value for an objective maximized (a throughput "
        "at equal or lower loss), % lower for one minimized (a loss at equal or higher throughput)."),
        Table(pd.DataFrame(rows))]


def _view(study: StudyAnalysis, figures: dict[str, Path], prefix: str, level: int) -> list[Block]:
    """The front in the two metrics the user picked (`archsearch report --front`), when it is not
    the objectives' front."""
    view = study.view
    if view is None:
        return []
    from .plots import view_key

    y, x = view.metrics
    blocks: list[Block] = [Heading(f"Pareto front in {y} and {x}", level)]
    figure = figures.get(prefix + view_key(view.metrics))
    if figure is not None:
        blocks.append(Image(figure, f"{y} against {x} for every trial, their Pareto front and knee"))
    if view.front.empty:
        return blocks + [Paragraph(f"No completed, feasible trial measured both {y} and {x}: there is no front in them.")]
    directions = " and ".join(f"`{m}` ({'lower' if d == 'minimize' else 'higher'} is better)"
                              for m, d in zip(view.metrics, view.directions))
    blocks.append(Paragraph(
        f"The front in {directions} alone, as asked (`--front {y},{x}`), over the {len(view.feasible)} completed, "
        f"feasible trials that measured both: a trial is on it when no other is at least as good in both and better "
        f"in one, whatever the study's objectives say. The knee is {KNEE_DEFINITION}."))
    blocks.append(Table(front_display(study, view.metrics, view)))
    return blocks


def _convergence(study: StudyAnalysis, report: Report, figure: Path | None, level: int) -> list[Block]:
    blocks: list[Block] = [Heading("Convergence: hypervolume over trials", level)]
    if figure is not None:
        blocks.append(Image(figure, "hypervolume of the front of trials 0..n"))
    h = study.hv_history
    if h.empty or report.scale is None:
        return blocks + [Paragraph("No completed trial yet.")]
    improved = h[h["hypervolume"].diff().fillna(h["hypervolume"]) > 0]
    last = int(improved["number"].iloc[-1]) if len(improved) else None
    since = int(h["number"].iloc[-1]) - last if last is not None else None
    text = (f"{hypervolume_box(report)} It grows when a trial improves the front. "
            f"Final value {study.hypervolume:.4f}")
    if last is not None:
        text += f"; it last improved at trial #{last}, {since} trial{'s' if since != 1 else ''} before the end."
        if since is not None and since < max(3, len(h) // 5):
            text += " It was still improving: more trials would likely extend the front."
    blocks.append(Paragraph(text))
    return blocks


def _compute(study: StudyAnalysis, figure: Path | None, level: int) -> list[Block]:
    """Early stopping's account: what the trials trained against what full budgets would cost."""
    usage = study.compute
    if usage is None:
        return []
    blocks: list[Block] = [Heading("Compute: early stopping", level), Paragraph(
        f"{_count(usage.trials, 'trial')} trained **{usage.spent_steps:,} steps** where full budgets would have "
        f"taken {usage.full_steps:,}: **{usage.saved_fraction:.0%} saved**. {_count(usage.stopped, 'trial')} "
        "stopped at a rung; the Pareto front is over completed trials only.")]
    if figure is not None:
        blocks.append(Image(figure, "validation loss at each rung and at the full budget, for every trial"))
    table = usage.per_rung.rename(columns={"step": "rung step", "reached": "trials that reached it",
                                           "stopped": "stopped there"})
    blocks.append(Table(table, caption="A trial reaching a rung is judged against every trial that reached it "
                                       "before (see archsearch.search.stopping)."))
    return blocks


def _importance(study: StudyAnalysis, figure: Path | None, level: int) -> list[Block]:
    blocks: list[Block] = [Heading("Which searched fields mattered", level)]
    imps = study.importances
    if imps is None:
        return blocks + [Paragraph("Importances were not computed.")]
    if imps.table.empty:
        return blocks + [Paragraph(imps.note)]
    if figure is not None:
        blocks.append(Image(figure, "parameter importances"))
    table = imps.table.reset_index().rename(columns={"front": "reaching the front"})
    for col in table.columns[1:]:
        table[col] = table[col].map(lambda v: f"{v:.3f}")
    blocks.append(Paragraph(
        f"{imps.evaluator} importances over {imps.trials} completed trials: how differently each parameter is distributed "
        "among the best trials for an objective than among all trials (maximized objectives are negated, as PED-ANOVA "
        "minimizes). Each column sums to 1. With few trials these are rough."))
    blocks.append(Table(table))
    if imps.failures:
        blocks.append(Paragraph("Not computed: " + "; ".join(f"{k}: {v}" for k, v in imps.failures.items())))
    return blocks


def _effects(study: StudyAnalysis, report: Report, figure: Path | None, level: int) -> list[Block]:
    blocks: list[Block] = [Heading("Marginal effects of the searched fields", level)]
    if study.effects.empty:
        return blocks + [Paragraph("No searched field took more than one value among the completed trials.")]
    if figure is not None:
        blocks.append(Image(figure, "marginal effects"))
    rows = []
    for _, row in study.effects.iterrows():
        out = {"field": row["field"], "value": row["value"], "trials": int(row["n"])}
        for metric in report.objectives:
            out[f"median {metric} [95% CI]"] = (f"{format_metric(metric, row[metric])} "
                                                f"[{format_metric(metric, row[f'{metric}_lo'])}, "
                                                f"{format_metric(metric, row[f'{metric}_hi'])}]")
        rows.append(out)
    blocks.append(Paragraph(
        "For each searched field and value: the median of each objective over the completed trials that used it, with a "
        "percentile-bootstrap 95% confidence interval (2000 resamples). Everything else varied too, so these are hints, "
        f"not controlled ablations (`archsearch ablate` runs those). `{'–'}` marks trials in which the field did not exist."))
    blocks.append(Table(pd.DataFrame(rows)))
    return blocks


def _buckets(study: StudyAnalysis, figure: Path | None, level: int) -> list[Block]:
    buckets = study.buckets
    if buckets.empty:
        return []
    cols = [c for c in buckets.columns if c != "number"]
    names = [f"t∈[{lo},{hi})" for lo, hi in study.bucket_ranges] if len(study.bucket_ranges) == len(cols) else cols
    rows = [{"trial": f"#{int(r['number'])}", **{n: format_metric("val_loss", _clean(r[c])) for n, c in zip(names, cols)}}
            for _, r in buckets.iterrows()]
    blocks: list[Block] = [Heading("Loss per noise level (the front's members)", level)]
    if figure is not None:
        blocks.append(Image(figure, "validation loss per timestep bucket"))
    blocks.append(Paragraph("The validation loss of each front member split by timestep bucket, low noise (small t) to "
                            "high noise; columns `val_loss_t0...` of `trials.csv`."))
    blocks.append(Table(pd.DataFrame(rows)))
    return blocks


def _verification(study: StudyAnalysis, figures: dict[str, Path], prefix: str, level: int) -> list[Block]:
    """What `archsearch verify` found, when it ran: the ranking and the front at a longer budget."""
    if study.verification is None:
        return []
    from ..verify.report import SECTION_TITLE, verify_blocks

    return [Heading(f"{SECTION_TITLE} (`archsearch verify`)", level),
            *verify_blocks(study.verification, figures, level + 1, prefix)]


def _failures(study: StudyAnalysis, level: int) -> list[Block]:
    df = study.input.df
    bad = df[df["state"].isin(["FAIL", "PRUNED"])]
    infeasible = study.completed.drop(index=study.feasible.index)
    if bad.empty and infeasible.empty:
        return []
    rows = [{"trial": f"#{int(r['number'])}", "state": r["state"].lower(),
             "reason": next((str(v) for v in (r.get("fail_reason"), r.get("stop_reason")) if isinstance(v, str) and v), "")[:160]}
            for _, r in bad.iterrows()]
    rows += [{"trial": f"#{int(r['number'])}", "state": "infeasible", "reason": "violates a constraint"}
             for _, r in infeasible.iterrows()]
    return [Heading("Failed, pruned and infeasible trials", level),
            Paragraph("These are not on the front; the Pareto plot shows infeasible trials apart."),
            Table(pd.DataFrame(rows).sort_values("trial", key=lambda s: s.str[1:].astype(int)))]


def _protocol(study: StudyAnalysis, level: int) -> list[Block]:
    p = study.protocol
    rec = p["recorded"]
    items = [f"hardware: **{rec.get('device') or 'not recorded'}**; torch {rec.get('torch') or '?'}; "
             f"precision {rec.get('precision') or '?'}; torch CPU threads while training {rec.get('train_threads') or '?'}, "
             f"while timing {rec.get('threads') or '?'}"
             + (f" of {rec['cpu_count']} usable CPUs" if rec.get("cpu_count") else "")]
    train = _train_settings(study)
    measure = p.get("measure")
    if measure:
        batch = measure.get("batch_size") or train.get("batch_size", "the training batch size")
        cap = f"; the phase is capped at {measure['max_seconds']:g} s (at least 3 timed steps)" if measure.get("max_seconds") else ""
        items.append(
            f"training throughput: images/s through one full training step (forward, backward, AdamW) at batch size {batch}, "
            f"measured in its own timing phase before training: {_count(measure.get('warmup_steps'), 'untimed warm-up step')}, then "
            f"{_count(measure.get('repeats'), 'timed step')}, each between two device synchronizations; the **median** is reported and "
            f"the interquartile range is kept as `train_throughput_iqr`{cap}")
    items += _speed_items(p.get("speed") or {}, measure or {})
    items += _quality_items(p.get("quality"), (p.get("eval") or {}).get("quality"))
    if measure:
        extras = [name for name, on in (("forward-only throughput", measure.get("infer")), ("batch-1 latency", measure.get("latency")),
                                        ("forward FLOPs per image", measure.get("flops"))) if on]
        if extras:
            items.append("also measured: " + ", ".join(extras) + " (FLOPs and parameters are recorded, not used as speed)")
    ev = p.get("eval")
    if ev:
        T = train.get("num_timesteps", 1000)
        items.append(
            f"validation loss: ε-MSE of every trial on **the same {ev.get('num_images')} held-out images**, at the same "
            f"{ev.get('timesteps')} timesteps evenly spread over [0, {T}) ({ev.get('timesteps_per_image')} per image), with "
            f"**the same noise** (eval.noise_seed = {ev.get('noise_seed')}, independent of the training seed); averaged per "
            f"timestep, then over timesteps; {ev.get('buckets')} noise buckets")
    data = p.get("data")
    if data:
        items.append(f"data: `{data.get('source')}`, {data.get('image_size')}×{data.get('image_size')}, "
                     f"{data.get('channels')} channel(s), validation fraction {data.get('val_fraction')} (split seed {data.get('split_seed')})")
    if train:
        shown = ", ".join(f"{k} {value_label(v)}" for k, v in train.items())
        items.append(f"training (every trial unless searched): {shown}")
    study_cfg = p.get("study")
    if study_cfg:
        sampler = study_cfg.get("sampler") or {}
        items.append(f"search: Optuna {sampler.get('kind', '?')} sampler, seed {study_cfg.get('seed')}")
    if p.get("constraints"):
        items.append("constraints: " + ", ".join(f"`{_constraint(c)}`" for c in p["constraints"]))
    blocks: list[Block] = [Heading("How these numbers were measured", level), Bullets(items)]
    if not measure:
        blocks.append(Paragraph("No `space.yaml` beside the study: the timing and validation protocol are not known to this "
                                "report; the hardware above is what the trials recorded."))
    return blocks


def _speed_items(speed: dict[str, Any], measure: dict[str, Any]) -> list[str]:
    """How the load-normalized speed was obtained, and which trials were timed under load;
    nothing for a study whose trials were timed without a reference."""
    if not speed.get("timed"):
        return []
    ref = measure.get("reference", "auto")
    which = f"`measure.reference: {ref}`" if isinstance(ref, str) else "an inline U-Net config (`measure.reference`)"
    medians = "; ".join(f"{g}: {format_metric('ref_throughput', v)} img/s" for g, v in speed["medians"].items())
    text = (f"speed that survives load: every trial's training step was timed in turns with a fixed reference "
            f"network's ({which}), reference, candidate, reference, ...; `train_speed_vs_ref` is the median over step "
            f"pairs of the candidate's images/s ÷ the reference's, and `train_throughput_normalized` that ratio × the "
            f"study's median reference speed ({medians})")
    anchors = {g: v for g, v in speed.get("anchors", {}).items() if g in speed["medians"]}
    if anchors:
        text += ("; the values Optuna stored use the first trial's reference speed instead ("
                 + "; ".join(f"{g}: {format_metric('ref_throughput', float(v))} img/s" for g, v in anchors.items())
                 + "), one factor for every trial, so the front and the rankings are the same")
    items = [text]
    under = speed.get("under_load") or []
    if under:
        listed = ", ".join(f"#{n}" for n in under[:20]) + (", ..." if len(under) > 20 else "")
        items.append(f"**measured under load**: {_count(len(under), 'trial')} ({listed}) timed while the reference ran "
                     f"more than {UNDER_LOAD_TOLERANCE:.0%} off the study's median speed: their raw `train_throughput` is "
                     "the machine's load as much as the model; `train_throughput_normalized` corrects for it "
                     "(column `measured_under_load` of `trials.csv`)")
    else:
        items.append(f"no trial was measured under load: every reference ran within {UNDER_LOAD_TOLERANCE:.0%} of the "
                     "study's median speed")
    return items


def _quality_items(quality: dict[str, Any] | None, configured: dict[str, Any] | None) -> list[str]:
    """How sample quality was measured, from the trials' `quality` records (the space file's
    eval.quality where no trial recorded one); nothing when it was not measured."""
    if quality is None:
        return []
    measured = ", ".join(f"`{m}`" for m in quality["metrics"]) or "no metric"
    records = [(r, n) for r, n in quality["records"] if "error" not in r]
    failed = sum(n for r, n in quality["records"] if "error" in r)
    if not records and configured:
        records = [({"features": configured.get("features"), "num_samples": configured.get("num_samples"),
                     "reference": configured.get("reference"), "sampler": configured.get("sampler"),
                     "seed": configured.get("seed")}, 0)]
    ways = [_quality_way(r) + (f" ({_count(n, 'trial')})" if len(records) > 1 else "") for r, n in records]
    text = (f"sample quality ({measured}, {_count(quality['trials'], 'trial')}): "
            + ("; ".join(ways) if ways else "how it was measured was not recorded"))
    if quality.get("seconds") is not None:
        text += (f"; the phase took a median {format_metric('quality_seconds', quality['seconds'])} s per trial "
                 "(`quality_seconds`, beside the quality columns")
        text += f", {quality['share']:.0%} of a trial's duration)" if quality.get("share") is not None else ")"
    items = [text]
    if quality.get("fd_noise") is not None:
        sd = quality["fd_noise"]
        items.append(f"fd's sampling noise: a median standard deviation of {format_metric('fd', sd)} (CV "
                     f"{quality['fd_cv']:.1%}) over bootstrap resamplings of each trial's samples (`fd_noise`); two "
                     f"fds closer than {format_metric('fd', 2.8 * sd)} (2.8 sd, the 95% range of a difference of two "
                     "such draws) are a tie at this sample count")
    if failed:
        reasons = sorted({r["error"] for r, _ in quality["records"] if "error" in r})
        items.append(f"**sample quality not measured** in {_count(failed, 'trial')}: {'; '.join(reasons)[:300]}")
    return items


def _quality_way(record: dict[str, Any]) -> str:
    """`**200 samples** drawn with DDIM (10 steps, η 0), noise seeded per sample (seed 0), in the digits
    features' space, against 1,617 real images of the train split`."""
    sampler = record.get("sampler") or {}
    kind = str(sampler.get("kind", "?")).upper()
    options = ", ".join(f"{'η' if k == 'eta' else k} {value_label(v)}" for k, v in sampler.items() if k != "kind")
    reference = record.get("reference", "?")
    images = record.get("reference_images")
    against = f"{images:,} real images of the {reference} split" if isinstance(images, int) else f"the {reference} split's images"
    return (f"**{record.get('num_samples')} samples** drawn with {kind}" + (f" ({options})" if options else "")
            + f", sample i's noise seeded by (seed {record.get('seed')}, i), embedded by the `{record.get('features')}` "
            f"feature network and compared with {against}")


def _count(n, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _train_settings(study: StudyAnalysis) -> dict[str, Any]:
    """Training settings shared by every completed trial (from the `train.*` columns)."""
    done = study.completed
    out = {}
    for key in ("steps", "batch_size", "lr", "schedule", "num_timesteps", "prediction", "precision", "seed"):
        col = qualified(TRAIN, key)
        if col in done.columns and done[col].map(value_label).nunique() == 1:
            out[key] = _clean(done[col].iloc[0])
    return out


def _constraint(c) -> str:
    if isinstance(c, dict):
        return f"{c.get('metric')} {c.get('op')} {c.get('value')}"
    return str(c)
