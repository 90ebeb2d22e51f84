"""docs/reliability.md is rendered from the suite's figures (tests/chaos/report.py):
every placeholder of the template is filled, every figure comes from the JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .harness import Report
from .report import TEMPLATE, render

JUNIT = """<?xml version="1.0"?><testsuites><testsuite tests="3" time="90.0">
<testcase name="test_a"/><testcase name="test_b"><skipped type="pytest.skip"
message="PgBouncer is not installed"/></testcase>
<testcase name="test_c"><skipped type="pytest.xfail" message="a known defect"/></testcase>
</testsuite></testsuites>"""


def test_the_page_is_rendered_from_the_figures(tmp_path: Path) -> None:
    reports = [
        Report("2 SIGKILL chaos", jobs=480, executions=503, faults={"kill": 10}),
        Report("12b failover, async", jobs=38, lost=79, extra={"lost_enqueues": 75}),
        Report("13 randomized mixed-fault soak", jobs=4321, extra={"seed": 987654321}),
        Report("(self-test)", duplicated=1),
    ]
    (tmp_path / "ci.json").write_text(json.dumps([asdict(r) for r in reports]))
    (tmp_path / "ci.xml").write_text(JUNIT)
    page = render(tmp_path)
    assert "{{" in TEMPLATE.read_text() and "{{" not in page
    assert "| 2 SIGKILL chaos | 480 | 503 | kill 10 |" in page
    assert "| lost enqueues | 75 |" in page and "**lost 79**" in page
    assert "987654321" in page and "4321" in page
    assert "1 passed, 0 failed, 1 xfailed, 1 skipped in 1.5 min" in page
    assert "`test_c` xfailed: a known defect" in page
    assert "(self-test)" not in page
    assert "The loop was not run" in page
    loop = [
        {"run": 1, "seed": 11, "passed": True, "seconds": 70.0,
         "report": asdict(Report("13 randomized mixed-fault soak", jobs=1800,
                                 faults={"kill": 9, "stop": 4}))},
        {"run": 2, "seed": 22, "passed": False, "seconds": 75.5,
         "report": asdict(Report("13 randomized mixed-fault soak", jobs=1700, lost=1))},
    ]  # fmt: skip
    (tmp_path / "loop.json").write_text(json.dumps(loop))
    page = render(tmp_path)
    assert "**1 of 2 runs passed**" in page
    assert "| 1 | 11 | passed | 70.0 | 1800 | 13 |" in page
    assert "| 2 | 22 | **failed** | 75.5 | 1700 | 0 |" in page and "**lost 1**" in page
