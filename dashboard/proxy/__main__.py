"""``python -m dashboard.proxy``: prints the nginx site configuration for this dashboard."""

from dashboard.proxy import main

raise SystemExit(main())
