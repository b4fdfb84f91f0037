"""The worker of :class:`gis.background.BackgroundStep`: ``python -m gis.step_worker TASK``.

Loads the task pickle (step name, district, output folder, answer path) written by
:class:`gis.background.BackgroundStep` into its private scratch folder, runs the step
(:data:`gis.steps.STEPS`) on a fresh :class:`gis.steps.RunContext`, and writes its
summary keys, its results and its wall time as the answer pickle.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Worker entry (``python -m gis.step_worker TASK``): run the step of the task pickle, write the answer pickle."""
    from gis import steps

    args = sys.argv[1:] if argv is None else argv
    with open(args[0], "rb") as fh:
        name, district, out, answer = pickle.load(fh)  # written by BackgroundStep into its private scratch folder
    ctx = steps.RunContext(district)
    t0 = time.perf_counter()
    summary = steps.get(name).run(ctx, Path(out))
    ctx.flush()
    seconds = round(time.perf_counter() - t0, 3)
    tmp = Path(answer).with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps((summary, ctx.results(), seconds), protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
