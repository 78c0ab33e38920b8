#!/usr/bin/env python3
"""Stand-in for a reference test whose Python stack is not configured: says so and skips (77)."""
import sys

name, var = sys.argv[1], sys.argv[2]
print(f"SKIPPED {name}: {var} is not set (the reference venv could not be built here: no PyPI?).",
      file=sys.stderr)
print("  scripts/test.sh builds it from scripts/requirements/; run it with network once.",
      file=sys.stderr)
sys.exit(77)
