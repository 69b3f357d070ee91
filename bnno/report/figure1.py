"""The paper's Figure 1, drawn from runs: Bop's γ and τ, accuracy and π_t over training.

Helwegen et al. (2019), section 5.1, Figure 1: "Comparison of training for different
values of γ and τ in Bop for BinaryNet on CIFAR-10. The upper panels show accuracy
(train: —, validation: – –). The lower panels show π_t, as defined in Equation (7), for
the last layer of the network. On the left side we compare three values for γ, while
keeping τ fixed at 10^-6. On the right we compare three values for τ, while keeping γ
fixed at 10^-3." Equation (7): π_t = log(flipped weights at step t / all weights + e^-9),
a natural log, e^-9 keeping a step without flips at -9.

Runs make the figure when, among the Bop runs of one model, data set and set (a sweep's
runs), γ varies at τ = 1e-6 (the left column) or τ varies at γ = 1e-3 (the right
column), nothing else varying but the seed: ``bnno sweep --grid-set sec51_gamma`` and
``sec51_threshold``, or any sweep of that shape, found by the runs' values. One sweep
alone makes the half that it is, and the figure says which half is missing.

π_t is drawn per step from the flip ratios that ``bnno train --log-every N`` logs (per
step for N = 1, as the paper; the mean over the last N steps otherwise), its x in epochs
(step / steps per epoch); runs without them fall back to the per-epoch flip ratio of the
layer (the mean over the epoch's steps), and the panel says so.

References:
    Helwegen et al., "Latent Weights Do Not Exist: Rethinking Binarized Neural Network
    Optimization", NeurIPS 2019, section 5.1, Figure 1 and equation (7),
    https://arxiv.org/abs/1906.02107
"""

import dataclasses
import math
import pathlib
import textwrap
from typing import Any, Dict, List, Optional, Tuple

from bnno.report import plots
from bnno.report.runs import RunReport, varied_keys

#: The swept key of each column, left to right, and the key and value the caption fixes.
COLUMNS = (("gamma", "threshold", 1e-6), ("threshold", "gamma", 1e-3))
SYMBOLS = {"gamma": r"\gamma", "threshold": r"\tau"}
#: Legend order as the paper's, from the most flips to the fewest: γ falling, τ rising.
DESCENDING = {"gamma": True, "threshold": False}
FLOOR = math.exp(-9)  # equation (7)'s e^-9
PI_TOP = -4.0  # Figure 1's π_t axes run from -9 to -4
PI_LABEL = r"$\pi_t$"
NO_STEPS = "these runs logged no per-step flip ratios; pass --log-every"
SOME_STEPS = "some runs logged no per-step flip ratios; pass --log-every"


def pi_t(ratio: float) -> float:
    """Equation (7) of the paper: π_t = ln(ratio + e^-9), for the share of weights flipped."""
    return math.log(ratio + FLOOR)


def power_of_ten(value: float) -> str:
    """``value`` in mathtext as the paper's legends write it: ``10^{-6}``, ``0``, ``0.5``,
    ``2.5\\times10^{-3}`` (no spaces, so that wrapping a title never splits it)."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.6e}".split("e")
    mantissa, exponent = float(mantissa), int(exponent)
    if mantissa == 1 and exponent != 0:
        return f"10^{{{exponent}}}"
    if -2 <= exponent <= 2:
        return f"{value:g}"
    return rf"{mantissa:g}\times10^{{{exponent}}}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equals(value: Any, target: float) -> bool:
    return _is_number(value) and math.isclose(value, target)


@dataclasses.dataclass
class Column:
    """One column of the figure: ``key`` swept at ``fixed`` = ``fixed_value``."""

    key: str
    fixed: str
    fixed_value: float
    runs: List[RunReport]  # in the paper's legend order, then by seed

    def label(self, run: RunReport) -> str:
        return f"${SYMBOLS[self.key]}={power_of_ten(run.hparams[self.key])}$"

    def title(self) -> str:
        return f"${SYMBOLS[self.key]}$ varied at ${SYMBOLS[self.fixed]}={power_of_ten(self.fixed_value)}$"


def _column(members: List[RunReport], key: str, fixed: str, fixed_value: float) -> Optional[Column]:
    """The runs of one group that make a column, or ``None``."""
    chosen = [run for run in members
              if _equals(run.hparams.get(fixed), fixed_value) and _is_number(run.hparams.get(key))]
    if len({run.hparams[key] for run in chosen}) < 2:
        return None
    if set(varied_keys(chosen)) - {key, "seed"}:
        return None  # something else varies too: not Figure 1's comparison
    sign = -1 if DESCENDING[key] else 1
    chosen.sort(key=lambda run: (sign * run.hparams[key], run.record.get("seed") or 0))
    return Column(key, fixed, fixed_value, chosen)


def find(runs: List[RunReport]) -> List[List[Column]]:
    """Per group of Bop runs (model, data set, set) that has any, Figure 1's columns."""
    groups: Dict[Tuple[str, str, str], List[RunReport]] = {}
    for run in runs:
        if run.hparams.get("optimizer") == "bop":
            groups.setdefault(run.group, []).append(run)
    found = []
    for members in groups.values():
        columns = [_column(members, *column) for column in COLUMNS]
        if any(columns):
            found.append([column for column in columns if column])
    return found


# --- π_t of the last binary layer -----------------------------------------------------------


def _last_layer(tags: List[str]) -> Optional[str]:
    return tags[-1] if tags else None


def _pi_points(run: RunReport, per_step: bool) -> List[Tuple[float, float]]:
    """``[(epoch, π_t)]`` of the run's last binary layer: per logged step (x = step /
    steps per epoch), or per epoch. A value that is no share of weights (damaged
    events) is left out."""
    if per_step:
        tag = _last_layer(run.layer_step_flip_tags())
        points = [(step / run.steps_per_epoch, ratio) for step, ratio in run.step_scalar(tag)]
    else:
        tag = _last_layer(run.layer_flip_tags())
        points = [(float(epoch), ratio) for epoch, ratio in run.scalar(tag)] if tag else []
    return [(x, pi_t(ratio)) for x, ratio in points if 0 <= ratio <= 1]


def _logged_per_step(run: RunReport) -> bool:
    return bool(run.layer_step_flip_tags()) and run.steps_per_epoch is not None


def _pi_title(runs: List[RunReport], per_step: bool) -> str:
    """The lower panel's title: what is drawn, of which layer, and how often."""
    tags = {_last_layer(run.layer_step_flip_tags() if per_step else run.layer_flip_tags()) for run in runs}
    tags.discard(None)
    layer = f" ({tags.pop().split('/', 1)[1]})" if len(tags) == 1 else ""
    title = f"{PI_LABEL} of the last binary layer{layer}"
    if per_step:
        return f"{title}, per step"
    if any(_logged_per_step(run) for run in runs):
        return f"{title}, per epoch:\n{SOME_STEPS}"
    return f"{title}, per epoch:\n{NO_STEPS}"


# --- drawing ----------------------------------------------------------------------------------


def _draw_accuracy(axes, column: Column, colors: Dict[str, Any]) -> None:
    """Training (solid) and validation (dashed) top-1 accuracy per epoch, as the paper's
    upper panels; a legend of the values, then of the two line styles."""
    from matplotlib.lines import Line2D

    handles = {}
    for run in column.runs:
        label = column.label(run)
        color = colors[label]
        line = plots.plot_per_epoch(axes, run.column("accuracy"), color=color, label=label)
        plots.plot_per_epoch(axes, run.column("val_accuracy"), color=color, linestyle="--")
        handles.setdefault(label, line[0])
    keys = [Line2D([], [], color="gray", label="train"),
            Line2D([], [], color="gray", linestyle="--", label="validation")]
    plots.style_axes(axes, "Epoch", "Accuracy", column.title())
    _legend(axes, list(handles.values()) + keys)


def _draw_pi(axes, column: Column, colors: Dict[str, Any]) -> None:
    """π_t of the last binary layer, per step where every run logged it, else per epoch."""
    per_step = all(_logged_per_step(run) for run in column.runs)
    handles = {}
    for run in column.runs:
        points = _pi_points(run, per_step)
        if not points:
            continue
        label = column.label(run)
        style = dict(linewidth=0.7, alpha=0.85) if per_step else {}
        (line,) = axes.plot([x for x, _ in points], [y for _, y in points], color=colors[label], label=label,
                            marker="o" if not per_step and len(points) <= plots.FEW_EPOCHS else None,
                            markersize=3, **style)
        handles.setdefault(label, line)
    drawn = [y for line in axes.get_lines() for y in line.get_ydata()]
    axes.set_ylim(-9.25, max([PI_TOP] + [y + 0.25 for y in drawn]))
    if handles:
        plots.style_axes(axes, "Epoch", PI_LABEL, _pi_title(column.runs, per_step))
        _legend(axes, list(handles.values()))
    else:
        plots.style_axes(axes, "Epoch", PI_LABEL, f"{PI_LABEL} of the last binary layer")
        axes.text(0.5, 0.5, "no flip ratios logged\n(these runs wrote no TensorBoard events)",
                  transform=axes.transAxes, ha="center", va="center", color="gray")


def _legend(axes, handles) -> None:
    """The paper's legend entries in one row below the axes, where they hide no line."""
    axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=len(handles),
                fontsize="small", frameon=False, handlelength=1.8, columnspacing=1.2)


def _missing(columns: List[Column]) -> str:
    """A sentence saying which half of the figure the runs lack, or ``""``."""
    present = {column.key for column in columns}
    for key, fixed, value in COLUMNS:
        if key not in present:
            drawn = columns[0].key
            return (f"Only the ${SYMBOLS[drawn]}$ half: these runs have no ${SYMBOLS[key]}$ sweep at "
                    f"${SYMBOLS[fixed]}={power_of_ten(value)}$ ({key} varied at {fixed}={value:g}).")
    return ""


def draw(columns: List[Column]):
    """Figure 1's layout for ``columns``: accuracy above, π_t below, one column per
    swept key (γ left, τ right), one colour per value."""
    from matplotlib.figure import Figure

    width = 6.0 * len(columns) + (1.5 if len(columns) == 1 else 0.0)
    figure = Figure(figsize=(width, 9.0), layout="constrained")
    model, dataset, hparams_set = columns[0].runs[0].group
    title = (f"The paper's Figure 1 (Helwegen et al., 2019, section 5.1): "
             f"{model} on {pathlib.PurePath(dataset).name} ({hparams_set})")
    missing = _missing(columns)
    title = f"{title}. {missing}" if missing else title
    figure.suptitle(textwrap.fill(title, int(width * 11)), fontsize="large")
    grid = figure.subplots(2, len(columns), squeeze=False, sharex="col")
    for index, column in enumerate(columns):
        labels = list(dict.fromkeys(column.label(run) for run in column.runs))
        colors = dict(zip(labels, plots.line_colors(len(labels))))
        _draw_accuracy(grid[0][index], column, colors)
        _draw_pi(grid[1][index], column, colors)
        epochs = max(max(run.epochs_done, run.epochs_planned or 0) for run in column.runs)
        grid[0][index].set_xlim(0, max(epochs, 1))
        grid[0][index].xaxis.set_tick_params(labelbottom=True)
    return figure


def figures(runs: List[RunReport]) -> Dict[str, Any]:
    """``{"paper_figure1": Figure}`` when the runs hold Figure 1's sweeps (and
    ``paper_figure1_2``, ... for further groups of runs that do); else ``{}``."""
    found = find(runs)
    return {"paper_figure1" + (f"_{number}" if number > 1 else ""): draw(columns)
            for number, columns in enumerate(found, start=1)}
