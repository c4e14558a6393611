"""``python -m workbench``: the same command line as ``workbench``."""

from workbench.cli import main

raise SystemExit(main())
