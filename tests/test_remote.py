"""Remote profiling over a real SSH server on 127.0.0.1.

The server is asyncssh, started in-process on a random port with throwaway host and client keys; the
profiler talks to it with the system OpenSSH client, exactly as it would talk to a Raspberry Pi. Commands
the client sends are really executed (by a shell), so the probe really runs "on the device".
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading

import pytest

from edgedistill.errors import UserError
from edgedistill.profile import profile_models
from edgedistill.profile.synthetic import synthetic_mlp
from edgedistill.target import Target

asyncssh = pytest.importorskip("asyncssh", reason="pip install asyncssh (in the test extra) for the SSH server")
pytestmark = pytest.mark.skipif(shutil.which("ssh") is None,
                                reason="needs the OpenSSH client: apt-get install -y openssh-client")


async def _handle(process) -> None:
    """Run the client's command in a shell with the client's stdin, then send back its output and exit status.

    Every command the profiler sends is non-interactive (`cat > file` fed a file, or the probe run), so the
    whole stdin is read first and the output sent after the command ends. Streaming with
    `process.redirect` raced on a loaded machine: a command that exits at once (a missing remote_python)
    could close the channel before its exit status was sent, and ssh reported a dropped connection."""
    try:
        data = await process.stdin.read()
        proc = await asyncio.create_subprocess_shell(process.command or "true", stdin=asyncio.subprocess.PIPE,
                                                     stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(data)
        process.stdout.write(out)
        process.stderr.write(err)
        process.exit(proc.returncode)
    except Exception as exc:  # report, like sshd would, rather than drop the connection
        process.stderr.write(f"test ssh server: {exc!r}\n".encode())
        process.exit(255)


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("ssh")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(d / "id_ed25519"))
    (d / "id_ed25519").chmod(0o600)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict = {}

    async def start():
        server = await asyncssh.create_server(
            asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()),
            process_factory=_handle, encoding=None)
        state["server"] = server
        state["port"] = server.sockets[0].getsockname()[1]
        started.set()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "SSH server did not start"
    yield {"port": state["port"], "key": d / "id_ed25519", "dir": d}

    async def stop():
        state["server"].close()
        await state["server"].wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _target(srv, **kw) -> Target:
    fields = {"name": "loopback_pi", "arch": "aarch64", "ssh_host": "127.0.0.1", "ssh_port": srv["port"],
              "ssh_user": "pi", "ssh_key": str(srv["key"]), "remote_python": sys.executable,
              "remote_dir": str(srv["dir"] / "remote"),
              "ssh_options": ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]}
    return Target(**{**fields, **kw})


@pytest.mark.slow
def test_profile_over_ssh_gives_the_same_statistics(ssh_server, tmp_path):
    models = {"a": synthetic_mlp(tmp_path / "a.onnx"),
              "b": synthetic_mlp(tmp_path / "ext" / "b.onnx", extra_ops=20, external_data=True)}
    t = _target(ssh_server)
    res = profile_models(models, t, runs=30, warmup=2, burst=10)
    local = profile_models({"a": models["a"]}, Target(name="local", arch="any"), runs=10, warmup=1)["a"]
    assert set(res) == {"a", "b"}
    for s in res.values():
        assert s["remote"] == "pi@127.0.0.1" and s["target"] == "loopback_pi"
        assert s["runs"] == 30 and len(s["samples_ms"]) == 30 and s["p50_ms"] > 0
        assert set(local) - {"remote", "target"} <= set(s)  # same statistics as a local run
        assert s["ops"]["top"]
    assert res["a"]["pid"] != res["b"]["pid"]
    leftovers = list((ssh_server["dir"] / "remote").glob("*")) if (ssh_server["dir"] / "remote").exists() else []
    assert leftovers == [], "the remote working directory must be removed"


@pytest.mark.slow
def test_remote_errors_are_user_errors(ssh_server, tmp_path):
    model = synthetic_mlp(tmp_path / "a.onnx")
    with pytest.raises(UserError, match="cannot reach") as e:
        profile_models({"a": model}, _target(ssh_server, ssh_key=str(tmp_path / "wrong_key"),
                                             ssh_options=[*_target(ssh_server).ssh_options, "IdentityAgent=none"]))
    assert "ssh_host" in (e.value.where or "")
    with pytest.raises(UserError, match="profiling script failed") as e:
        profile_models({"a": model}, _target(ssh_server, remote_python="/nonexistent/python3"))
    assert "onnxruntime" in e.value.fix
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="failed"):
        profile_models({"junk": junk}, _target(ssh_server), runs=5)
