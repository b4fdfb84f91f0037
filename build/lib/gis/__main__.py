"""``python -m gis`` — see :mod:`gis.cli`."""

from gis.cli import main

raise SystemExit(main())
