"""`python -m actors.daemon` (what bin/daemon runs)."""

import sys

from actors.daemon.main import main

sys.exit(main())
