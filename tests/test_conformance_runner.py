"""
The conformance runner's verdict: it must fail on any case that did not
pass and on any missing case, so that a protocol regression turns CI red.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "conformance" / "run.py"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("conformance_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def job(run, tmp_path, results, name="server-0"):
    outdir = tmp_path / "servers" / name
    outdir.mkdir(parents=True)
    index = {
        agent: {case: {"behavior": b, "duration": 5} for case, b in cases.items()}
        for agent, cases in results.items()
    }
    (outdir / "index.json").write_text(json.dumps(index))
    return run.Job(name, ["*"], outdir)


def test_all_passing(run, tmp_path, capsys) -> None:
    """
    OK, NON-STRICT and INFORMATIONAL pass, and the table counts them by group.
    """
    jobs = [
        job(
            run,
            tmp_path,
            {
                "wsecho": {
                    "1.1.1": "OK",
                    "6.4.1": "NON-STRICT",
                    "7.1.6": "INFORMATIONAL",
                }
            },
        )
    ]
    assert run.report("server", jobs, expected=3) == []
    out = capsys.readouterr().out
    assert "wsecho as a server: 3 cases" in out
    assert (
        (tmp_path / "servers" / "summary.txt")
        .read_text()
        .startswith("wsecho as a server")
    )


@pytest.mark.parametrize("verdict", ["FAILED", "UNIMPLEMENTED", "WRONG CODE"])
def test_a_bad_case_fails(run, tmp_path, verdict) -> None:
    """
    A single case outside the passing verdicts is a problem naming it.
    """
    jobs = [job(run, tmp_path, {"wsecho": {"1.1.1": "OK", "5.2": verdict}})]
    [problem] = run.report("server", jobs, expected=2)
    assert f"5.2 ({verdict})" in problem


def test_missing_cases_fail(run, tmp_path) -> None:
    """
    Fewer cases than expected (a wstest run that died half way) fails.
    """
    jobs = [job(run, tmp_path, {"wsecho": {"1.1.1": "OK"}})]
    [problem] = run.report("server", jobs, expected=517)
    assert "1 cases reported, 517 expected" in problem


def test_jobs_are_merged_and_reference_compared(run, tmp_path, capsys) -> None:
    """
    Results of parallel jobs are merged, and 9.* durations are shown next
    to the reference testee's.
    """
    jobs = [
        job(run, tmp_path, {"wsecho": {"12.1.1": "OK"}}, "server-0"),
        job(run, tmp_path, {"wsecho": {"9.1.1": "OK"}}, "server-1"),
        job(run, tmp_path, {run.REFERENCE: {"9.1.1": "OK"}}, "server-ref"),
    ]
    assert run.report("server", jobs, expected=2) == []
    out = capsys.readouterr().out
    assert "9.1.1" in out and "1.00" in out


def test_split(run) -> None:
    """
    With every case and two jobs the slow compression group 12.* runs on
    its own, and the 9.* performance cases are kept for a later, quiet run.
    """
    [first, second], nine = run.split(["*"], 2)
    assert first == ["12.*"]
    assert "13.*" in second and "1.*" in second and "12.*" not in second
    assert nine == ["9.*"] and "9.*" not in second
    assert run.split(["1.*", "9.1.*", "5.*"], 2) == ([["1.*"], ["5.*"]], ["9.1.*"])
