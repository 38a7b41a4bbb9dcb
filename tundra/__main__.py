"""`python -m tundra` runs the CLI."""

from tundra.cli.main import main

raise SystemExit(main())
