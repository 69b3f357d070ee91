"""The report's table (for a terminal and for Markdown) and its JSON entries.

Accuracies are read from ``history.csv`` as written; the table prints them in percent,
the JSON as the fractions the file holds. The difference from the paper is the final
validation top-1 minus the paper's figure.
"""

import pathlib
from typing import Any, Callable, Dict, List, Optional, Tuple

from bnno.report.runs import RunReport, format_value


def percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def duration(seconds: Optional[float]) -> str:
    """``42s``, ``12m 05s``, ``3h 07m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def dataset_label(dataset: str) -> str:
    """A tfds name as given; an image folder by its last component."""
    return pathlib.PurePath(dataset).name if ("/" in dataset or "\\" in dataset) else dataset


def paper_difference(run: RunReport) -> Optional[float]:
    """Final validation top-1 minus the paper's figure (fractions); ``None`` without one."""
    figure, final = run.paper, run.final("val_accuracy")
    if figure is None or final is None:
        return None
    return final - figure.val_accuracy


def _difference_text(run: RunReport) -> str:
    difference = paper_difference(run)
    return "-" if difference is None else f"{100 * difference:+.1f} pts"


def _varied_columns(runs: List[RunReport]) -> List[str]:
    keys: List[str] = []
    for run in runs:
        keys += [key for key in run.varied if key not in keys]
    return keys


Column = Tuple[str, Callable[[RunReport], str], str]  # header, cell, "<" or ">"


def columns(runs: List[RunReport]) -> List[Column]:
    """The table's columns: what ran, the values that vary, progress, accuracies,
    the last flip ratio, wall time and the paper's figure."""
    varied = [
        (key, (lambda run, key=key: format_value(run.varied[key]) if key in run.varied else ""), ">")
        for key in _varied_columns(runs)
    ]
    return [
        ("run", lambda run: run.name, "<"),
        ("model", lambda run: run.model, "<"),
        ("data set", lambda run: dataset_label(run.dataset), "<"),
        ("set", lambda run: run.hparams_set, "<"),
        *varied,
        ("epochs", lambda run: f"{run.epochs_done}/{run.epochs_planned if run.epochs_planned is not None else '?'}", ">"),
        ("best top-1", lambda run: percent(run.best("val_accuracy")), ">"),
        ("final top-1", lambda run: percent(run.final("val_accuracy")), ">"),
        ("best top-5", lambda run: percent(run.best("val_top5_accuracy")), ">"),
        ("final top-5", lambda run: percent(run.final("val_top5_accuracy")), ">"),
        ("flip ratio", lambda run: "-" if run.final_flip_ratio is None else f"{run.final_flip_ratio:.2e}", ">"),
        ("wall time", lambda run: duration(run.wall_seconds), ">"),
        ("paper", lambda run: percent(run.paper.val_accuracy) if run.paper else "-", ">"),
        ("vs paper", _difference_text, ">"),
    ]


def cells(runs: List[RunReport]) -> Tuple[List[str], List[str], List[List[str]]]:
    """``(headers, alignments, rows of cells)``."""
    table = columns(runs)
    return ([header for header, _, _ in table], [align for _, _, align in table],
            [[cell(run) for _, cell, _ in table] for run in runs])


def text(runs: List[RunReport]) -> str:
    """The table aligned for a terminal: a header, a rule, one line per run."""
    headers, alignments, rows = cells(runs)
    widths = [max(len(value) for value in column) for column in zip(headers, *rows)]

    def line(values):
        return "  ".join(f"{value:{align}{width}}" for value, align, width in zip(values, alignments, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *map(line, rows)])


def markdown(runs: List[RunReport]) -> str:
    """The table in Markdown (GitHub's pipe tables)."""
    headers, alignments, rows = cells(runs)

    def line(values):
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    rule = "|" + "|".join(" ---: " if align == ">" else " --- " for align in alignments) + "|"
    return "\n".join([line(headers), rule, *map(line, rows)])


def sources(runs: List[RunReport]) -> List[str]:
    """Where each paper figure in the table comes from, one line per figure."""
    figures = []
    for run in runs:
        if run.paper and run.paper not in figures:
            figures.append(run.paper)
    return [f"{figure.model} on {figure.dataset} ({figure.hparams_set}): "
            f"{percent(figure.val_accuracy)} top-1, {figure.citation()}" for figure in figures]


def entry(run: RunReport) -> Dict[str, Any]:
    """One run's JSON entry (accuracies as fractions, as in ``history.csv``)."""
    best_epoch = max(run.column("val_accuracy"), key=lambda item: item[1], default=(None, None))[0]
    figure = run.paper
    return {
        "run_dir": str(run.run_dir.resolve()),
        "name": run.name,
        "model": run.model,
        "dataset": run.dataset,
        "hparams_set": run.hparams_set,
        "hparams": run.hparams,
        "varied": run.varied,
        "seed": run.record.get("seed"),
        "init_from": run.record.get("init_from"),
        "state": "finished" if run.finished else "unfinished",
        "epochs_done": run.epochs_done,
        "epochs_planned": run.epochs_planned,
        "best_val_accuracy": run.best("val_accuracy"),
        "best_val_accuracy_epoch": best_epoch,
        "final_val_accuracy": run.final("val_accuracy"),
        "best_val_top5_accuracy": run.best("val_top5_accuracy"),
        "final_val_top5_accuracy": run.final("val_top5_accuracy"),
        "final_accuracy": run.final("accuracy"),
        "final_flip_ratio": run.final_flip_ratio,
        "wall_seconds": run.wall_seconds,
        "paper_val_accuracy": figure.val_accuracy if figure else None,
        "paper_difference": paper_difference(run),
        "paper_source": figure.citation() if figure else None,
        "notes": run.notes,
    }
