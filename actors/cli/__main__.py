"""`python -m actors.cli`: the operator tool's entry point (see actors.cli.main)."""

from actors.cli.main import main

raise SystemExit(main())
