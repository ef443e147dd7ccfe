"""nxpar's benchmarks: one harness, `python -m perf <scenario> [options]` (perf/__main__.py).

    core/       what every benchmark shares: the stack and its services (stack.py), BLISS's publisher in
                a process of its own and one scan measured (publisher.py, scan.py), the single-process
                baselines (baselines.py), what is measured on each process (meter.py: CPU from the kernel's
                accounting, peak RSS, throttling), CPU slices and the emulated many-core box (slices.py,
                box.py), the JSON document every command writes (results.py)
    scenarios/  one small module per benchmark (frames, ab, points, mosca, timeline, profile, stages,
                scaling, emulation, replay, write_paths, file_copy, redis_threads)
    report/     tables, the documents' generated blocks and plots, all drawn from the JSON
    suites.py   the commands behind perf/RESULTS.md and perf/SCALING.md, as data (`make bench`,
                `make bench-scaling`, the device script perf/device.sh)
    model.py    the per-stage CPU model and its projection; probes.py, write_probe.py: parts run under mpirun
    demo.py     `make demo`; single_process_writer.py: blisswriter's design, the single-process baseline

perf/ imports nxpar, launch/ and tests' publishers; nothing imports perf/ but its own tests.
"""
