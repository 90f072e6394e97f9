"""``python -m grader run --recs URL --events URL``."""

from grader.cli import main

raise SystemExit(main())
