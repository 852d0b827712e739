"""The presets against the real reviewer CLIs: installed at the versions in real_clis.toml and run offline.

Each preset's argv goes through the real CLI's own argument parser, and every offline failure, with and
without a key, must fail closed within 60 s naming the CLI's real cause. Where npm is missing (or the
registry cannot be reached) the tests say so and skip, except where PHASEGATE_REQUIRE_REAL_CLIS=1 (CI):
there they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tenacity import wait_none

from phasegate.reviews import Decision, ReviewerSpec, RunOptions
from phasegate.reviews.outcome import ReviewOutcome
from phasegate.reviews.prompt import ReviewRequest
from phasegate.reviews.runner import run_review

REPO = Path(__file__).resolve().parents[2]
VERSIONS_FILE = Path(__file__).with_name("real_clis.toml")
VERSIONS = tomllib.loads(VERSIONS_FILE.read_text())
REQUIRE_ENV = "PHASEGATE_REQUIRE_REAL_CLIS"
INSTALL_TIMEOUT_S = 900
OFFLINE_LIMIT_S = 60
KEY_HINT = "is the only key variable passed to the reviewer"
NETWORK_HINT = "could not reach its provider's API"
FLAG_HINT = "rejected a flag or value phasegate passes"
# What each CLI prints for `--version`, from the pinned versions.
VERSION_OUTPUT = {
    "codex": f"codex-cli {VERSIONS['npm']['@openai/codex']}",
    "claude": f"{VERSIONS['npm']['@anthropic-ai/claude-code']} (Claude Code)",
    "gemini": VERSIONS["npm"]["@google/gemini-cli"],
    "llm": f"llm, version {VERSIONS['pypi']['llm']}",
}


def _unavailable(reason: str) -> None:
    """Skip, or fail where the real CLIs are required."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: the real reviewer CLIs must be checked here)")
    pytest.skip(reason)


def _install_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the CLIs live: kept in the checkout's .venv (one install per pinned set), else a temp folder."""
    digest = hashlib.sha256(VERSIONS_FILE.read_bytes()).hexdigest()[:12]
    venv = REPO / ".venv"
    return venv / f"real-reviewer-clis-{digest}" if venv.is_dir() else tmp_path_factory.mktemp("real-clis")


def _run_install(argv: list[str]) -> None:
    """One install step; its stderr tail is the reason when it fails."""
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        _unavailable(f"`{' '.join(argv[:3])} ...` failed: {exc.stderr.strip()[-500:]}")
    except subprocess.TimeoutExpired:
        _unavailable(f"`{' '.join(argv[:3])} ...` took over {INSTALL_TIMEOUT_S} s")


def _install(root: Path) -> None:
    """npm and pip installs of the pinned versions, once per root."""
    stamp = root / "installed.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == VERSIONS:
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _unavailable("npm is not on this machine: the real codex, claude and gemini CLIs cannot be installed")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    packages = [f"{name}@{version}" for name, version in VERSIONS["npm"].items()]
    _run_install([npm, "install", "--prefix", str(root / "npm"), "--no-audit", "--no-fund", *packages])
    _run_install([sys.executable, "-m", "venv", str(root / "llm")])
    requirements = [f"{name}=={version}" for name, version in VERSIONS["pypi"].items()]
    _run_install([str(root / "llm" / "bin" / "pip"), "install", "--quiet", *requirements])
    stamp.write_text(json.dumps(VERSIONS))


@pytest.fixture(scope="session")
def real_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH holding the real codex, claude, gemini and llm (and node)."""
    root = _install_root(tmp_path_factory)
    _install(root)
    node = shutil.which("node")
    dirs = [root / "npm" / "node_modules" / ".bin", root / "llm" / "bin"]
    return os.pathsep.join([*map(str, dirs), *([os.path.dirname(node)] if node else []), "/usr/bin", "/bin"])


@pytest.fixture
def real_review(real_path: str, tmp_path: Path) -> Callable[..., ReviewOutcome]:
    """Run one review through a real CLI: HOME in a temp folder, no network, a fake key when asked."""
    return _reviewer(real_path, tmp_path)


def _reviewer(real_path: str, tmp_path: Path) -> Callable[..., ReviewOutcome]:
    """`real_review` for the reviews made in `tmp_path`."""
    counter = iter(range(1, 1000))
    home = tmp_path / "home"
    home.mkdir()

    def run(spec: ReviewerSpec, *, key: bool = False, options: RunOptions | None = None) -> ReviewOutcome:
        env = {"PATH": real_path, "HOME": str(home), "LANG": "C.UTF-8"}
        if key:
            env[spec.resolved_key_env() or "NO_KEY_ENV"] = "sk-phasegate-conformance-0000000000000000"
        request = ReviewRequest(
            gate_id="pilot-review", nonce="5e1d0c2b9a8f47e6b3c2d1e0f9a8b7c6", question="Scale the pilot?",
            phase_id="pilot", attempt=1, metrics={"distinct_2": 0.61}, qc_summary={"rows": 200},
            sample_rows=[{"prompt": "Write a haiku", "completion": "Autumn wind"}], previous_attempts=[],
            checkpoint_text="# Checkpoint", allowed_changes=("temperature",))
        out_dir = tmp_path / "reviews" / f"review-{next(counter)}"
        return run_review(request, spec, out_dir, env=env, options=options)

    return run


def test_the_readme_names_the_pinned_versions() -> None:
    readme = (REPO / "README.md").read_text()
    for package, version in [*VERSIONS["npm"].items(), ("llm", VERSIONS["pypi"]["llm"])]:
        assert version in readme, f"README's reviewer section does not name {package} {version}"


@pytest.mark.parametrize("program", sorted(VERSION_OUTPUT))
def test_the_installed_clis_are_the_pinned_versions(program: str, real_path: str, tmp_path: Path) -> None:
    found = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=60,
                           env={"PATH": real_path, "HOME": str(tmp_path)})
    assert VERSION_OUTPUT[program] in found.stdout, found.stdout + found.stderr


# Every option the presets turn into flags, set, so that the real parser sees each of them.
ARGV_CASES = {
    "claude": {"preset": "claude", "model": "claude-sonnet-4-5", "effort": "high"},
    "codex": {"preset": "codex", "model": "gpt-5-codex", "effort": "high"},
    "gemini": {"preset": "gemini", "model": "gemini-2.5-pro"},
    "llm": {"preset": "llm", "model": "gpt-4o-mini"},
    "llm-no-schema": {"preset": "llm", "model": "gpt-4o-mini", "schema": False},
}
ONCE = RunOptions(wait=wait_none())


def _hint(outcome: ReviewOutcome) -> str:
    return (outcome.error or "").partition(" — hint: ")[2]


@pytest.mark.parametrize("case", sorted(ARGV_CASES))
def test_each_preset_argv_is_accepted_by_the_real_parser(case: str, real_review) -> None:
    outcome = real_review(ReviewerSpec(**ARGV_CASES[case], retries=0), options=ONCE)
    # Past its parser the CLI fails on what an offline machine lacks: a key or the network.
    assert outcome.decision is Decision.INVESTIGATE and outcome.error, outcome
    assert FLAG_HINT not in outcome.error and (KEY_HINT in outcome.error or NETWORK_HINT in outcome.error), \
        outcome.error


@pytest.mark.parametrize("preset", ["claude", "codex", "gemini", "llm"])
def test_a_flag_the_real_parser_rejects_is_named(preset: str, real_review) -> None:
    # The control for the test above: a flag no CLI has is caught, and said to be one.
    outcome = real_review(ReviewerSpec(preset=preset, retries=0, extra_args=["--no-such-flag"]), options=ONCE)
    error = outcome.error or ""
    assert outcome.decision is Decision.INVESTIGATE and "such-flag" in error and FLAG_HINT in _hint(outcome), error


# The real cause each offline failure must name (key: a fake key in the preset's key variable).
OFFLINE_CAUSES = {
    ("claude", False): "Not logged in · Please run /login",
    ("claude", True): "claude could not reach its API",
    ("codex", False): "codex could not reach its API (Reconnecting... 4/5",
    ("codex", True): "codex could not reach its API (Reconnecting... 4/5",
    ("gemini", False): "code 41 (gemini: authentication failed or is not set up): gemini reported: Please set an "
                       "Auth method",
    ("gemini", True): "gemini could not reach its API",
    ("llm", False): "Error: No key found",
    ("llm", True): "network unreachable: Error: Connection error.",
}


@pytest.fixture(scope="module")
def offline_outcomes(real_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every offline case on the preset's defaults (timeout_s 600, retries 2, the real backoff), all at once:
    each spends most of its time waiting on the network and the backoff, so running them side by side
    keeps the file's minutes down without changing any one case's timing much."""
    def one(case: tuple[str, bool]) -> tuple[ReviewOutcome, float]:
        preset, key = case
        review = _reviewer(real_path, tmp_path_factory.mktemp(f"{preset}-{'key' if key else 'no-key'}"))
        started = time.monotonic()
        outcome = review(ReviewerSpec(preset=preset), key=key)
        return outcome, time.monotonic() - started

    cases = sorted(OFFLINE_CAUSES)
    with ThreadPoolExecutor(len(cases)) as pool:
        return dict(zip(cases, pool.map(one, cases), strict=True))


@pytest.mark.parametrize(("preset", "key"), sorted(OFFLINE_CAUSES),
                         ids=[f"{p}-{'key' if k else 'no-key'}" for p, k in sorted(OFFLINE_CAUSES)])
def test_offline_each_preset_fails_closed_with_its_real_cause(preset: str, key: bool, offline_outcomes) -> None:
    outcome, elapsed = offline_outcomes[preset, key]
    error = outcome.error or ""
    assert outcome.decision is Decision.INVESTIGATE and outcome.is_reviewer_error, error
    assert elapsed < OFFLINE_LIMIT_S, f"{preset} took {elapsed:.0f} s to fail: {error}"
    assert OFFLINE_CAUSES[preset, key] in error, error
    assert "no JSON" not in error and "timed out" not in error
    assert (NETWORK_HINT if key or preset == "codex" else KEY_HINT) in _hint(outcome), error


def test_llm_on_a_model_without_schema_support_names_the_way_out(real_review) -> None:
    outcome = real_review(ReviewerSpec(preset="llm", model="echo", retries=0), options=ONCE)
    assert "does not support schemas" in (outcome.error or "") and "`schema = false`" in _hint(outcome)
    # With the schema dropped the real CLI answers; echo's answer is no decision, which fails closed as one.
    answered = real_review(ReviewerSpec(preset="llm", model="echo", schema=False, retries=0), options=ONCE)
    assert answered.decision is Decision.INVESTIGATE and answered.attempts == 1
    assert "does not support schemas" not in (answered.error or "") and "exited with code" not in (answered.error or "")
