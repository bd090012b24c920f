"""Helpers of ``benchmarks/e2e_bench.py`` (the end-to-end benchmark); nothing else imports them.

* :mod:`.models` -- model/preset name resolution, one-shot pruning, MAC counts.
* :mod:`.rt3d` -- compiling RT3D sparse/dense, the VM as a timed callable, per-op profile.
* :mod:`.report` -- the Table 2 layout, the bars (acceptance ratios), the bar chart PNG.
* :mod:`.memory` -- exported library sizes and peak RSS of runtime-only child processes.
"""
