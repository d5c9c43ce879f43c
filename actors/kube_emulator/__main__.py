"""`python -m actors.kube_emulator`: what bin/kube-emulator runs."""

from actors.kube_emulator.main import main

raise SystemExit(main())
