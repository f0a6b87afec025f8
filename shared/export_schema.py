"""`python -m shared.export_schema`: write the job envelope's JSON Schema to docs/schemas/.

Run after changing `shared/jobs.py`; a test fails while the committed schema is stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.jobs import job_schema

TARGET = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "job.schema.json"


def render() -> str:
    return json.dumps(job_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
