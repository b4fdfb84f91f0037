"""The worker of :class:`gis.background.BackgroundStep`: ``python -m gis.step_worker TASK``.

Loads the task pickle (step name, district, output folder, answer path) written by
:class:`gis.background.BackgroundStep` into its private scratch folder, runs the step
(:data:`gis.steps.STEPS`) on a fresh :class:`gis.steps.RunContext`, and writes its
summary keys, its results and its wall time as the answer pickle.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Worker entry (``python -m gis.step_worker TASK``): run the step of the task pickle, write the answer pickle."""
    from gis import steps
    from gis.background import write_answer

    args = sys.argv[1:] if argv is None else argv
    with open(args[0], "rb") as fh:
        name, district, out, answer = pickle.load(fh)  # written by BackgroundStep into its private scratch folder
    write_answer(steps.run_alone(name, district, Path(out)), Path(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
