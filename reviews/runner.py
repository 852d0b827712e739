"""Run one review: isolated scratch bundle, allow-listed env, retries, audit files, fail closed."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from tenacity.wait import wait_base

from phasegate.floor.processes import StopSignal, stop_signal
from phasegate.floor.redact import Redactor, write_private
from phasegate.reviews.audit import AuditContext, audit_digests, audit_texts, write_audit
from phasegate.reviews.config import ReviewerSpec
from phasegate.reviews.decision import (
    Verdict,
    drop_null_changes,
    parse_decision,
    reviewer_error,
)
from phasegate.reviews.outcome import AttemptRecord, ReviewOutcome, build_outcome
from phasegate.reviews.parse import (
    ReviewerOutput,
    bounded_error,
    exit_meaning,
    failure_message,
    parse_output,
    resolve_cost,
    stderr_tail,
)
from phasegate.reviews.presets import PROMPT_FILE, build_invocation
from phasegate.reviews.process import (
    DEFAULT_GRACE_S,
    DEFAULT_MAX_OUTPUT_BYTES,
    Clock,
    ProcessResult,
    run_bounded,
)
from phasegate.reviews.prompt import ReviewRequest, redacted_evidence, render_prompt
from phasegate.reviews.repo_digest import tree_digest
from phasegate.reviews.watch import NETWORK_FAILURE, network_watch

ALLOWED_ENV = frozenset({"PATH", "HOME", "LANG", "TERM", "TMPDIR"})
# A failed run whose output says this was throttled is worth another try; anything else is not.
RATE_LIMITED = re.compile(
    r"\b429\b|rate[ _-]?limit|too many requests|overloaded|resource[ _]exhausted", re.IGNORECASE
)
DEFAULT_WAIT: wait_base = wait_random_exponential(multiplier=2, max=60)
STOP_CHECK_S = 0.1  # how often a backoff wait looks for a stop signal
BUNDLE_DIR = "bundle"  # the reviewer's working folder: prompt, evidence, schema
TMP_DIR = "tmp"  # its TMPDIR, removed with the bundle


def _nothing() -> None:
    """The default `on_asked`: nobody journals the call."""


def _ignored(outcome: ReviewOutcome, audit: Mapping[str, str]) -> None:
    """The default `on_answered`: nobody journals the answer."""


@dataclass(frozen=True)
class RunOptions:
    """Knobs of the runner that tests and callers may change."""

    wait: wait_base = DEFAULT_WAIT
    grace_s: float = DEFAULT_GRACE_S
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    repo_exclude: Sequence[str] = field(default_factory=tuple)
    # Called right before the reviewer's first attempt starts, and with the final outcome and the sha256 of the
    # audit files before those are written: the caller journals the call there, so a crash never bills it twice.
    on_asked: Callable[[], None] = _nothing
    on_answered: Callable[[ReviewOutcome, Mapping[str, str]], None] = _ignored


class _Transient(Exception):
    """Raised inside the retry loop when an attempt failed in a way worth retrying."""


def child_env(env: Mapping[str, str], key_env: str | None, tmp_dir: Path | None = None) -> dict[str, str]:
    """The reviewer's environment: PATH, HOME, locale, TERM, TMPDIR and the one key variable."""
    # TMPDIR points into the scratch bundle when given: gemini writes error reports quoting the
    # request to the temp folder, and those must go when the bundle goes.
    kept = {k: v for k, v in env.items() if k in ALLOWED_ENV or k.startswith("LC_")}
    if key_env and key_env in env:
        kept[key_env] = env[key_env]
    if tmp_dir is not None:
        kept["TMPDIR"] = str(tmp_dir)
    return kept


def transient_cause(result: ProcessResult, output: ReviewerOutput | None) -> str | None:
    """Why an attempt should be retried (spawn error, signal, rate limit, no network), or None."""
    if result.spawn_error:
        return f"could not start: {result.spawn_error}"
    if result.ended_early:
        return result.ended_early
    if result.timed_out:
        return None
    if result.signal:
        return f"killed by signal {result.signal}"
    failed = result.exit_code != 0 or (output is not None and output.is_error)
    if not failed:
        return None
    cli_error = output.error if output is not None and output.error else ""
    tail = "\n".join([cli_error, _decode(result.stderr[-4096:]), _decode(result.stdout[-4096:])])
    if RATE_LIMITED.search(tail):
        return "rate limited"
    # Only the CLI's own error (else its stderr) says whether the network failed: codex's stdout
    # may hold reconnects it recovered from before a turn failed for another reason.
    reported = cli_error or stderr_tail(_decode(result.stderr[-4096:]))
    return f"network unreachable: {reported}" if NETWORK_FAILURE.search(reported) else None


def _decode(data: bytes) -> str:
    """Bytes from a CLI as text, never failing on bad UTF-8."""
    return data.decode("utf-8", errors="replace")


def _read_bounded(path: Path | None, limit: int) -> str | None:
    """The text of an output file the CLI wrote, at most `limit` bytes, or None."""
    if path is None or not path.is_file():
        return None
    with path.open("rb") as handle:
        return _decode(handle.read(limit))


def _run_attempt(
    number: int,
    spec: ReviewerSpec,
    prompt: str,
    request: ReviewRequest,
    scratch: Path,
    env: Mapping[str, str],
    options: RunOptions,
    clock: Clock,
) -> AttemptRecord:
    """Build, run and parse one attempt."""
    invocation = build_invocation(spec, prompt, scratch, number, request.allowed_changes)
    tmp_dir = scratch.parent / TMP_DIR  # beside the bundle, not in it: the reviewer's folder holds evidence only
    watch = network_watch(spec.kind)
    result = run_bounded(
        invocation.argv,
        stdin=invocation.stdin,
        cwd=scratch,
        env=child_env(env, spec.resolved_key_env(), tmp_dir),
        timeout_s=spec.timeout_s,
        grace_s=options.grace_s,
        max_bytes=options.max_output_bytes,
        clock=clock,
        watch=watch.feed if watch is not None else None,
    )
    last = _read_bounded(invocation.output_file, options.max_output_bytes)
    output = None
    if result.spawn_error is None:
        output = parse_output(spec, _decode(result.stdout), _decode(result.stderr), last)
    cost, source = resolve_cost(output, spec)
    return AttemptRecord(
        number, invocation.argv, result, output, last, transient_cause(result, output), cost, source
    )


def _run_attempts(
    spec: ReviewerSpec,
    prompt: str,
    request: ReviewRequest,
    scratch: Path,
    env: Mapping[str, str],
    options: RunOptions,
    clock: Clock,
) -> list[AttemptRecord]:
    """Attempts until one is not transient or the retries run out (tenacity backoff)."""
    records: list[AttemptRecord] = []

    def once() -> None:
        """Run the next attempt; raise to ask tenacity for another when it was transient."""
        record = _run_attempt(len(records) + 1, spec, prompt, request, scratch, env, options, clock)
        records.append(record)
        if record.transient:
            raise _Transient(record.transient)

    retrying = Retrying(
        stop=stop_after_attempt(spec.retries + 1),
        wait=options.wait,
        retry=retry_if_exception_type(_Transient),
        reraise=True,
        sleep=sleep_unless_stopped,
    )
    try:
        retrying(once)
    except _Transient:
        pass
    return records


def sleep_unless_stopped(seconds: float) -> None:
    """Tenacity's backoff wait, cut short by a stop signal: a SIGTERM must not wait out a 60 s backoff."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if (signum := stop_signal()) is not None:
            raise StopSignal(signum)
        time.sleep(min(left, STOP_CHECK_S))
    if (signum := stop_signal()) is not None:  # the next reviewer must not start after a stop either
        raise StopSignal(signum)


def verdict_of(record: AttemptRecord, request: ReviewRequest, spec: ReviewerSpec) -> Verdict:
    """Classify the final attempt: any failure is a reviewer error naming the CLI's cause; else parse the decision."""
    result, output = record.result, record.output
    if result.spawn_error:
        return reviewer_error(f"reviewer could not start: {result.spawn_error}")
    if result.timed_out:
        headline = f"reviewer timed out after {spec.timeout_s:g}s; its process group was killed"
        return _failure(spec, headline, record)
    if record.transient:
        return _failure(spec, f"reviewer failed after {record.number} attempt(s): {record.transient}", record)
    if result.truncated:
        return reviewer_error("reviewer output exceeded the size limit and was cut")
    if result.exit_code != 0:
        meaning = exit_meaning(spec.kind, result.exit_code)
        headline = f"reviewer exited with code {result.exit_code}" + (f" ({spec.kind}: {meaning})" if meaning else "")
        return _failure(spec, headline, record)
    assert output is not None
    if output.is_error:
        return reviewer_error(failure_message(spec, output.error or "the reviewer CLI reported an error", "", 0))
    verdict = parse_decision(output.text, gate_id=request.gate_id, nonce=request.nonce)
    return drop_null_changes(verdict)


def _failure(spec: ReviewerSpec, headline: str, record: AttemptRecord) -> Verdict:
    """A reviewer error: `headline`, the CLI's own cause (unless the headline quotes it already) and a hint."""
    cause = _cause(spec, record)
    return reviewer_error(failure_message(spec, headline, "" if cause in headline else cause, record.result.exit_code))


def _cause(spec: ReviewerSpec, record: AttemptRecord) -> str:
    """The CLI's own error (its reported error, else its last stderr lines) to explain a failure."""
    output = record.output
    if record.result.ended_early:  # the watch's reason is the cause; what the killed CLI printed is no report
        return ""
    stderr = stderr_tail(_decode(record.result.stderr))
    if output is not None and output.no_report:  # a CLI that failed before its format: its stderr is the cause
        return stderr or output.error or ""
    # A killed CLI's half-written output is no error report, except codex's events (its reconnect loop).
    if output is not None and output.error and (spec.kind == "codex" or not record.result.timed_out):
        return output.error
    return stderr


def _redacted(verdict: Verdict, redactor: Redactor) -> Verdict:
    """The verdict with reviewer-written text masked; it reaches journals and checkpoints."""
    return Verdict(
        verdict.decision,
        tuple(redactor.redact(r) for r in verdict.reasons),
        MappingProxyType(redactor.redact_obj(dict(verdict.changes))),
        bounded_error(redactor.redact(verdict.error)) if verdict.error is not None else None,
    )


def _final_verdict(records: Sequence[AttemptRecord], request: ReviewRequest, spec: ReviewerSpec,
                   redactor: Redactor) -> Verdict:
    """The last attempt's verdict, redacted; an answer any step cannot take is a reviewer error (pause, never stop)."""
    try:
        return _redacted(verdict_of(records[-1], request, spec), redactor)
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError masking deeply nested changes
        return reviewer_error(f"the reviewer's answer could not be taken ({type(exc).__name__}: {str(exc)[:200]})")


def _repo_excludes(repo_dir: Path, options: RunOptions, out_dir: Path) -> list[str]:
    """Paths left out of the repo digest: the caller's, plus out_dir when it lies inside."""
    excludes = list(options.repo_exclude)
    try:
        excludes.append(str(out_dir.resolve().relative_to(repo_dir.resolve())))
    except ValueError:
        pass
    return excludes


def _digest(repo_dir: Path | None, excludes: Sequence[str]) -> str | None:
    """The repo's tree digest, or None when no repo is watched."""
    return tree_digest(repo_dir, excludes) if repo_dir is not None else None


def run_review(
    request: ReviewRequest,
    spec: ReviewerSpec,
    out_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    clock: Clock = time.monotonic,
    repo_dir: Path | None = None,
    options: RunOptions | None = None,
) -> ReviewOutcome:
    """Run `spec` on `request` in a fresh scratch bundle; keep every file in `out_dir`."""
    # With `repo_dir`, the repository is hashed before and after; any change fails the review.
    env = os.environ if env is None else env
    options = options or RunOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    out_dir.chmod(0o700)
    redactor = Redactor(env)
    started = clock()
    prompt = render_prompt(request, redactor)
    write_private(out_dir / "prompt.md", prompt)
    repo = Path(repo_dir) if repo_dir is not None else None
    excludes = _repo_excludes(repo, options, out_dir) if repo else []
    before = _digest(repo, excludes)
    with tempfile.TemporaryDirectory(prefix="phasegate-review-") as root:
        scratch = Path(root) / BUNDLE_DIR
        scratch.mkdir(mode=0o700)
        (Path(root) / TMP_DIR).mkdir(mode=0o700)
        write_private(scratch / PROMPT_FILE, prompt)
        write_private(scratch / "evidence.json", redacted_evidence(request, redactor))
        options.on_asked()
        records = _run_attempts(spec, prompt, request, scratch, env, options, clock)
    verdict = _final_verdict(records, request, spec, redactor)
    after = _digest(repo, excludes)
    repo_modified = before != after
    if repo_modified:
        verdict = reviewer_error("the reviewer modified the repository; this is an incident")
    outcome = build_outcome(
        records, verdict, out_dir=out_dir, duration_s=clock() - started, repo_modified=repo_modified
    )
    texts = audit_texts(AuditContext(request, spec, prompt, redactor, (before, after)), records, outcome)
    options.on_answered(outcome, audit_digests(prompt, texts))
    write_audit(out_dir, texts)
    return outcome
