"""perf's `redis_threads` scenario without a Redis: the options each Redis gets, the CPU limits each
io-threads count runs under, and the table its JSON becomes."""
from __future__ import annotations

import re

from perf.core.box import SliceSpec
from perf.core.results import Document
from perf.report.tables import render
from perf.scenarios.redis_threads import Limit, limits, reads_option, redis_args


def test_io_threads_do_reads_is_passed_only_to_the_redis_versions_that_have_it():
    assert reads_option("7.4.1") and reads_option("6.2.14")
    assert not reads_option("8.0.2") and not reads_option("5.0.7") and not reads_option("unknown")
    assert redis_args(4, "7.4.1") == ["--io-threads", "4", "--io-threads-do-reads", "yes"]
    assert redis_args(2, "8.0.0") == ["--io-threads", "2"]


def test_redis_gets_one_slice_per_thread_and_one_thread_runs_at_every_quota():
    spec = SliceSpec(redis=0.25, baseline=0.5)
    unlimited = Limit("unlimited", None, None)
    assert limits(None, 4, [1, 2, 4]) == [unlimited]
    assert limits(SliceSpec(writer=0.2), 4, [1, 4]) == [unlimited]  # no Redis quota: nothing to slice
    assert limits(spec, 4, [1, 2, 4]) == [unlimited, Limit("slices", 1.0, 0.5)]
    assert limits(spec, 1, [4, 1, 2]) == [unlimited] + [Limit("slices", k * 0.25, 0.5) for k in (1, 2, 4)]
    assert limits(SliceSpec(redis=0.25), 2, [2])[1].reader_cores == 0.25  # readers: the redis quota by default


def _ceiling(doc: Document, limit: Limit, threads: int, mb_per_s: float, threaded_writes: int) -> None:
    throttling = {"periods": 100, "throttled": 40, "throttled_s": 0.5} if limit.redis_cores else None
    doc.add("ceiling", io_threads=threads, readers=4, nbytes=2**30, mb_per_s=mb_per_s, seconds=1.0, cpu_wall_s=1.0,
            redis_cpu_s=0.5, redis_throttling=throttling, readers_throttling=[throttling] * 4 if throttling else [],
            io_threaded_writes_processed=threaded_writes, total_writes_processed=100, io_threaded_reads_processed=0,
            total_reads_processed=10, **vars(limit))


def test_the_table_sets_each_count_against_one_thread_in_one_slice_and_at_the_same_quota():
    doc = Document("redis_threads", "python -m perf redis_threads", {"frames": 8, "shape": [1024, 1024],
                                                                      "dtype": "uint16", "rows": 8, "repeat": 1,
                                                                      "redis_version": "7.4.1"},
                   slices={"redis": 0.2, "baseline": 0.2, "period_us": 20000, "label": ""},
                   machine={"cores": 2, "cpu": "test"}, commit="abc")
    doc.add("redis", io_threads=2, args=["--io-threads", "2"], config={"io-threads": "2"}, threads_started=7)
    _ceiling(doc, Limit("unlimited", None, None), 1, 1000.0, 0)
    _ceiling(doc, Limit("unlimited", None, None), 2, 1500.0, 50)
    _ceiling(doc, Limit("slices", 0.2, 0.2), 1, 200.0, 0)
    _ceiling(doc, Limit("slices", 0.4, 0.2), 2, 500.0, 25)
    _ceiling(doc, Limit("slices", 0.4, 0.2), 1, 400.0, 0)
    text = "\n".join(render(doc))
    assert re.search(r"^\| none \| 2 \| 1500 \| 1\.50 \| 1\.50 \| 0\.50 \| 0\.50 \| 50% \| 0% \| - \| - \|$", text, re.M)
    rows = [line for line in text.splitlines() if line.startswith("| Redis")]
    assert [r.split(" | ")[1:3] for r in rows] == [["1", "200"], ["1", "400"], ["2", "500"]]  # by quota, then threads
    assert rows[2].split(" | ")[3:5] == ["2.50", "1.25"] and "40% (0.50 s)" in rows[2]
    assert "* `--io-threads 2`: io-threads 2; 7 threads in the process" in text
