"""Set-up check: redis-stack-server starts with libssl1.1 and loads ReJSON + RediSearch."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from launch.stack import Stack


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="nxpar-redis-check-") as tmp:
        stack = Stack(Path(tmp))
        try:
            url = stack.start_redis()  # raises unless both modules are loaded and blissdata init works
            print(f"[setup] redis-stack-server OK at {url} (ReJSON + search, blissdata initialised)")
        finally:
            stack.down()


if __name__ == "__main__":
    sys.exit(main())
