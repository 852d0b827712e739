"""Mutated session files: `check` and `run` answer every one with an exit code and a message, never a crash,
and a run they make can be read back (its frozen session file matches the journal)."""

from __future__ import annotations

import random
import traceback

from phasegate.cli.main import main

SEED = 20261123
CASES = 300

BASES = [
    '[session]\nname = "fuzz"\nbudget_usd = 5.0\n\n[[phases]]\nid = "a"\nrun = ["true"]\ntimeout_s = 30\n'
    'retries = 1\n\n[phases.env]\nMODE = "quick"\n\n[[phases]]\nid = "b"\nrun = ["echo", "{artifacts}", "{phase}"]\n',
    '[session]\nname = "fuzz"\n\n[[phases]]\nid = "make"\nrun = ["sh", "-c", "echo 1 > {artifacts}/m.txt"]\n\n'
    '[[phases.gates]]\nkind = "artifact"\nfiles = ["{artifacts}/m.txt"]\n\n[[phases]]\nid = "after"\nrun = ["false"]\n',
    '[session]\nname = "fuzz"\n\n[[phases]]\nid = "p"\nrun = ["true", "--out", "{run_dir}/x"]\n\n'
    '[[phases.pre_gates]]\nkind = "policy"\nroot = "code"\nrules = [{kind = "no_call", function = "eval"}]\n\n'
    '[[phases.gates]]\nid = "ok"\nkind = "approval"\n',
    '[session]\nname = "fuzz"\n\n[[phases]]\nid = "t"\nrun = ["true"]\n\n[phases.with]\ncount = 3\n'
    'nested = {a = [1, 2, {b = "c"}]}\n',
]

VALUES = [
    '"\\u0000"', '"{artifacts:>9999999}"', '"{artifacts!r}"', '"{nope}"', '"print({\'a\':1})"', '"{{ok}}"',
    '"' + "x" * 300 + '"', '"pyhton3"', '"."', '""', '"/"', '"./not-there.sh"', '"code/noexec.sh"',
    '"$(touch pwned)"', '"a b"', '"é"', "-1", "0", "1e309", "nan", "inf", "-inf", "true", "[]", "{}",
    "[" * 40 + "]" * 40, "99999999999999999999999", '["true", "\\u0000"]', '["."]', '[""]', '["sh", "-c"]',
    "1979-05-27T07:32:00Z", '{kind = "policy"}', '[{kind = "approval"}]', '"A=B"', '"../.."',
]

LINES = [
    'timeout_s = 0.01', 'retries = 50', 'stall_timeout_s = 0', '[phases.env]\n"A=B" = "1"', 'id = "a"',
    '[[phases]]\nid = "a"\nrun = ["true"]', '[[phases.gates]]\nkind = "threshold"', 'kind = "sft"',
    '[[phases.gates]]\nkind = "policy"\nroot = "code"\nrules = [{kind = "no_call", function = "f"}]',
    '[[phases.gates]]\nid = "ok"\nkind = "approval"', '[model]\npath = "models/base"', 'x = ' + "[" * 600,
]

NOISE = '{}[]"=\\\n\x00#.,\'$'


def _replace_value(rng: random.Random, lines: list[str]) -> None:
    keyed = [i for i, line in enumerate(lines) if " = " in line and not line.startswith("name = ")]
    if keyed:
        i = rng.choice(keyed)
        lines[i] = lines[i].split(" = ", 1)[0] + " = " + rng.choice(VALUES)


def _change_argv(rng: random.Random, lines: list[str]) -> None:
    """Put a value into a phase's argv: as its program, or as one more argument."""
    runs = [i for i, line in enumerate(lines) if line.startswith("run = [")]
    value = rng.choice([v for v in VALUES if v.startswith('"')])
    if runs:
        i = rng.choice(runs)
        body = lines[i].removeprefix("run = [")
        lines[i] = f"run = [{value}, {body}" if rng.random() < 0.3 else f"run = [{body[:-1]}, {value}]"


def _mutate_chars(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    text = lines[i]
    at = rng.randrange(len(text) + 1)
    lines[i] = text[:at] + rng.choice(NOISE) + text[at + rng.randint(0, 2):]


MUTATIONS = [
    _replace_value, _replace_value, _change_argv, _change_argv, _change_argv, _mutate_chars,
    lambda rng, lines: lines.insert(rng.randrange(1, len(lines) + 1), rng.choice(LINES)),
    lambda rng, lines: lines.pop(rng.randrange(2, len(lines))) if len(lines) > 2 else None,
    lambda rng, lines: lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines)),
]


def mutated(rng: random.Random) -> str:
    lines = rng.choice(BASES).splitlines()
    for _ in range(rng.choice((1, 1, 2, 3))):
        rng.choice(MUTATIONS)(rng, lines)
    return "\n".join(lines) + "\n"


# How editors and other tools save a file: a byte order mark, Windows line ends, a Latin-1 byte, a lone
# UTF-8 lead byte, a file cut short.
ENCODINGS = [
    lambda text: text.encode(), lambda text: text.encode(), lambda text: text.encode(),
    lambda text: b"\xef\xbb\xbf" + text.encode(),
    lambda text: text.replace("\n", "\r\n").encode(),
    lambda text: text.replace("\n", "\n# caf\xe9\n", 1).encode("latin-1", "replace"),
    lambda text: text.encode()[:-3] + b"\xc3",
    lambda text: text.encode()[: len(text) // 2],
]


def saved(rng: random.Random, text: str) -> bytes:
    """The bytes of `text` as one of the ways a file gets saved."""
    return rng.choice(ENCODINGS)(text)


def outcome(argv: list[str]) -> int | str:
    """The exit code of one in-process command, or the traceback it ended with."""
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - a crash is what this test is looking for
        return traceback.format_exc(limit=-3)
    return 0


def test_mutated_sessions_never_crash(tmp_path, monkeypatch, capsys):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "ok.py").write_text("x = 1\n")
    (tmp_path / "code" / "noexec.sh").write_text("#!/bin/sh\ntrue\n")
    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED)
    crashes, codes = [], {}
    for case in range(CASES):
        path = tmp_path / f"s{case}.toml"
        path.write_bytes(saved(rng, mutated(rng)))
        for argv in (["check", str(path)], ["run", str(path), "--run-dir", str(tmp_path / f"run{case}"), "--headless"]):
            result = outcome(argv)
            if not isinstance(result, int) or result == 1:
                crashes.append(f"{argv[0]} {path.name}: {result}\n{path.read_bytes()!r}")
            key = result if isinstance(result, int) else "traceback"
            codes[key] = codes.get(key, 0) + 1
        run_dir = tmp_path / f"run{case}"
        if run_dir.exists() and (result := outcome(["status", str(run_dir)])) != 0:  # a run made is a run kept
            crashes.append(f"status {run_dir.name}: {result}\n{capsys.readouterr().err}\n{path.read_bytes()!r}")
        capsys.readouterr()  # the commands' own output is not what is checked
    assert not crashes, f"{len(crashes)} crash(es), exit codes {codes}:\n\n" + "\n\n".join(crashes[:5])
    assert {0, 2} <= set(codes)  # the mutations reach both valid files and refused ones
