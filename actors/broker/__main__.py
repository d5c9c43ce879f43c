"""`python -m actors.broker` = bin/broker."""

import sys

from actors.broker.main import main

sys.exit(main())
