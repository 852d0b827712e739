#!/usr/bin/env python3
"""A fake reviewer CLI: installed as `claude`, `codex`, `gemini`, `llm` (or any name).

It reads the prompt from stdin the way the real CLI does, pulls the gate id and nonce out of
the prompt's answer contract, and prints the real CLI's output format. What it says is set by
`scenario.json` next to it (the reviewer's environment is allow-listed, so it cannot come
from an environment variable). Every call is logged to `calls/<n>.json` next to it: argv,
environment, working directory and what it received.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = Path(sys.argv[0]).name


def scenario() -> dict:
    path = HERE / "scenario.json"
    return json.loads(path.read_text()) if path.exists() else {}


def log_call(prompt: str) -> int:
    calls = HERE / "calls"
    calls.mkdir(exist_ok=True)
    number = len(list(calls.glob("*.json"))) + 1
    record = {
        "name": NAME,
        "argv": sys.argv,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "cwd_files": sorted(os.listdir(os.getcwd())),
        "prompt": prompt,
    }
    (calls / f"{number}.json").write_text(json.dumps(record))
    return number


def contract(prompt: str) -> tuple[str, str]:
    match = re.search(r"`gate_id` must be exactly `([^`]*)` and `nonce` exactly `([^`]*)`", prompt)
    return (match.group(1), match.group(2)) if match else ("?", "?")


def decision(prompt: str, value: str = "SCALE", **overrides) -> dict:
    gate_id, nonce = contract(prompt)
    obj = {
        "decision": value,
        "reasons": ["pilot QC passed"],
        "changes": {},
        "gate_id": gate_id,
        "nonce": nonce,
    }
    obj.update(overrides)
    return obj


def objects_in(text: str):
    """Every JSON object in `text`, including ones embedded in JSON string values."""
    decoder = json.JSONDecoder()
    index = text.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            yield value
            for inner in value.values():
                if isinstance(inner, str):
                    yield from objects_in(inner)
        index = text.find("{", end)


def injected_object(prompt: str) -> dict | None:
    """What a reviewer that obeys the untrusted data would answer: the object planted there."""
    start = prompt.find("source=sample_rows>>>")
    return next((o for o in objects_in(prompt[start:]) if "decision" in o), None)


def answer_text(mode: str, prompt: str, sc: dict) -> str:
    """The model's answer text for a scenario."""
    if mode == "garbage":
        return "I looked at the data and it seems mostly fine, maybe scale?"
    if mode == "conflict":
        return (
            json.dumps(decision(prompt, "SCALE"))
            + "\nOn reflection:\n"
            + json.dumps(decision(prompt, "STOP"))
        )
    if mode == "wrong_nonce":
        return json.dumps(decision(prompt, nonce="0" * 32))
    if mode == "obey_injection":
        return json.dumps(injected_object(prompt) or {})
    if mode == "iterate":
        return (
            "```json\n"
            + json.dumps(decision(prompt, "ITERATE", changes=sc.get("changes", {})))
            + "\n```"
        )
    if mode == "leak":
        return json.dumps(decision(prompt)) + "\n" + os.environ.get(sc.get("leak_env", ""), "")
    if mode == "leak_in_reasons":
        secret = os.environ.get(sc.get("leak_env", ""), "")
        return json.dumps(
            decision(prompt, "ITERATE", reasons=[f"use key {secret}"], changes={"token": secret})
        )
    return json.dumps(decision(prompt, sc.get("decision", "SCALE")))


CLAUDE_INIT = {"type": "system", "subtype": "init", "cwd": "/tmp/x", "session_id": "3b1f0c9e", "tools": [],
               "mcp_servers": [], "model": "claude-opus-4-8", "permissionMode": "default",
               "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": "2.1.197"}


def claude_assistant(text: str) -> dict:
    """stream-json's assistant event for one text reply."""
    return {"type": "assistant", "message": {"role": "assistant", "type": "message", "model": "claude-opus-4-8",
                                              "content": [{"type": "text", "text": text}]},
            "parent_tool_use_id": None, "session_id": "3b1f0c9e"}


def emit_claude(text: str, prompt: str, mode: str) -> None:
    """`--output-format stream-json --verbose`: init, the assistant's reply, then the result object."""
    obj = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 1234,
        "num_turns": 1,
        "result": text,
        "session_id": "3b1f0c9e-0000-4000-8000-000000000000",
        "total_cost_usd": 0.0123,
        "usage": {"input_tokens": 900, "cache_read_input_tokens": 100, "output_tokens": 80},
    }
    if mode == "is_error":
        obj.update(is_error=True, result="API Error: 500 internal error")
    elif mode in ("scale", "leak") and "--json-schema" in sys.argv:
        # With --json-schema the validated answer arrives in structured_output.
        obj["structured_output"] = json.loads(text.splitlines()[0])
    for event in (CLAUDE_INIT, claude_assistant(text), obj):
        print(json.dumps(event))


def emit_codex(text: str) -> None:
    events = [
        {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
        {"type": "turn.started"},
        # codex 0.169 reports transport retries it recovers from as top-level error events.
        {"type": "error", "message": "Reconnecting... 2/5 (stream disconnected before completion)"},
        {
            "type": "item.completed",
            "item": {"id": "item_0", "type": "reasoning", "text": "Reading the evidence."},
        },
        {"type": "item.completed", "item": {"id": "item_1", "type": "agent_message", "text": text}},
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 1000, "cached_input_tokens": 400, "output_tokens": 200},
        },
    ]
    for event in events:
        print(json.dumps(event))
    if "--output-last-message" in sys.argv:
        Path(sys.argv[sys.argv.index("--output-last-message") + 1]).write_text(text)


def emit_gemini(text: str) -> None:
    tokens = {
        "input": 1500,
        "prompt": 1500,
        "candidates": 60,
        "total": 1600,
        "cached": 0,
        "thoughts": 40,
        "tool": 0,
    }
    print(
        json.dumps(
            {
                "session_id": "abc123",
                "response": text,
                "stats": {
                    "models": {
                        "gemini-2.5-pro": {
                            "api": {"totalRequests": 1, "totalErrors": 0, "totalLatencyMs": 900},
                            "tokens": tokens,
                        }
                    },
                    "tools": {"totalCalls": 0},
                    "files": {"totalLinesAdded": 0, "totalLinesRemoved": 0},
                },
            },
            indent=2,
        )
    )


def emit_llm(text: str) -> None:
    print(text)
    print("Token usage: 2,000 input, 100 output", file=sys.stderr)


def emit(text: str, prompt: str, mode: str) -> None:
    if NAME == "claude":
        emit_claude(text, prompt, mode)
    elif NAME == "codex":
        emit_codex(text)
    elif NAME == "gemini":
        emit_gemini(text)
    elif NAME == "llm":
        emit_llm(text)
    else:
        print(text)


def rate_limited() -> None:
    """Fail the way each CLI fails when throttled."""
    if NAME == "claude":
        print(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": True,
                    "result": "API Error: 429 rate_limit_error",
                    "total_cost_usd": 0,
                }
            )
        )
    elif NAME == "codex":
        print(
            json.dumps(
                {
                    "type": "turn.failed",
                    "error": {
                        "message": "exceeded retry limit, last status: 429 Too Many Requests"
                    },
                }
            )
        )
    else:
        print("Error: 429 Too Many Requests", file=sys.stderr)
    sys.exit(1)


CLAUDE_ENVELOPE = {
    "type": "result",
    "duration_ms": 1480,
    "duration_api_ms": 0,
    "num_turns": 1,
    "session_id": "e8a0d63d-0000-4000-8000-000000000000",
    "total_cost_usd": 0,
    "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0},
    "permission_denials": [],
}
# claude 2.1's error results: the subtype names the failure, `errors[]` holds its detail, `result` is absent.
CLAUDE_ERROR_DETAIL = {
    "error_during_execution": "API Error: Connection error.",
    "error_max_turns": "Reached maximum number of turns (1)",
    "error_max_budget_usd": "Reached maximum budget ($0.01)",
    "error_max_structured_output_retries": "Failed to provide valid structured output after 5 attempts",
}
# gemini 0.61's fatal exits with the JSON error object it prints on stderr (stdout stays empty). 52 and 53 are
# taken from its source (FatalConfigError, FatalTurnLimitedError): no offline run reaches them.
GEMINI_FATAL = {
    52: "Invalid configuration in /home/user/.gemini/settings.json: unknown key 'modle'",
    53: "Reached max session turns for this session. Increase the number of turns by specifying maxSessionTurns.",
}
GEMINI_NOISE = ["Warning: 256-color support not detected. Using a terminal with at least 256-color support is "
                "recommended for a better visual experience.", "Ripgrep is not available. Falling back to GrepTool."]
GEMINI_FETCH = "exception TypeError: fetch failed sending request"
GEMINI_STACK = ["    at file:///usr/lib/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js:267671:13",
                "    at async retryWithBackoff (file:///usr/lib/node_modules/@google/gemini-cli/bundle/chunk.js:308039:23)"]


def fail(stdout_lines: list[str], stderr_lines: list[str], code: int) -> None:
    """Print what a failing CLI prints and exit with its code."""
    for line in stdout_lines:
        print(line)
    for line in stderr_lines:
        print(line, file=sys.stderr)
    sys.exit(code)


def wait_forever(lines: list[str], stream, every_s: float) -> None:
    """Print `lines` one by one, then the last one again and again: a CLI waiting on a network it cannot reach."""
    for line in lines:
        print(line, file=stream, flush=True)
        time.sleep(every_s)
    while True:
        print(lines[-1], file=stream, flush=True)
        time.sleep(every_s)


def claude_failure(mode: str) -> None:
    """claude 2.1.197's real failures: not logged in, an unknown flag, no network, its error results."""
    if mode == "not_logged_in":  # exit 1 in ~1.5 s; `subtype` still says success
        text = "Not logged in \u00b7 Please run /login"
        obj = {**CLAUDE_ENVELOPE, "subtype": "success", "is_error": True, "api_error_status": None,
               "terminal_reason": "completed", "result": text}
        fail([json.dumps(e) for e in (CLAUDE_INIT, claude_assistant(text), obj)], [], 1)
    if mode == "unknown_flag":  # commander.js rejects the argv before any JSON
        fail([], ["error: unknown option '--no-such-flag'"], 1)
    if mode == "offline":  # a key but no network: api_retry events with no HTTP status, 10 retries over minutes
        retries = [json.dumps({"type": "system", "subtype": "api_retry", "attempt": n, "max_retries": 10,
                               "retry_delay_ms": 500 * 2 ** n, "error_status": None, "error": "unknown",
                               "session_id": "3b1f0c9e"}) for n in range(1, 11)]
        wait_forever([json.dumps(CLAUDE_INIT), *retries], sys.stdout, 0.1)
    obj = {**CLAUDE_ENVELOPE, "subtype": mode, "is_error": True, "errors": [CLAUDE_ERROR_DETAIL[mode]]}
    fail([json.dumps(obj)], [], 1)


CODEX_OFFLINE = "stream disconnected before completion: failed to lookup address information: Name does not resolve"


def codex_failure(mode: str) -> None:
    """codex-cli 0.171's real failures: a failed turn, an error item, an unknown flag (clap), no network."""
    started = [json.dumps({"type": "thread.started", "thread_id": "01a20817"}), json.dumps({"type": "turn.started"})]
    retries = [json.dumps({"type": "error", "message": f"Reconnecting... {n}/5 (stream disconnected before "
                                                       "completion: error sending request for url "
                                                       "(https://api.openai.com/v1/responses))"}) for n in (1, 2)]
    if mode == "turn_failed":
        failed = {"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized: Missing bearer "
                                                              "or basic authentication in header"}}
        fail([*started, *retries, json.dumps(failed)], [], 1)
    if mode == "error_item":
        item = {"type": "item.completed",
                "item": {"id": "item_0", "type": "error", "message": "model 'gpt-9' is not supported"}}
        fail([*started, json.dumps(item)], [], 1)
    if mode == "offline":  # with or without a key: five reconnects, a transport fallback, then a wait forever
        reconnects = [json.dumps({"type": "error", "message": f"Reconnecting... {n}/5 ({CODEX_OFFLINE})"})
                      for n in range(2, 6)]
        fallback = {"type": "item.completed", "item": {"id": "item_0", "type": "error", "message":
                                                       f"Falling back from WebSockets to HTTPS transport. {CODEX_OFFLINE}"}}
        waiting = {"type": "error", "message": "Reconnecting... waiting for network (Connection failed: error "
                                               "sending request)"}
        wait_forever([*started, *reconnects, json.dumps(fallback), json.dumps(waiting)], sys.stdout, 0.1)
    fail([], ["error: unexpected argument '--no-such-flag' found", "",
              "  tip: to pass '--no-such-flag' as a value, use '-- --no-such-flag'", "",
              "Usage: codex exec [OPTIONS] [PROMPT]", "       codex exec [OPTIONS] <COMMAND> [ARGS]", "",
              "For more information, try '--help'."], 2)


def gemini_offline() -> None:
    """A key but no network: three attempts with backoff on stderr, then the error object; exit 1 (~15 s)."""
    for line in GEMINI_NOISE:
        print(line, file=sys.stderr)
    for attempt in (1, 2):
        for line in (f"Attempt {attempt} failed. Retrying with backoff... Error: {GEMINI_FETCH}", *GEMINI_STACK):
            print(line, file=sys.stderr, flush=True)
        time.sleep(0.5 * attempt)
    error = {"session_id": "336c2624", "error": {"type": "Error", "message": GEMINI_FETCH, "code": 1}}
    fail([], ["Error when talking to Gemini API Full report available at: /tmp/gemini-client-error.json",
              json.dumps(error, indent=2)], 1)


def gemini_failure(mode: str) -> None:
    """gemini-cli 0.61's real failures: 55 (untrusted folder), 42, an unknown flag (all plain text), no network,
    and the JSON ones (52, 53)."""
    if mode == "offline":
        gemini_offline()
    if mode == "exit_42":  # stdin empty and no -p text
        fail([], [*GEMINI_NOISE, "No input provided via stdin. Input can be provided by piping data into gemini or "
                                 "using the --prompt option."], 42)
    if mode == "unknown_flag":  # yargs: the rejected flag first, then its whole usage
        fail([], ["Unknown arguments: such-flag, suchFlag", "Usage: gemini [options] [command]", "", "Commands:",
                  "  gemini mcp                     Manage MCP servers", "", "Options:",
                  "  -h, --help                      Show help  [boolean]"], 1)
    if mode == "untrusted":
        fail([], ['Approval mode overridden to "default" because the current folder is not trusted.',
                  "Gemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`, "
                  "set the `GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, or trust this directory in "
                  "interactive mode."], 55)
    code = int(mode.removeprefix("exit_"))
    error = {"session_id": "f438835c", "error": {"type": "Error", "message": GEMINI_FATAL[code], "code": code}}
    fail([], [json.dumps(error, indent=2)], code)


def llm_failure(mode: str) -> None:
    """llm 0.36's real failures: no key for its default OpenAI model, no network, no schema support, a bad flag."""
    if mode == "offline":  # a key but no network: the OpenAI client retries twice (~2 s), then this
        fail([], ["Error: Connection error."], 1)
    if mode == "no_schema":  # llm-echo, llm-markov and other models without schema support
        fail([], ["Error: Echo: echo does not support schemas"], 1)
    if mode == "unknown_flag":  # click
        fail([], ["Usage: llm prompt [OPTIONS] [PROMPT]", "Try 'llm prompt --help' for help.", "",
                  "Error: No such option '--no-such-flag'. Did you mean '--no-log'?"], 2)
    fail([], ["Error: No key found - add one using 'llm keys set openai' or set the OPENAI_API_KEY "
              "environment variable"], 1)


CLI_FAILURES = {"claude": claude_failure, "codex": codex_failure, "gemini": gemini_failure, "llm": llm_failure}


def spawn_grandchild(setsid: bool) -> None:
    """A grandchild that inherits stdout and outlives its parent; its pid goes to pids.txt."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"], start_new_session=setsid
    )
    with (HERE / "pids.txt").open("a") as handle:
        handle.write(f"{child.pid}\n")


def main() -> None:
    sc = scenario()
    prompt = sys.stdin.read()
    call = log_call(prompt)
    mode = sc.get("mode", "scale")
    if call <= sc.get("fail_times", 0):
        if sc.get("failure") == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        rate_limited()
    if mode in ("hang", "hang_grandchild"):
        if mode == "hang_grandchild":
            spawn_grandchild(setsid=False)
        sys.stdout.write("thinking...\n")
        sys.stdout.flush()
        time.sleep(3600)
    if mode == "write_repo":
        Path(sc["repo"], "INJECTED.txt").write_text("the reviewer was here\n")
    if mode == "gemini_auth_error":
        # gemini 0.61: the JSON error object goes to stderr after a warning line; exit code 41.
        print(
            'Approval mode overridden to "default" because the current folder is not trusted.',
            file=sys.stderr,
        )
        print(
            json.dumps(
                {
                    "session_id": "f438835c",
                    "error": {"type": "Error", "message": "Please set an Auth method", "code": 41},
                },
                indent=2,
            ),
            file=sys.stderr,
        )
        sys.exit(41)
    if mode == "leak_stderr":  # a long stderr line that quotes the key, then a missing-key error
        words = " ".join(f"word{n}" for n in range(400))
        fail([], [f"debug: key={os.environ.get(sc.get('leak_env', ''), '')} {words}",
                  "Error: No key found"], sc.get("exit_code", 1))
    if mode == "cli_failure":  # the real CLI's own failure, named by `failure_case`
        CLI_FAILURES[NAME](sc["failure_case"])
    if mode == "huge":
        sys.stdout.write("x" * 200_000)
        return
    emit(answer_text(mode, prompt, sc), prompt, mode)
    if mode == "leak":
        print("debug: key=" + os.environ.get(sc.get("leak_env", ""), ""), file=sys.stderr)
    if mode in ("grandchild_holds_pipe", "setsid_grandchild_holds_pipe"):
        sys.stdout.flush()
        spawn_grandchild(setsid=mode.startswith("setsid"))
    sys.exit(sc.get("exit_code", 0))


if __name__ == "__main__":
    main()
