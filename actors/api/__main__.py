"""`python -m actors.api` is `bin/api`."""

from actors.api.main import main

main()
