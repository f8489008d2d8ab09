"""wrk's report is read for its throughput, request count and every kind of error."""

from __future__ import annotations

import pytest

from bench.wrk import parse

REPORT = """Running 4s test @ http://127.0.0.1:40123/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   152.34ms   26.72ms 318.59ms   69.07%
    Req/Sec   163.41     40.22   250.00     71.00%
  1297 requests in 4.00s, 9.61MB read
{errors}Requests/sec:    324.33
Transfer/sec:      2.40MB
Not 200: {not_200}
"""


def test_a_clean_run() -> None:
    assert parse(REPORT.format(errors="", not_200=0)) == {
        "per_second": 324.33,
        "requests": 1297,
        "errors": 0,
    }


def test_answers_but_200_and_socket_errors_all_count() -> None:
    # wrk's own non-2xx count leaves out a redirect to the login page (a lost cookie); the
    # script's count of answers but 200 does not, and it is the one read.
    errors = (
        "  Socket errors: connect 1, read 2, write 0, timeout 4\n  Non-2xx or 3xx responses: 5\n"
    )
    assert parse(REPORT.format(errors=errors, not_200=9))["errors"] == 16


def test_a_report_without_a_throughput_or_the_scripts_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="no throughput"):
        parse("unable to connect to 127.0.0.1:1 Connection refused\n")
    with pytest.raises(ValueError, match="without the cookie script"):
        parse(REPORT.format(errors="", not_200=0).replace("Not 200: 0\n", ""))


def test_a_run_lasts_for_about_300_requests_within_its_bounds() -> None:
    from bench.wrk import seconds_for

    assert [seconds_for(r) for r in (300, 100, 20, 13, 10, 0)] == [4, 4, 15, 24, 25, 25]
