"""The report's figures, laid out as the paper's section 5.1 figures are.

One panel per swept hyperparameter at fixed values of the others (e.g. the threshold
varied at gamma = 1e-3, gamma varied at threshold = 1e-6), one line per run, a legend
naming the values. Each function returns a ``matplotlib.figure.Figure`` (no pyplot, so
no global state and no display); ``png_bytes`` renders one as a PNG.

References:
    Helwegen et al., "Latent Weights Do Not Exist: Rethinking Binarized Neural Network
    Optimization", NeurIPS 2019, section 5.1, https://arxiv.org/abs/1906.02107
"""

import dataclasses
import math
import pathlib
import textwrap
from typing import Any, Dict, List, Tuple

from bnno.report.runs import RunReport, format_value

PANEL_WIDTH, PANEL_HEIGHT, MAX_COLUMNS = 5.6, 4.0, 3
TITLE_WIDTH, LEGEND_WIDTH = 60, 66  # characters that fit across one panel
FEW_EPOCHS = 40  # mark each epoch's point up to this many epochs


@dataclasses.dataclass
class Panel:
    """One axes' worth of runs, with each run's legend label."""

    title: str
    runs: List[RunReport]
    labels: List[str]


def _sort_key(value: Any) -> Tuple[int, Any]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return (1, str(value))
    return (0, value)


def _group_title(run: RunReport) -> str:
    model, dataset, hparams_set = run.group
    return f"{model} on {pathlib.PurePath(dataset).name} ({hparams_set})"


def _distinct(labels: List[str], runs: List[RunReport]) -> List[str]:
    """``labels``, each shared by several runs (the same point of two sweeps) followed
    by its run's name, so that every line of a legend says which run it is."""
    return [f"{label} ({run.name})" if labels.count(label) > 1 else label
            for label, run in zip(labels, runs)]


def _panels_of_group(runs: List[RunReport], suffix: str) -> List[Panel]:
    keys: List[str] = []
    for run in runs:
        keys += [key for key in run.varied if key != "seed" and key not in keys]
    with_seed = any("seed" in run.varied for run in runs)
    panels = []
    for key in keys:
        others = [other for other in keys if other != key]
        buckets: Dict[str, List[RunReport]] = {}
        for run in runs:
            if key in run.varied:
                fixed = ", ".join(f"{other}={format_value(run.varied[other])}"
                                  for other in others if other in run.varied)
                buckets.setdefault(fixed, []).append(run)
        for fixed, members in buckets.items():
            if len({repr(run.varied[key]) for run in members}) < 2:
                continue
            members = sorted(members, key=lambda run: (_sort_key(run.varied[key]), _sort_key(run.varied.get("seed"))))
            labels = [f"{key}={format_value(run.varied[key])}"
                      + (f", seed={run.varied['seed']}" if with_seed else "") for run in members]
            labels = _distinct(labels, members)
            panels.append(Panel(f"{key} varied" + (f" at {fixed}" if fixed else "") + suffix, members, labels))
    if not panels:  # nothing varies, only the seed does, or the keys vary together
        return [Panel(_group_title(runs[0]), runs, [run.label() for run in runs])]
    shown = {id(run) for panel in panels for run in panel.runs}
    others = [run for run in runs if id(run) not in shown]  # alone at their fixed values
    if others:
        panels.append(Panel("other runs" + suffix, others, [run.label() for run in others]))
    return panels


def panels(runs: List[RunReport]) -> List[Panel]:
    """One panel per swept key and fixed values of the other swept keys, per group of
    runs (same model, data set and set); a group where nothing is swept is one panel,
    and runs that share no fixed values with another run share one more."""
    groups: Dict[Tuple[str, str, str], List[RunReport]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    result = []
    for members in groups.values():
        suffix = f"\n{_group_title(members[0])}" if len(groups) > 1 else ""
        result += _panels_of_group(members, suffix)
    return result


# --- drawing ---------------------------------------------------------------------------


def _figure(count: int, title: str):
    from matplotlib.figure import Figure

    columns = min(MAX_COLUMNS, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(PANEL_WIDTH * columns, PANEL_HEIGHT * rows + 0.5), layout="constrained")
    figure.suptitle(title, fontsize="large")
    axes = [figure.add_subplot(rows, columns, index + 1) for index in range(count)]
    return figure, axes


def line_colors(count: int) -> List[Any]:
    """``count`` colours that tell lines apart: matplotlib's ten default ones, or
    evenly spaced along viridis for more lines."""
    import matplotlib

    if count <= 10:
        return [f"C{index}" for index in range(count)]
    colormap = matplotlib.colormaps["viridis"]
    return [colormap(index / (count - 1)) for index in range(count)]


def style_axes(axes, xlabel: str, ylabel: str, title: str) -> None:
    """The report's look of a panel: its labels, its title wrapped to the panel's width,
    whole epochs on the x axis, a light grid."""
    from matplotlib.ticker import MaxNLocator

    lines = [textwrap.fill(line, TITLE_WIDTH) for line in title.split("\n")]
    axes.set_title("\n".join(lines), fontsize="medium")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)


def plot_per_epoch(axes, points: List[Tuple[int, float]], **style):
    """A line through ``(epoch, value)`` points, each point marked when there are few
    epochs; ``style`` goes to matplotlib's ``plot``. Returns its lines."""
    epochs = [epoch for epoch, _ in points]
    marker = "o" if len(epochs) <= FEW_EPOCHS else None
    return axes.plot(epochs, [value for _, value in points], marker=marker, markersize=3, **style)


def _legend(axes, handles=None) -> None:
    """A legend below the axes, where it hides no line, in as many columns (up to
    three) as its labels' length allows."""
    handles = handles if handles is not None else axes.get_legend_handles_labels()[0]
    labels = [handle.get_label() for handle in handles]
    columns = max(1, min(3, len(labels), LEGEND_WIDTH // (max(map(len, labels)) + 6)))
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=columns,
                fontsize="small" if len(labels) <= 8 else "x-small", frameon=False)


def accuracy_figure(runs: List[RunReport]):
    """Training (solid) and validation (dashed) top-1 accuracy per epoch, as the
    paper's Figure 1 draws them ("train: —, validation: – –"), one colour per run, one
    panel per swept key."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import PercentFormatter

    chosen = panels(runs)
    figure, all_axes = _figure(len(chosen), "Top-1 accuracy per epoch: training (solid), validation (dashed)")
    for axes, panel in zip(all_axes, chosen):
        handles = []
        for run, label, color in zip(panel.runs, panel.labels, line_colors(len(panel.runs))):
            handles += plot_per_epoch(axes, run.column("accuracy"), color=color, label=label)
            plot_per_epoch(axes, run.column("val_accuracy"), color=color, linestyle="--")
        handles += [Line2D([], [], color="gray", label="training"),
                    Line2D([], [], color="gray", linestyle="--", label="validation")]
        style_axes(axes, "epoch", "top-1 accuracy", panel.title)
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        _legend(axes, handles)
    return figure


def _log_line(axes, points: List[Tuple[int, float]], label: str, color, zero: str = "no flips"):
    """A line on a log axis; zeros cannot be drawn there, so a line of only zeros
    says so in its label."""
    positive = [(epoch, value) for epoch, value in points if value > 0]
    if points and not positive:
        label = f"{label} ({zero})"
    return plot_per_epoch(axes, positive, color=color, label=label)


def _log_axis(axes, epochs: int, empty_text: str) -> bool:
    """Log y; an axis with nothing to draw (every value zero) says so. Returns
    whether anything is drawn."""
    axes.set_yscale("log")
    if any(len(line.get_xdata()) for line in axes.get_lines()):
        return True
    axes.set_xlim(0.5, max(epochs, 1) + 0.5)
    axes.set_ylim(1e-4, 1)
    axes.text(0.5, 0.5, empty_text, transform=axes.transAxes, ha="center", va="center", color="gray")
    return False


FLIP_LABEL = "flip ratio (share flipped per step)"


def flip_ratio_figure(runs: List[RunReport]):
    """The overall flip ratio per epoch on a log axis, one line per run, one panel per
    swept key; ``None`` when no run logged flip ratios (no Bop, or no events)."""
    flipping = [run for run in runs if run.scalar("flip_ratio")]
    if not flipping:
        return None
    chosen = panels(flipping)
    figure, all_axes = _figure(len(chosen), "Flip ratio per epoch (all binary weights), log scale")
    for axes, panel in zip(all_axes, chosen):
        for run, label, color in zip(panel.runs, panel.labels, line_colors(len(panel.runs))):
            _log_line(axes, run.scalar("flip_ratio"), label, color)
        _log_axis(axes, max(run.epochs_done for run in panel.runs), "no weight flipped")
        style_axes(axes, "epoch", FLIP_LABEL, panel.title)
        _legend(axes)
    return figure


def layer_flip_ratio_figure(runs: List[RunReport]):
    """The flip ratio of each binary layer per epoch on a log axis, one panel per run,
    one line per layer in the model's order; ``None`` when no run logged per-layer
    flip ratios."""
    flipping = [run for run in runs if run.layer_flip_tags()]
    if not flipping:
        return None
    figure, all_axes = _figure(len(flipping), "Flip ratio per epoch of each binary layer, log scale")
    for axes, run in zip(all_axes, flipping):
        tags = run.layer_flip_tags()
        for tag, color in zip(tags, line_colors(len(tags))):
            _log_line(axes, run.scalar(tag), tag.split("/", 1)[1], color)
        drawn = _log_axis(axes, run.epochs_done, "no weight flipped in any layer")
        style_axes(axes, "epoch", FLIP_LABEL, run.label())
        if drawn:  # a legend of layers that all say "no flips" says nothing more
            _legend(axes)
    return figure


def _shared_label(runs: List[RunReport], total: int) -> str:
    """The legend label of runs drawn as one line (of ``total`` runs drawn): what
    they have in common."""
    if len(runs) == 1:
        return runs[0].label()
    common = {key: value for key, value in runs[0].varied.items()
              if all(repr(run.varied.get(key)) == repr(value) for run in runs)}
    shared = ", ".join(f"{key}={format_value(value)}" for key, value in common.items())
    if shared:
        return f"{shared} ({len(runs)} runs)"
    return f"all {len(runs)} runs" if len(runs) == total else f"{len(runs)} runs"


SCHEDULES = (("gamma", "Bop's adaptivity rate γ"), ("learning_rate", "learning rate"))


def schedules_figure(runs: List[RunReport]):
    """Bop's γ and the learning rate (in Bop sets, Adam's, for the real-valued
    variables) per epoch on log axes; runs with the same schedule share one line.
    ``None`` when no run logged either."""
    present = [(tag, name) for tag, name in SCHEDULES if any(run.scalar(tag) for run in runs)]
    if not present:
        return None
    figure, all_axes = _figure(len(present), "Schedules per epoch, log scale")
    for axes, (tag, name) in zip(all_axes, present):
        same: Dict[str, List[RunReport]] = {}
        for run in runs:
            if run.scalar(tag):
                same.setdefault(repr(run.scalar(tag)), []).append(run)
        total = sum(map(len, same.values()))
        for members, color in zip(same.values(), line_colors(len(same))):
            _log_line(axes, members[0].scalar(tag), _shared_label(members, total), color, zero="zero")
        _log_axis(axes, max(run.epochs_done for run in runs), "zero throughout")
        style_axes(axes, "epoch", name, f"{name} per epoch")
        _legend(axes)
    return figure


FIGURES = (
    ("accuracy", accuracy_figure),
    ("flip_ratio", flip_ratio_figure),
    ("flip_ratio_layers", layer_flip_ratio_figure),
    ("schedules", schedules_figure),
)


def figures(runs: List[RunReport]) -> Dict[str, Any]:
    """``{name: Figure}`` of every figure the runs have data for, in report order: the
    paper's Figure 1 first where the runs hold its sweeps (:mod:`bnno.report.figure1`)."""
    from bnno.report import figure1

    made = {**figure1.figures(runs), **{name: make(runs) for name, make in FIGURES}}
    return {name: figure for name, figure in made.items() if figure is not None}


def png_bytes(figure) -> bytes:
    """``figure`` as a PNG."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()

