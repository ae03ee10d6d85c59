"""`python -m tinylm.apps NAME [options]`, the same as `tinylm-run NAME [options]`."""

from tinylm.apps.cli import main

raise SystemExit(main())
