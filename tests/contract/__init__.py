"""Outside-contract tests: what CONTRACT.md promises about every process, checked through bin/."""
