"""``rally-gh demo``: a sample repository, five scripted teammates, a full local run.

The teammates are small Python scripts (agent ``preset: command``) so the demo
needs no model, no network and no token, and shows in about ten seconds what a
run does with each kind of teammate: one that works, one that waits for
another's work, one that writes outside what it owns, one that hangs past its
timeout, and one more that works alongside them.
"""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from rally_gh.testing import commit, init_repo

DEMO_RUN_ID = "demo"
SCRIPTS_DIR = ".rally-demo"  # ignored by git: the scripts are the "agents", not the project

APP_FILES: dict[str, str] = {
    "README.md": "# Tiny shop\n\nA sample project for `rally-gh demo`.\n",
    "src/shop/__init__.py": "",
    "src/shop/catalog.py": 'PRODUCTS = {"tea": 4.5, "cake": 3.0}\n',
    "src/models/__init__.py": "",
    "src/api/__init__.py": "",
    "tests/__init__.py": "",
    ".gitignore": f"{SCRIPTS_DIR}/\n__pycache__/\n",
}

# Each script runs in its teammate's worktree with the RALLY_* variables of SPEC section 3.
SCRIPTS: dict[str, str] = {
    "models": '''
        import json, os, pathlib, time
        time.sleep(0.5)  # "thinking"
        pathlib.Path("src/models/order.py").write_text(
            "from dataclasses import dataclass\\n\\n\\n"
            "@dataclass(frozen=True)\\nclass Order:\\n    product: str\\n    quantity: int\\n"
        )
        pathlib.Path(os.environ["RALLY_REPORT_FILE"]).write_text(json.dumps(
            {"status": "done", "summary": "Order model added", "cost_usd": 0.04, "tokens": 1800}))
    ''',
    "api": '''
        import json, os, pathlib, sys
        # Blocked by models: this worktree starts from an integration tip holding its work.
        if not pathlib.Path("src/models/order.py").exists():
            sys.exit("error: the Order model is missing")
        pathlib.Path("src/api/orders.py").write_text(
            "from src.models.order import Order\\nfrom src.shop.catalog import PRODUCTS\\n\\n\\n"
            "def total(order: Order) -> float:\\n    return PRODUCTS[order.product] * order.quantity\\n"
        )
        pathlib.Path("tests/api").mkdir(parents=True, exist_ok=True)
        pathlib.Path("tests/api/__init__.py").write_text("")
        pathlib.Path("tests/api/test_orders.py").write_text(
            "from src.api.orders import total\\nfrom src.models.order import Order\\n\\n\\n"
            "def test_total():\\n    assert total(Order('tea', 2)) == 9.0\\n\\n\\n"
            "test_total()\\n"
        )
        pathlib.Path(os.environ["RALLY_REPORT_FILE"]).write_text(json.dumps(
            {"status": "done", "summary": "order totals with a test", "cost_usd": 0.07, "tokens": 3100}))
    ''',
    "web": '''
        import json, os, pathlib, time
        time.sleep(1)
        pathlib.Path("src/web").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/web/index.html").write_text("<h1>Tiny shop</h1>\\n<p>Tea and cake.</p>\\n")
        pathlib.Path(os.environ["RALLY_REPORT_FILE"]).write_text(json.dumps(
            {"status": "done", "summary": "landing page", "cost_usd": 0.03, "tokens": 1200}))
    ''',
    "docs": '''
        import pathlib
        pathlib.Path("docs").mkdir(exist_ok=True)
        pathlib.Path("docs/orders.md").write_text("# Orders\\n\\nTotals are price times quantity.\\n")
        # Strays outside its ownership: README.md belongs to nobody.
        pathlib.Path("README.md").write_text("# Tiny shop\\n\\nNow with orders!\\n")
    ''',
    "perf": '''
        import time
        print("profiling...", flush=True)
        time.sleep(600)  # hangs: expected 2s, stopped at 4s
    ''',
}

EXPECTED: dict[str, str] = {"models": "done", "api": "done", "web": "done", "docs": "violated", "perf": "timed_out"}


@dataclass(frozen=True)
class Demo:
    repo: Path
    rally_yml: str


def demo_map(scripts: Path) -> str:
    python = json.dumps(sys.executable)

    def agent(name: str) -> str:
        return f"{{preset: command, command: [{python}, {json.dumps(str(scripts / f'{name}.py'))}]}}"

    python_sh = shlex.quote(sys.executable)
    test = json.dumps(f"{python_sh} -m tests.api.test_orders")
    compiles = json.dumps(f"{python_sh} -m compileall -q src")
    return textwrap.dedent(f"""\
        version: 1
        team: tiny-shop
        max_parallel: 4
        defaults:
          timeout: 2s        # the expected duration: a teammate is stopped at twice it (4s)
          retries: 0
        merge:
          order: dependency
          verify: [{compiles}]
        teammates:
          - name: models
            role: Data model
            task: Add an Order model (product, quantity).
            exclusive_write: [src/models/**]
            agent: {agent('models')}
          - name: api
            role: Backend
            task: Compute order totals from the catalog, with a test.
            exclusive_write: [src/api/**, tests/api/]
            read: [src/models/**, src/shop/**]
            blocked_by: [models]
            done_when: [tests/api/test_orders.py]
            verify: [{test}]
            agent: {agent('api')}
          - name: web
            role: Frontend
            task: A landing page for the shop.
            exclusive_write: [src/web/**]
            agent: {agent('web')}
          - name: docs
            role: Technical writer
            task: Document how orders are totalled.
            exclusive_write: [docs/**]
            agent: {agent('docs')}
          - name: perf
            role: Performance
            task: Profile the catalog lookups.
            exclusive_write: [bench/**]
            agent: {agent('perf')}
        """)


def build_demo(root: Path) -> Demo:
    """The sample repository at ``root`` (created; must be empty or absent)."""
    scripts = root / SCRIPTS_DIR
    rally_yml = demo_map(scripts)
    init_repo(root)
    commit(root, {**APP_FILES, "rally.yml": rally_yml}, "Tiny shop: catalog and an ownership map")
    scripts.mkdir()
    for name, body in SCRIPTS.items():
        (scripts / f"{name}.py").write_text(textwrap.dedent(body))
    return Demo(root, rally_yml)


INTRO = """\
rally-gh demo: a tiny shop and five scripted teammates, each in its own worktree and branch.
  models  writes the Order model
  api     waits for models, then builds on its work (blocked_by)
  web     works alongside them
  docs    also rewrites README.md, which it does not own      -> violated
  perf    hangs (expected 2s, stopped at 4s)                   -> timed_out
No model, network or token needed: the "agents" are small Python scripts.
"""
