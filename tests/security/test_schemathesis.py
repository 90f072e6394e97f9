"""Property-based fuzzing of both services' OpenAPI documents against the running stack (Schemathesis CLI).

Every check is on (no 5xx, status codes, content types, headers and bodies as documented, negative data
rejected, auth honoured, ...). Two operations take cross-field constraints JSON Schema cannot state
(``actions``/``genres``/``titles`` as long as ``item_ids``): a schema-valid body there may get a 422.
/cleanup is not fuzzed (it empties the run). The run is bounded by examples per operation and a fixed seed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import add_items, catalog
from tests.security.conftest import ADMIN_TOKEN
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 40
SEED = 20240601
RUN_TIMEOUT_S = 120
ALIGNED_LISTS = """
[[operations]]
include-path = "{path}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "422"]
"""


def run_schemathesis(spec_url: str, folder: Path, aligned_path: str, *extra: str) -> tuple[int, str]:
    config = folder / "schemathesis.toml"
    config.write_text(ALIGNED_LISTS.format(path=aligned_path))
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        spec_url,
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--request-timeout",
        "10",
        "--exclude-path",
        "/cleanup",
        *extra,
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    return done.returncode, done.stdout + done.stderr


def _summary(output: str) -> str:
    generated = re.search(r"(\d+) generated", output)
    tested = re.search(r"Tested: (\d+)", output)
    return f"{tested.group(1) if tested else '?'} operations, {generated.group(1) if generated else '?'} cases"


@pytest.fixture(scope="module")
def seeded(open_stack: ServiceStack) -> ServiceStack:
    """A catalog and a shown list, so fuzzed reads also meet existing items and users."""
    with httpx.Client(timeout=30) as client:
        ids, genres = catalog(30)
        add_items(client, open_stack.recs_url, ["0", "item-1", *ids], [["Drama"], ["Comedy"], *genres])
        assert client.get(f"{open_stack.recs_url}/recs/0").status_code == 200
    return open_stack


@pytest.mark.parametrize(
    ("service", "aligned_path"), [("recommendations", "/add_items"), ("event_collector", "/interact")]
)
def test_openapi_fuzzing_finds_no_violation(
    seeded: ServiceStack, tmp_path: Path, service: str, aligned_path: str
) -> None:
    code, output = run_schemathesis(f"{seeded.url(service)}/openapi.json", tmp_path, aligned_path)
    print(f"schemathesis on {service}: {_summary(output)}, exit {code}")
    assert code == 0, output[-6000:]
    assert re.search(r"\d+ generated", output)


def test_openapi_fuzzing_with_the_admin_token(locked_stack: ServiceStack, tmp_path: Path) -> None:
    """With ADMIN_TOKEN the spec declares the bearer scheme; the ignored_auth check sends no/wrong tokens."""
    code, output = run_schemathesis(
        f"{locked_stack.recs_url}/openapi.json",
        tmp_path,
        "/add_items",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
    )
    print(f"schemathesis on recommendations with ADMIN_TOKEN: {_summary(output)}, exit {code}")
    assert code == 0, output[-6000:]
