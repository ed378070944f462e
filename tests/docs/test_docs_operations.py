"""The Python blocks of docs/operations.md run as pasted; its dashboard is valid JSON that
uses only the library's metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.docs.test_docs_examples import DOCS, python_blocks, run_as_pasted

OPERATIONS = python_blocks("operations.md")
METRICS = {
    "webhooks_published_events_total",
    "webhooks_attempts_total",
    "webhooks_attempt_duration_seconds_bucket",
    "webhooks_in_flight",
    "webhooks_deliveries",
    "webhooks_endpoints",
    "webhooks_oldest_due_age_seconds",
}


@pytest.mark.parametrize("index", range(len(OPERATIONS)))
def test_operations_block_runs(index: int, tmp_path: Path) -> None:
    run_as_pasted(OPERATIONS[index], tmp_path)


def test_the_dashboard_and_the_alerts_use_only_the_librarys_metrics() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text(encoding="utf-8"))
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    expressions += re.findall(r"```promql\n(.*?)```", text, re.DOTALL)
    used = {name for e in expressions for name in re.findall(r"\bwebhooks_\w+", e)}
    assert used and used <= METRICS
    assert (DOCS / "operations-dashboard.png").stat().st_size > 10_000
