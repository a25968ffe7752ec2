"""An analysis as text (table, markdown, CSV, JSON) and as one self-contained HTML report with plots.

The HTML holds Optuna's interactive plotly figures of each sweep's study (`hamtune.results.studyplots`)
with plotly.js inlined once, hamtune's own plots as base64 PNGs and its styles inline, so the
single file can be mailed, attached to a ticket or opened offline, and loads nothing. Every
plot is also written next to it as a PNG, for papers.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from hamtune.results import plots
from hamtune.results.analysis import HOURS_COLUMNS, Analysis, confusion, learning_curves
from hamtune.errors import ConfigError, ExperimentError
from hamtune.labels import CLASSES
from hamtune.results.studyplots import StudyView, interactive, study_view, write_pngs

logger = logging.getLogger(__name__)

FORMATS = ("table", "markdown", "csv", "json")
REPORT_FILE = "report.html"
_HOURS_MEANING = {"GPU-hours": "fit time x GPU share, summed over trials",
                  "training hours": "fit time summed over trials, no GPU used"}


def _number(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def per_class_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Classes as rows; recall and precision of each model's best trial side by side."""
    models = list(dict.fromkeys(long["model"]))
    table = pd.DataFrame({"class": list(CLASSES)})
    support = long.pivot(index="class", columns="model", values="support").reindex(list(CLASSES))
    if support.nunique(axis=1, dropna=False).le(1).all() and models:
        table["support"] = support[models[0]].to_numpy()
    for model in models:
        rows = long[long["model"] == model].set_index("class").reindex(list(CLASSES))
        if "support" not in table:
            table[f"{model} support"] = rows["support"].to_numpy()
        table[f"{model} recall"] = rows["recall"].to_numpy()
        table[f"{model} precision"] = rows["precision"].to_numpy()
    return table


def sections(analysis: Analysis) -> dict[str, tuple[str, pd.DataFrame]]:
    """The printed tables, each with its heading."""
    metric, n = analysis.metric, len(analysis.leaderboard)
    evaluators = ", ".join(dict.fromkeys(analysis.importance.table["evaluator"])) or "none"
    return {
        "leaderboard": (f"Top {n} trials by {metric}", analysis.leaderboard),
        "models": (f"Models ({HOURS_COLUMNS[analysis.hours_unit]}: {_HOURS_MEANING[analysis.hours_unit]})",
                   analysis.models),
        "per_class": ("Per-class validation recall and precision of each model's best trial",
                      per_class_wide(analysis.per_class)),
        "importance": (f"Hyperparameter importance for {metric} (evaluator: {evaluators})",
                       analysis.importance.table),
        "fidelity": (f"Rung fidelity of {metric}: Spearman correlation of each rung's scores with the final best",
                     analysis.fidelity),
    }


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned, 4 significant digits)."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(t) else "---" for t in table.dtypes) + "|"
    rows = ["| " + " | ".join(_number(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def format_analysis(analysis: Analysis, fmt: str = "table") -> str:
    """What `hamtune analyze` prints, in `fmt` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    parts = sections(analysis)
    if fmt == "json":
        payload = {"metric": analysis.metric, "sweeps": list(analysis.sweeps), "hours_unit": analysis.hours_unit}
        for key, (_, table) in parts.items():
            table = analysis.per_class if key == "per_class" else table  # long form suits machines
            payload[key] = json.loads(table.to_json(orient="records"))
        payload["notes"] = list(analysis.notes)
        return json.dumps(payload, indent=2)
    render: Callable[[pd.DataFrame], str] = {
        "table": lambda t: t.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}"),
        "markdown": markdown_table,
        "csv": lambda t: t.to_csv(index=False).rstrip("\n"),
    }[fmt]
    heading = {"table": "{}:", "markdown": "## {}", "csv": "# {}"}[fmt]
    blocks = [f"{heading.format(title)}\n{render(table) if len(table) else '(none)'}"
              for title, table in parts.values()]
    if analysis.notes:
        bullet = "# " if fmt == "csv" else "- "
        blocks.append(heading.format("Notes") + "\n" + "\n".join(bullet + note for note in analysis.notes))
    return "\n\n".join(blocks)


# --- files ----------------------------------------------------------------------------------------


def write_plots(analysis: Analysis, views: Sequence[StudyView], out: Path) -> dict[str, Path]:
    """Render every plot the analysis has data for into `out` as PNGs; returns {file stem: path}.

    hamtune's own plots, then Optuna's of each view's study (named after the sweep when there are several).
    """
    figures = {}
    curves = learning_curves(analysis.epochs, analysis.leaderboard)
    if len(curves):
        names = {row.trial_id: f"#{row.rank} {row.trial_id} {row.model}"
                 for row in analysis.leaderboard.itertuples()}
        figures["learning_curves"] = lambda: plots.learning_curves(curves, analysis.metric, names)
    figures["per_class_scores"] = lambda: plots.per_class_scores(analysis.per_class)
    best = analysis.trials.iloc[0]  # ranked first: analyze() refuses a table with no ranked trial
    matrix = confusion(best)
    if matrix is not None:
        title = f"Validation confusion matrix of the best trial ({best['trial_id']}, {best['model']})"
        figures["confusion_matrix"] = lambda: plots.confusion_matrix(matrix, title)
    images = {name: plots.save(draw(), out / f"{name}.png") for name, draw in figures.items()}
    for view in views:
        prefix = f"{view.sweep}-" if len(views) > 1 else ""
        images.update({path.stem: path for path in write_pngs(view, analysis.metric, out, prefix).values()})
    return images


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}
th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f3f3f3}img{max-width:100%;margin:.5em 0 1.5em}
.notes li{margin:.2em 0}"""
#: hamtune's own plots under the table they belong to.
_PLACEMENT = {"leaderboard": ["learning_curves"], "per_class": ["per_class_scores", "confusion_matrix"]}
_TITLES = {"optimization_history": "Optimisation history", "parallel_coordinate": "Parallel coordinates",
           "param_importances": "Hyperparameter importances", "slice": "Slice plots",
           "contour": "Contours over the continuous hyperparameters"}


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    alt = html.escape(path.stem.replace("_", " "))
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"></figure>'


def _study_section(view: StudyView, metric: str) -> list[str]:
    """Optuna's interactive figures of one sweep's study (plotly.js itself is inlined once, in the head)."""
    body = [f"<h2>Optuna's plots of {html.escape(view.sweep)}</h2>"]
    for name, figure in interactive(view, metric).items():
        body.append(f"<h3>{_TITLES[name]}</h3>")
        body.append(figure.to_html(full_html=False, include_plotlyjs=False, default_height="500px",
                                   config={"displaylogo": False}))
    return body


def render_html(analysis: Analysis, images: dict[str, Path], views: Sequence[StudyView]) -> str:
    """The whole report as one HTML document: plotly.js, Optuna's figures and hamtune's PNGs inlined."""
    from plotly.offline import get_plotlyjs

    body = [f"<h1>hamtune analysis: {html.escape(', '.join(analysis.sweeps))}</h1>"]
    notes = [*analysis.notes, *(view.note for view in views)]
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    body.append(f"<h2>Notes</h2><ul class='notes'>{items}</ul>")
    for key, (title, table) in sections(analysis).items():
        body.append(f"<h2>{html.escape(title)}</h2>")
        body.append(table.to_html(index=False, na_rep="-", border=0, float_format=lambda v: f"{v:.4g}")
                    if len(table) else "<p>(none)</p>")
        body += [_image(images[name]) for name in _PLACEMENT.get(key, []) if name in images]
    for view in views:
        body += _study_section(view, analysis.metric)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>hamtune analysis</title>"
            f"<style>{_CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head>"
            f"<body>{''.join(body)}</body></html>")


def write_report(analysis: Analysis, out: Path) -> list[Path]:
    """Write the PNG plots and `report.html` into `out`; returns the report first, then the PNGs."""
    views = [study_view(analysis, sweep) for sweep in analysis.sweeps]
    try:
        out.mkdir(parents=True, exist_ok=True)
        images = write_plots(analysis, views, out)
        report = out / REPORT_FILE
        report.write_text(render_html(analysis, images, views), encoding="utf-8")
    except OSError as error:
        raise ExperimentError(f"cannot write the report into {out}: {error}") from error
    logger.debug("wrote %s and %d plots", report, len(images))
    return [report, *images.values()]
