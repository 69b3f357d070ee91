"""The report as one file: self-contained HTML (PNGs embedded as base64), or Markdown
with links to PNG files."""

import base64
import datetime
import html
import os
import pathlib
from typing import Dict, List

from bnno import __version__

TITLES = {
    "paper_figure1": "The paper's Figure 1: accuracy and π_t for Bop's γ and τ (section 5.1)",
    "accuracy": "Top-1 accuracy per epoch",
    "flip_ratio": "Flip ratio per epoch",
    "flip_ratio_layers": "Flip ratio per epoch, per binary layer",
    "schedules": "Schedules: Bop's γ and the learning rate",
}


def title(name: str) -> str:
    """A figure's heading; ``paper_figure1_2`` is the second group of runs with Figure 1."""
    base, _, number = name.rpartition("_")
    if name not in TITLES and number.isdigit() and base in TITLES:
        return f"{TITLES[base]} ({number})"
    return TITLES.get(name, name)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { text-align: left; background: #f4f4f4; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.notes { color: #555; }
"""


def _made() -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"Made {stamp} by bnno {__version__}"


def html_document(headers: List[str], alignments: List[str], rows: List[List[str]],
                  notes: List[str], pngs: Dict[str, bytes], sources: List[str]) -> str:
    """One HTML page: the table, where the paper's figures come from, notes on runs
    that were skipped, and the figures inline."""
    escape = html.escape
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="number">{escape(cell)}</td>' if align == ">" else f"<td>{escape(cell)}</td>"
            for cell, align in zip(row, alignments)
        ) + "</tr>\n"
        for row in rows
    )
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>bnno report</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>bnno report</h1>", f"<p>{escape(_made())}.</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>" if rows
        else "<p>No run has a finished epoch to report.</p>",
    ]
    if sources:
        parts.append("<p>Paper figures: " + "; ".join(escape(source) for source in sources) + ".</p>")
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul>")
    for name, png in pngs.items():
        encoded = base64.b64encode(png).decode("ascii")
        heading = escape(title(name))
        parts.append(f'<h2>{heading}</h2>\n<img alt="{heading}" src="data:image/png;base64,{encoded}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def markdown_document(table: str, notes: List[str], images: Dict[str, pathlib.Path],
                      document: pathlib.Path, sources: List[str]) -> str:
    """Markdown: the table, sources, notes, and links to the PNGs relative to the
    document's own folder."""
    parts = ["# bnno report", "", f"{_made()}.", "", table or "No run has a finished epoch to report.", ""]
    if sources:
        parts += ["Paper figures: " + "; ".join(sources) + ".", ""]
    parts += [f"- {note}" for note in notes] + ([""] if notes else [])
    for name, path in images.items():
        link = pathlib.Path(os.path.relpath(path, document.parent)).as_posix()
        parts += [f"## {title(name)}", "", f"![{title(name)}]({link})", ""]
    return "\n".join(parts).rstrip("\n") + "\n"
