"""``bnno report``: runs to a table, JSON, plots and one HTML or Markdown file.

A report reads only files: each run's ``hparams.yaml``, ``history.csv`` and the
TensorBoard events under ``train/`` (no model, no data set, no TensorFlow; matplotlib
only when plots are asked for). Its parts:

- ``runs``: finding run directories below the given paths and reading them; the
  values that vary between the runs of a sweep;
- ``events``: TensorBoard scalars read without TensorFlow;
- ``table``: the table (terminal and Markdown) and the JSON entries;
- ``plots``: the figures, one panel per swept hyperparameter;
- ``figure1``: the paper's Figure 1 (section 5.1), where the runs hold its two sweeps;
- ``documents``: the HTML and Markdown files.

The paper's figures that runs are compared with live in :mod:`bnno.papers`.
"""

import dataclasses
import pathlib
from typing import Any, Dict, Iterable, List, Optional

from bnno import run_dir
from bnno.errors import UsageError
from bnno.report import runs as runs_lib
from bnno.report import table as table_lib
from bnno.report.runs import RunReport

FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md"}


@dataclasses.dataclass
class Report:
    """The runs found, and the directories skipped with one sentence each."""

    runs: List[RunReport]
    skipped: List[Dict[str, str]]

    def notes(self) -> List[str]:
        """Sentences about runs read in part (a damaged history row) or skipped."""
        return [f"{run.name}: {note}" for run in self.runs for note in run.notes] + [
            item["reason"] for item in self.skipped
        ]

    def sources(self) -> List[str]:
        """Where the paper figures in the table come from."""
        return table_lib.sources(self.runs)

    def table(self) -> str:
        return table_lib.text(self.runs) if self.runs else "No run has a finished epoch to report."

    def as_json(self) -> Dict[str, Any]:
        return {"runs": [table_lib.entry(run) for run in self.runs], "skipped": self.skipped}


def collect(paths: Iterable[pathlib.Path]) -> Report:
    """The report of the runs under ``paths``; a path with no run directory below it
    at all is a ``UsageError``."""
    paths = [pathlib.Path(path) for path in paths]
    empty = runs_lib.empty_paths(paths)
    if empty:
        raise UsageError(
            f"{empty[0]} holds no bnno runs: expected a run directory (one with "
            f"{run_dir.HPARAMS_FILE}) or a directory with run directories below it, "
            "such as --output-dir of `bnno train` or a sweep's directory."
        )
    runs, skipped = runs_lib.collect(paths)
    return Report(runs, skipped)


def output_format(output: pathlib.Path) -> str:
    """``html`` or ``md``, from the report file's suffix."""
    kind = FORMATS.get(pathlib.Path(output).suffix.lower())
    if kind is None:
        raise UsageError(
            f"--output {output} must end in .html (one self-contained file) or .md "
            "(Markdown with links to the plots' PNGs)."
        )
    return kind


def write(report: Report, output: Optional[pathlib.Path] = None,
          plots_dir: Optional[pathlib.Path] = None) -> List[pathlib.Path]:
    """Write the plots' PNGs (into ``plots_dir``; for a Markdown report by default
    ``<name>_plots/`` next to it) and the report file; returns the files written."""
    from bnno.report import documents, plots

    kind = output_format(output) if output is not None else None
    if plots_dir is None and kind == "md":
        plots_dir = output.parent / f"{output.stem}_plots"
    pngs = {name: plots.png_bytes(figure) for name, figure in plots.figures(report.runs).items()}
    written = []
    if plots_dir is not None:
        pathlib.Path(plots_dir).mkdir(parents=True, exist_ok=True)
        for name, png in pngs.items():
            path = pathlib.Path(plots_dir) / f"{name}.png"
            path.write_bytes(png)
            written.append(path)
    sources = report.sources()
    if kind == "html":
        headers, alignments, rows = table_lib.cells(report.runs)
        text = documents.html_document(headers, alignments, rows, report.notes(), pngs, sources)
    elif kind == "md":
        images = dict(zip(pngs, written))
        markdown = table_lib.markdown(report.runs) if report.runs else ""
        text = documents.markdown_document(markdown, report.notes(), images, output, sources)
    if kind is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        written.append(output)
    return written
