"""The audit's verdict: one row per check, written as JSON and Markdown under <root>/audits/ and to MLflow."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from steps import tracking
from steps.core.names import Tag

AUDIT_EXPERIMENT = "shrinkflow-audits"
AUDITS_DIR = "audits"


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not checked (the detail says why)
    detail: str
    recorded: str = ""
    observed: str = ""

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "skipped"}[self.passed]


@dataclass
class AuditReport:
    model_uri: str
    model_name: str
    version: int
    started: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed,
                "checks": [asdict(c) | {"verdict": c.verdict} for c in self.checks]}

    def to_markdown(self) -> str:
        lines = [f"# Audit of {self.model_uri} (v{self.version})", "",
                 f"Started {self.started}. Verdict: **{'PASS' if self.passed else 'FAIL'}**"
                 f" ({len(self.failures())} failed of {len(self.checks)} checks).", "",
                 "| check | verdict | recorded | observed | detail |", "|---|---|---|---|---|"]
        for c in self.checks:
            cells = [c.name, c.verdict, c.recorded, c.observed, c.detail]
            lines.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
        return "\n".join(lines) + "\n"


def save(root: Path, report: AuditReport) -> tuple[Path, Path]:
    """Write the JSON and Markdown reports under <root>/audits/ and log both to an MLflow run; tag the version."""
    stamp = report.started.replace(":", "").replace("-", "")
    base = Path(root) / AUDITS_DIR / f"{report.model_name}-v{report.version}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = base.with_suffix(".json"), base.with_suffix(".md")
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    md_path.write_text(report.to_markdown())
    verdict = "pass" if report.passed else "fail"
    tracking.record_files(AUDIT_EXPERIMENT, f"audit {report.model_name} v{report.version}",
                          {Tag.AUDIT_MODEL: report.model_name, Tag.AUDIT_VERSION: str(report.version),
                           Tag.AUDIT_VERDICT: verdict}, [json_path, md_path], passed=report.passed)
    tracking.tag_version(report.model_name, report.version, {Tag.LAST_AUDIT: f"{verdict} {report.started}"})
    return json_path, md_path
