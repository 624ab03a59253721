"""python -m forecast.nn.fast: build the C++ kernels ahead of use (impl=custom), saying so."""

import logging
import sys

from forecast.nn.fast import build


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        build.load()
    except build.BuildError as error:
        print(f"forecast.nn.fast: {error}", file=sys.stderr)
        return 1
    print(f"ready: {build.root() / build.extension_name()}")
    return 0


if __name__ == "__main__":  # importing this module (tests walk every module) builds nothing
    sys.exit(main())
