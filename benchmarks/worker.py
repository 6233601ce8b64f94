"""One measurement in a fresh process: ``python -m benchmarks.worker SPEC.json OUT.json``.

Each arm runs in its own process so that its peak RSS is its own, and so that one arm's
compiled graphs and memory pools cannot slow the next one down.
"""

from __future__ import annotations

import json
import sys
import traceback

import numpy as np


def load_data(path):
    """The sentences the parent prepared once (tokens + offsets), as ``FlatSequences``."""
    from bucketrnn.data.datasets import FlatSequences

    with np.load(path) as f:
        return FlatSequences(f["tokens"], f["offsets"])


def source_digest() -> str:
    """Short digest of the bucketrnn sources this process imports: the tree is shared with other
    engineers, so a run can span edits; the report flags runs whose workers saw different code."""
    import hashlib
    import os

    import bucketrnn

    root = os.path.dirname(bucketrnn.__file__)
    digest = hashlib.sha1()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()[:10]


def main(argv=None):
    spec_path, out_path = (argv or sys.argv[1:])[:2]
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        from benchmarks import arms, extras

        cfg = arms.Config(**spec["config"])
        data = load_data(spec["data"])
        task = spec["task"]
        if task == "arm":
            result = arms.run_arm(spec["arm"], cfg, data, **spec["args"])
        else:
            result = getattr(extras, task)(cfg, data, **spec.get("args", {}))
            result.update(arms.rss_mb())
    except Exception as e:  # reported by the parent, with the traceback, as a failed arm
        result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    result["bucketrnn_digest"] = source_digest()
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
