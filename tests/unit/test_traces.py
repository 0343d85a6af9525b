from pathlib import Path

import pytest

from raydc.scheduler.traces import TraceFormatError, load_trace, parse_trace

PHILLY = Path(__file__).resolve().parents[3] / "shared" / "traces" / "philly.csv"


def test_generic_trace_with_only_the_required_columns() -> None:
    trace = parse_trace(["submit_time,duration,gpus", "30,100,2", "10,50,1", ""])
    assert trace.errors == []
    assert [(j.id, j.submit_s, j.duration_s, j.gpus) for j in trace.jobs] == [
        (0, 0.0, 50.0, 1),
        (1, 20.0, 100.0, 2),
    ]
    assert trace.jobs[0].tenant == "default" and trace.jobs[0].priority == "normal"


def test_generic_trace_with_every_column() -> None:
    trace = parse_trace([
        "submit_time,duration,gpus,cpus,memory_gb,tenant,priority",
        "0,60,4,16,64,vision,high",
    ])  # fmt: skip
    [job] = trace.jobs
    assert (job.cpus, job.memory_gb, job.tenant, job.priority) == (16, 64, "vision", "high")


def test_bad_rows_are_reported_by_line_number() -> None:
    trace = parse_trace([
        "submit_time,duration,gpus,tenant,priority",
        "0,10,1,a,normal",
        "5,-3,1,a,normal",
        "6,10,,a,normal",
        "7,10,1.5,a,normal",
        "8,ten,1,a,normal",
        "9,10,1,a,urgent",
    ])  # fmt: skip
    assert len(trace.jobs) == 1
    assert trace.errors == [
        "line 3: 'duration' is negative: -3",
        "line 4: 'gpus' is missing",
        "line 5: 'gpus' is not a whole number: 1.5",
        "line 6: 'duration' is not a number: 'ten'",
        "line 7: 'priority' must be one of low, normal, high, critical",
    ]


def test_philly_rows() -> None:
    trace = parse_trace([
        "timestamp,duration,num_gpus,gpu_time,cluster",
        "2017-10-09 07:01:55,66.0,1,66.0,11cb48",
        "2017-10-09 06:13:03,2951.0,8,23608.0,6214e9",
        "2017-10-09 06:13:04,,8,1.0,6214e9",
        "not a time,1,1,1,x",
    ])  # fmt: skip
    assert [(j.submit_s, j.gpus, j.tenant) for j in trace.jobs] == [
        (0.0, 8, "6214e9"),
        (2932.0, 1, "11cb48"),
    ]
    assert trace.errors == [
        "line 4: 'duration' is missing",
        "line 5: 'timestamp' is not 'YYYY-MM-DD HH:MM:SS': 'not a time'",
    ]


def test_an_unknown_header_is_refused() -> None:
    with pytest.raises(TraceFormatError, match="unknown trace header"):
        parse_trace(["a,b,c", "1,2,3"])


@pytest.mark.skipif(not PHILLY.exists(), reason="needs ../shared/traces/philly.csv")
def test_the_full_philly_trace_loads() -> None:
    trace = load_trace(PHILLY)
    assert trace.errors == []
    assert len(trace.jobs) == 82_247
    assert len({job.tenant for job in trace.jobs}) == 15
    assert max(job.gpus for job in trace.jobs) == 128
