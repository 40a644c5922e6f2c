"""Drives `vigil mcp` with the official MCP Python SDK (tests/mcp.rs runs it).

    driver.py MODE VIGIL DATA_DIR ROOT STDOUT_LOG

MODE is the SDK client's mode: "legacy" (the initialize handshake) or "auto" (server/discover,
then the 2026-07-28 per-request envelope). The server's stdout passes through a tee (this
script run as `driver.py --tee LOG CMD...`) so the caller can check it carried nothing but
protocol. Every check failing raises; on success one JSON report is printed on stdout.
"""

import json
import os
import re
import subprocess
import sys
import threading


def tee(log_path, argv):
    """Runs argv, copying our stdin to it and its stdout to ours and to log_path."""
    log = open(log_path, "ab")
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def upstream():
        for line in sys.stdin.buffer:
            child.stdin.write(line)
            child.stdin.flush()
        child.stdin.close()

    threading.Thread(target=upstream, daemon=True).start()
    for line in child.stdout:
        log.write(line)
        log.flush()
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    sys.exit(child.wait())


if len(sys.argv) > 1 and sys.argv[1] == "--tee":
    tee(sys.argv[2], sys.argv[3:])

import anyio  # noqa: E402
from mcp.client import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

EXPECTED_TOOLS = {
    # name: (required arguments, read-only, destructive)
    "shell": (["cmd"], False, True),
    "exec": (["argv"], False, True),
    "file_read": (["path"], True, False),
    "file_write": (["content", "path"], False, True),
    "telemetry": ([], True, False),
    "jobs_list": ([], True, False),
    "job_get": (["job_id"], True, False),
}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def job_id_of(message):
    m = re.match(r"job (\d+) started", message or "")
    return int(m.group(1)) if m else None


async def main(mode, vigil, data_dir, root, stdout_log):
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            os.path.abspath(__file__), "--tee", stdout_log,
            vigil, "--data-dir", data_dir, "mcp", "--root", root,
            "--progress-interval", "50ms", "--max-jobs", "8",
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    report = {"mode": mode}
    async with Client(params, mode=mode) as c:
        report["protocol_version"] = c.protocol_version

        # The tools, their schemas and annotations.
        listed = {t.name: t for t in (await c.list_tools()).tools}
        check(set(listed) == set(EXPECTED_TOOLS), f"tools listed: {sorted(listed)}")
        for name, (required, read_only, destructive) in EXPECTED_TOOLS.items():
            t = listed[name]
            check(t.input_schema["type"] == "object", f"{name} input schema")
            check(sorted(t.input_schema.get("required", [])) == required, f"{name} required: {t.input_schema}")
            check(t.output_schema and t.output_schema["type"] == "object", f"{name} output schema")
            check(t.annotations.read_only_hint is read_only, f"{name} readOnlyHint")
            check(t.annotations.destructive_hint is destructive, f"{name} destructiveHint")
        check("timeout_ms" in listed["shell"].input_schema["properties"], "shell takes limits")

        # Every tool.
        r = await c.call_tool("shell", {"cmd": "echo out; echo err >&2", "timeout_ms": 60000})
        s = r.structured_content
        check(not r.is_error and s["status"] == "completed" and s["exit_code"] == 0, f"shell: {r}")
        check(s["stdout"] == "out\n" and s["stderr"] == "err\n", f"shell output: {s}")
        check(json.loads(r.content[-1].text) == s, "the text copy is the structured content")
        shell_job = s["job_id"]

        r = await c.call_tool("exec", {"argv": ["printf", "%s-%s", "a", "b"]})
        check(not r.is_error and r.structured_content["stdout"] == "a-b", f"exec: {r}")

        r = await c.call_tool("file_write", {"path": "note.txt", "content": "hello"})
        check(not r.is_error, f"file_write: {r}")
        r = await c.call_tool("file_write", {"path": "note.txt", "content": " world", "append": True})
        check(not r.is_error, f"file_write append: {r}")
        r = await c.call_tool("file_read", {"path": "note.txt"})
        check(not r.is_error and r.structured_content["stdout"] == "hello world", f"file_read: {r}")

        r = await c.call_tool("telemetry", {})
        s = r.structured_content
        check(not r.is_error and s["memory"]["total_bytes"] > 0 and "busy_pct" in s["cpu"], f"telemetry: {r}")

        r = await c.call_tool("jobs_list", {})
        ids = [j["job_id"] for j in r.structured_content["jobs"]]
        check(not r.is_error and shell_job in ids, f"jobs_list: {r}")

        r = await c.call_tool("job_get", {"job_id": shell_job})
        check(not r.is_error and r.structured_content["job_id"] == shell_job, f"job_get: {r}")
        check(r.structured_content["status"] == "completed", f"job_get status: {r}")
        r = await c.call_tool("job_get", {"job_id": 999999})
        check(r.is_error and "no job 999999" in r.content[0].text, f"job_get of no job: {r}")

        # Failures are error results that say why.
        r = await c.call_tool("shell", {"cmd": "exit 3"})
        check(r.is_error and r.structured_content["status"] == "failed", f"exit 3: {r}")
        check(r.structured_content["exit_code"] == 3 and "exit code 3" in r.content[0].text, f"exit 3: {r}")
        r = await c.call_tool("shell", {"cmd": "exec sleep 60", "timeout_ms": 200})
        check(r.is_error and r.structured_content["status"] == "timed_out", f"timeout: {r}")
        r = await c.call_tool("file_read", {"path": "../../etc/passwd"})
        check(r.is_error and r.structured_content["status"] == "rejected", f"escape: {r}")
        check(r.structured_content["error"], f"a refusal says why: {r}")

        # Bad arguments are protocol errors, outside MCP's reserved band.
        for name, args in [("shell", {}), ("shell", {"cmd": 5}), ("exec", {"argv": []}), ("nope", {})]:
            try:
                await c.call_tool(name, args)
                raise AssertionError(f"{name} {args} was accepted")
            except MCPError as e:
                check(e.code == -32602, f"{name} {args}: code {e.code}")

        # Progress: the job waits until the client has seen a progress notification.
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, message))
            open(os.path.join(root, "progress-seen"), "a").close()

        r = await c.call_tool(
            "shell",
            {"cmd": "while [ ! -e progress-seen ]; do sleep 0.01; done", "timeout_ms": 120000},
            progress_callback=on_progress,
        )
        check(not r.is_error, f"progress job: {r}")
        check(seen and job_id_of(seen[0][1]) == r.structured_content["job_id"], f"progress: {seen}")
        values = [p for p, _ in seen]
        check(values == sorted(values) and len(set(values)) == len(values), f"progress increases: {seen}")
        report["progress_notifications"] = len(seen)

        # A call the client abandons: its job is killed.
        started = anyio.Event()
        cancelled_ids = []

        async def on_start(progress, total, message):
            job = job_id_of(message)
            if job is not None:
                cancelled_ids.append(job)
                started.set()

        async def abandoned():
            await c.call_tool("shell", {"cmd": "exec sleep 300"}, progress_callback=on_start)

        async with anyio.create_task_group() as tg:
            tg.start_soon(abandoned)
            with anyio.fail_after(60):
                await started.wait()
            tg.cancel_scope.cancel()
        report["cancelled_job"] = cancelled_ids[0]

        # 8 calls at once: each job waits until all 8 have started, so they must run together.
        results = [None] * 8

        async def one(i):
            results[i] = await c.call_tool(
                "shell",
                {
                    "cmd": f"touch started.{i}; while [ $(ls started.* | wc -l) -lt 8 ]; do sleep 0.01; done; echo {i}",
                    "timeout_ms": 120000,
                },
            )

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
        for i, r in enumerate(results):
            check(not r.is_error and r.structured_content["stdout"] == f"{i}\n", f"concurrent call {i}: {r}")
        report["concurrent_jobs"] = sorted(r.structured_content["job_id"] for r in results)

        # The connection still works after all that.
        r = await c.call_tool("shell", {"cmd": "echo still"})
        check(r.structured_content["stdout"] == "still\n", f"after: {r}")
    print(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:6])
