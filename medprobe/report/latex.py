"""report.tex: every table of the report as a booktabs table, ready for a paper's appendix.

Cells keep their intervals; the best of a column is bold and an indistinguishable one carries
an approx sign, as in the HTML report; context rows (null baselines, published references) are grey
under a rule. The file compiles on its own with LaTeX's base packages and booktabs.
"""

from __future__ import annotations

from medprobe.report.tables import Table

PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[utf8]{inputenc}
\usepackage[T1]{fontenc}
\usepackage[landscape,margin=1.5cm]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage{color}
\definecolor{context}{gray}{0.45}
\begin{document}
"""
# Characters LaTeX reads as commands, and the report's symbols in LaTeX.
ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "≈": r"$\approx$",
    "Δ": r"$\Delta$",
    "·": r"$\cdot$",
    "⚠": r"\textbf{!}",
    "†": r"\dag{}",
    "–": "--",
    "≥": r"$\geq$",
    "×": r"$\times$",
}


def escape(text: str) -> str:
    """`text` with every LaTeX special character and report symbol written out."""
    return "".join(ESCAPES.get(ch, ch) for ch in str(text))


def document(tables: list[Table], notes: list[str]) -> str:
    """The whole report.tex: the caption's notes, then one table per dataset and the compute one."""
    out = [PREAMBLE, r"\section*{medprobe report}", _itemize(notes)]
    for table in tables:
        out.append(table_tex(table))
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def table_tex(table: Table) -> str:
    """One booktabs table: header, the runs, then the grey context rows."""
    width = len(table.header)
    lines = [
        rf"\subsection*{{{escape(table.title)}}}",
        _itemize(table.notes),
        r"\begin{table}[h!]\centering",
        r"\resizebox{\linewidth}{!}{%",
        rf"\begin{{tabular}}{{ll{'r' * (width - 2)}}}",
        r"\toprule",
        " & ".join(escape(h) for h in table.header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_cell(text, mark) for text, mark in line) + r" \\" for line in table.body]
    if table.context:
        lines.append(r"\midrule")
        lines += [
            " & ".join(rf"\textcolor{{context}}{{{escape(text)}}}" for text, _ in line) + r" \\"
            for line in table.context
        ]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]
    return "\n".join(lines)


def _cell(text: str, mark: str) -> str:
    if mark == "best":
        return rf"\textbf{{{escape(text)}}}"
    if mark == "tied":
        return escape(text) + r" $\approx$"
    return escape(text)


def _itemize(notes: list[str]) -> str:
    if not notes:
        return ""
    items = "\n".join(rf"\item {escape(note)}" for note in notes)
    return "\\begin{itemize}\n" + items + "\n\\end{itemize}"
