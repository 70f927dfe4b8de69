"""One node's first kagglehub call, timed from a fresh process: prints `RESULT {json}`
(seconds for the import and for model_download, where it landed, bytes under it).

    python -m bench.kagglehub_client HANDLE
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(handle: str) -> None:
    began = time.perf_counter()
    import kagglehub

    imported = time.perf_counter()
    path = kagglehub.model_download(handle)
    done = time.perf_counter()
    size = sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )
    result = {"import": imported - began, "download": done - imported, "path": path, "bytes": size}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
