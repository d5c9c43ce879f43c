"""`fabric up`: the local supervisor of every Fabric process (one actor per child)."""
