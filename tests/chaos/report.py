"""Render docs/reliability.md from the chaos suite's figures.

    python3 dev.py reliability                  # run the suite and the soak, render the page
    python3 dev.py reliability --no-soak        # the suite at CI sizes only
    python3 dev.py reliability --keep DIR       # keep the JSON and JUnit files in DIR
    python3 dev.py reliability --render DIR     # render again from the files kept in DIR

Each run writes its figures as JSON (QUEUETOPIA_CHAOS_REPORT: one object per scenario,
tests/chaos/harness.py's `Report`) and its outcome as JUnit XML; the page is the
template tests/chaos/reliability.md.in with those figures filled in. No figure of the
page is written by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).with_name("reliability.md.in")
PAGE = ROOT / "docs" / "reliability.md"
FAILOVER = "12"
SOAK = "13 randomized"
HIDDEN = ("(self-test)",)  # test_invariants.py's reports of hand-made violations


def run(out: Path, *, soak: bool) -> None:
    """The suite at CI sizes, then (with `soak`) the soak at its big size."""
    runs = [("ci", ["tests/chaos"])]
    if soak:
        runs.append(("soak", ["tests/chaos/test_soak.py", "--soak"]))
    for name, args in runs:
        env = {**os.environ, "QUEUETOPIA_CHAOS_REPORT": str(out / f"{name}.json")}
        cmd = [sys.executable, "-m", "pytest", *args, "-q", f"--junitxml={out / name}.xml"]
        print("$", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        (out / f"{name}.load").write_text(" ".join(f"{x:.1f}" for x in os.getloadavg()))


def _reports(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text()) if r["scenario"] not in HIDDEN]


def _outcome(name: str, out: Path) -> str:
    """One line: what pytest said, and the tests that did not simply pass."""
    path = out / f"{name}.xml"
    if not path.exists():
        return "not run"
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    total, seconds = int(suite.get("tests", 0)), float(suite.get("time", 0))
    notes: list[str] = []
    counts = {"failed": 0, "skipped": 0, "xfailed": 0}
    for case in suite.iter("testcase"):
        for child in case:
            kind = child.tag
            message = (child.get("message") or "").splitlines()[0:1]
            if kind in ("failure", "error"):
                counts["failed"] += 1
                label = "failed"
            elif kind == "skipped":
                xfail = (child.get("type") or "") == "pytest.xfail"
                label = "xfailed" if xfail else "skipped"
                counts[label] += 1
            else:
                continue
            notes.append(f"`{case.get('name')}` {label}: {message[0] if message else ''}")
    passed = total - sum(counts.values())
    load = (out / f"{name}.load").read_text() if (out / f"{name}.load").exists() else "?"
    line = (
        f"{passed} passed, {counts['failed']} failed, {counts['xfailed']} xfailed, "
        f"{counts['skipped']} skipped in {seconds / 60:.1f} min "
        f"(load average at the end: {load})"
    )
    return line + "".join(f"\n    * {n}" for n in notes)


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _violations(r: dict[str, Any]) -> str:
    names = (
        "lost",
        "duplicated",
        "same_attempt_twice",
        "phantom_completions",
        "order_violations",
        "overlaps",
        "killed_not_counted",
        "idle_in_transaction_seen",
    )
    found = {n: r[n] for n in names if r.get(n)}
    return "**" + _value(found) + "**" if found else "none"


def _figures(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | jobs | executions | faults | killed / re-executed"
        " | overlaps cut off (max s; max s after resume) | recovery median / max s | took s"
        " | violations"
        " | other figures |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r['scenario']} | {r['jobs']} | {r['executions']} | {_value(r['faults'])}"
            f" | {r['killed_executions']} / {r['reexecuted_after_fault']}"
            f" | {r['cut_off_overlaps']} ({r['cut_off_overlap_max_s']};"
            f" {r.get('cut_off_after_resume_max_s', '-')})"
            f" | {r['median_recovery_s']} / {r['max_recovery_s']} | {r['duration_s']}"
            f" | {_violations(r)} | {_value(r.get('extra') or {})} |"
        )
    return "\n".join(lines)


def _failover(reports: list[dict[str, Any]]) -> str:
    runs = [r for r in reports if r["scenario"].startswith(FAILOVER)]
    if not runs:
        return "No failover scenario in this run."
    keys = sorted({k for r in runs for k in (r.get("extra") or {})})
    lines = [
        "| | " + " | ".join(r["scenario"] for r in runs) + " |",
        "|---|" + "---|" * len(runs),
        "| violations | " + " | ".join(_violations(r) for r in runs) + " |",
    ]
    for key in keys:
        values = [_value((r.get("extra") or {}).get(key, "")) for r in runs]
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def _soak(soak: list[dict[str, Any]], ci: list[dict[str, Any]], out: Path) -> str:
    big = [r for r in soak if r["scenario"].startswith(SOAK)]
    source, label = (big, "`--soak`") if big else (ci, "CI size (no `--soak` run kept)")
    runs = [r for r in source if r["scenario"].startswith(SOAK)]
    if not runs:
        return "No soak in this run."
    r = runs[-1]
    extra = r.get("extra") or {}
    lines = [
        f"Size: {label}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| seed (QUEUETOPIA_SOAK_SEED replays it) | {extra.get('seed')} |",
        f"| workers x slots, queues | {extra.get('workers')} x 3, {extra.get('queues')} |",
        f"| duration (faults, then drain) | {r['duration_s']} s |",
        f"| faults injected | {extra.get('faults_injected')} |",
        f"| faults by kind | {_value(r['faults'])} |",
        f"| read-only flips | {extra.get('read_only_flips')} |",
        f"| jobs, executions | {r['jobs']}, {r['executions']} |",
        f"| lost | {r['lost']} |",
        f"| duplicated (unexplained) | {r['duplicated']} |",
        f"| order violations | {r['order_violations']} |",
        f"| overlaps (unexplained) | {r['overlaps']} |",
        f"| overlaps cut off by the fence (max s) | {r['cut_off_overlaps']}"
        f" ({r['cut_off_overlap_max_s']}) |",
        f"| killed executions, re-executed after a fault | {r['killed_executions']},"
        f" {r['reexecuted_after_fault']} |",
        f"| recovery after a kill, median / max | {r['median_recovery_s']} s /"
        f" {r['max_recovery_s']} s |",
        f"| failed jobs | {extra.get('failed_jobs')} |",
        f"| every violation | {_violations(r)} |",
    ]
    models = [m for m in soak if m["scenario"].startswith("13 model")]
    if models:
        seed = (models[-1].get("extra") or {}).get("seed")
        lines += [
            "",
            f"The model of the rules (tests/test_model.py) ran in the soak with seed {seed}"
            " (QUEUETOPIA_MODEL_SEED replays it).",
        ]
    if big:
        lines += ["", f"Soak run: {_outcome('soak', out)}"]
    return "\n".join(lines)


def _loop(out: Path) -> str:
    """The CI-size soak run in a loop (tests/chaos/soak_loop.py), if it was."""
    path = out / "loop.json"
    if not path.exists():
        return "The loop was not run for this page."
    runs = json.loads(path.read_text())
    passed = sum(1 for r in runs if r["passed"])
    lines = [
        f"`python tests/chaos/soak_loop.py --runs {len(runs)}`: **{passed} of {len(runs)}"
        " runs passed**.",
        "",
        "| run | seed | outcome | s | jobs | faults"
        " | overlaps cut off (max s; max s after resume) | violations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        rep = r.get("report") or {}
        faults = sum((rep.get("faults") or {}).values())
        cut = (
            f"{rep.get('cut_off_overlaps', '-')} ({rep.get('cut_off_overlap_max_s', '-')};"
            f" {rep.get('cut_off_after_resume_max_s', '-')})"
        )
        lines.append(
            f"| {r['run']} | {r['seed']} | {'passed' if r['passed'] else '**failed**'}"
            f" | {r['seconds']} | {rep.get('jobs', '-')} | {faults} | {cut}"
            f" | {_violations(rep) if rep else '-'} |"
        )
    return "\n".join(lines)


def render(out: Path) -> str:
    ci, soak = _reports(out / "ci.json"), _reports(out / "soak.json")
    date = datetime.date.today().isoformat()
    run_line = (
        f"Generated on {date} by `python3 dev.py reliability` on a machine with"
        f" {os.cpu_count()} cores, shared with other work. CI-size run"
        f" (`python -m pytest tests/chaos -q`): {_outcome('ci', out)}"
    )
    page = TEMPLATE.read_text()
    for key, text in {
        "run": run_line,
        "figures": _figures(ci),
        "failover": _failover(ci),
        "soak": _soak(soak, ci, out),
        "loop": _loop(out),
    }.items():
        page = page.replace("{{" + key + "}}", text)
    return page


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-soak", action="store_true", help="skip the --soak run")
    parser.add_argument("--keep", type=Path, help="keep the JSON and JUnit files here")
    parser.add_argument("--render", type=Path, help="only render, from the files kept here")
    args = parser.parse_args(argv)
    if args.render:
        out = args.render
    else:
        out = args.keep or Path(tempfile.mkdtemp(prefix="qt-reliability-"))
        out.mkdir(parents=True, exist_ok=True)
        run(out, soak=not args.no_soak)
    PAGE.write_text(render(out))
    print(f"wrote {PAGE.relative_to(ROOT)} from {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
