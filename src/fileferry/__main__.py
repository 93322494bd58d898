"""``python -m fileferry``."""

from fileferry.cli import main

raise SystemExit(main())
