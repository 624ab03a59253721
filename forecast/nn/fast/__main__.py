"""python -m forecast.nn.fast: build the C++ kernels ahead of use (impl=custom), saying so."""

import logging
import sys

from forecast.nn.fast import build

logging.basicConfig(level=logging.INFO, format="%(message)s")
try:
    build.load()
except build.BuildError as error:
    print(f"forecast.nn.fast: {error}", file=sys.stderr)
    sys.exit(1)
print(f"ready: {build.root() / build.extension_name()}")
