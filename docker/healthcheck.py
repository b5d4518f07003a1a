"""HEALTHCHECK probe: exit 0 when GET /readyz answers 200 (model and index loaded).

Python's urllib rather than curl, so the image carries no extra HTTP client."""

import os
import sys
import urllib.request

port = os.environ.get("XMR_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as err:  # any failure means "not ready"
    print(f"not ready: {err}", file=sys.stderr)
    sys.exit(1)
