"""The results table (printed, and written to docs/benchmarks.md) and the targets they are held to."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Row:
    metric: str
    value: float
    unit: str
    note: str = ""

    def formatted(self) -> str:
        if not math.isfinite(self.value):
            return "n/a"
        if self.unit == "cosine":  # 0.99995 must not print as 1
            return f"{self.value:.6f}"
        if abs(self.value) >= 100:
            return f"{self.value:.0f}"
        if abs(self.value) >= 10:
            return f"{self.value:.1f}"
        return f"{self.value:.3g}" if abs(self.value) < 1 else f"{self.value:.2f}"


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured


@dataclass
class Report:
    machine: str
    command: str
    load: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append(Row(metric, float(value), unit, note))

    def value(self, metric: str) -> float:
        return next((r.value for r in self.rows if r.metric == metric), float("nan"))

    def table(self) -> str:
        lines = ["| metric | value | unit | note |", "|---|---:|---|---|"]
        lines += [f"| {r.metric} | {r.formatted()} | {r.unit} | {r.note} |" for r in self.rows]
        return "\n".join(lines)

    def targets_table(self) -> str:
        lines = ["| target | goal | measured | met? |", "|---|---|---|---|"]
        for t in self.targets:
            verdict = "not measured" if t.met is None else ("met" if t.met else "**missed**")
            lines.append(f"| {t.name} | {t.goal} | {t.measured} | {verdict} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        parts = [f"Machine: {self.machine}", f"Load average when the run started: {self.load}",
                 f"Command: `{self.command}`", "", self.table(), "", "Targets:", "", self.targets_table()]
        if self.notes:
            parts += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(parts)
