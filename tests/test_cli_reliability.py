"""The `inert` command misused and broken on purpose: each case one clear failure, nothing lost.

Concurrent pad encodes, short writes to non-blocking pipes, readers that go away, sizes no
disk can hold, blobs damaged in the store, binary bound for a terminal, wrong and damaged
inputs, and signals at any moment. Every case runs through the installed entry point, as a
user would meet it, and waits for observable states (files, signal masks, mapped libraries)
instead of sleeping.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from inert.keyfile import parse_key

CORPUS = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()
INTERRUPTED = b"inert: error: interrupted; no output was written\n"


def err(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode()


def wait_for(condition: Callable[[], object], what: str, deadline: float = 60.0) -> object:
    """Poll until condition() is true; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if value := condition():
            return value
        time.sleep(0.002)
    pytest.fail(f"timed out waiting for {what}")


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".inert-tmp")]


def no_internal_error(result: subprocess.CompletedProcess[bytes]) -> None:
    assert "internal error" not in err(result) and "Traceback" not in err(result), err(result)


# ---------------------------------------------------------------------------- 1. the two-time pad


def test_sixteen_concurrent_pad_encodes_never_share_pad_bytes(
    inert_exe: Path, inert, tmp_path: Path
) -> None:
    # 16 works of 1,000 bytes in a 64 KiB pad: unlocked, two encodes that read the record at
    # the same time overlap with probability ~3 % per pair (~4 overlapping pairs of 120)
    assert inert("pad", "new", "p.pad", "-s", "64K", "-q").returncode == 0
    for k in range(16):
        (tmp_path / f"w{k}").write_bytes(os.urandom(1000))
    procs = [
        subprocess.Popen(
            [str(inert_exe), "encode", f"w{k}", "-b", "p.pad", "-o", f"k{k}", "-q"],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
        )
        for k in range(16)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    ranges = []
    for k in range(16):
        header, _ = parse_key((tmp_path / f"k{k}").read_bytes())
        ranges.append((header.param("offset"), header.work_length))
    for i, (a, n) in enumerate(ranges):
        for b, m in ranges[i + 1 :]:
            assert a + n <= b or b + m <= a, f"pad ranges {a}+{n} and {b}+{m} overlap"
    info = inert("blob", "info", "p.pad").stdout.decode()
    assert "16000 bytes by 16 keys" in info


# ---------------------------------------------------------------------------- 2. short writes


def read_from_nonblocking_pipe(
    args: list[str], cwd: Path, env: dict[str, str]
) -> tuple[int, bytes]:
    """Run inert with stdout on a pipe whose write end is O_NONBLOCK; read it all."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    proc = subprocess.Popen(args, stdout=w, stderr=subprocess.DEVNULL, cwd=cwd, env=env)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as reader:  # the writer's 4 MiB writes meet a 64 KiB pipe
        while chunk := reader.read(4096):
            chunks.append(chunk)
    return proc.wait(timeout=120), b"".join(chunks)


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
def test_every_byte_reaches_a_nonblocking_stdout(
    inert, inert_exe: Path, tmp_path: Path, unbuffered: str
) -> None:
    work = os.urandom(60_000) + CORPUS * 10  # > 64 KiB, the pipe's capacity
    (tmp_path / "w").write_bytes(work)
    pad_path = tmp_path / "big.pad"
    assert inert("pad", "new", pad_path, "-s", "1M").returncode == 0
    assert inert("encode", "w", "-b", pad_path, "-o", "w.key").returncode == 0
    assert inert("split", "w", "-n", "2").returncode == 0
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    exe = str(inert_exe)
    for args, expected in [
        ([exe, "decode", "w.key", "-b", str(pad_path), "-o", "-"], work),
        ([exe, "join", "w.1of2.inert", "w.2of2.inert", "-o", "-"], work),
        ([exe, "encode", "w", "-b", str(pad_path), "-o", "-"], None),
        ([exe, "pad", "new", "-", "-s", "200000", "-q"], None),
    ]:
        code, out = read_from_nonblocking_pipe(args, tmp_path, env)
        assert code == 0, args
        if expected is not None:
            assert out == expected, (args[1], len(out))
        elif args[1] == "encode":
            assert len(out) == len(parse_key(out)[0].to_bytes()) + len(work)
        else:
            assert len(out) == 200_000


# ---------------------------------------------------------------------------- 3. sizes


@pytest.mark.parametrize(
    ("size", "code", "said"),
    [
        ("1000T", 1, "inert: error: not enough space for"),
        ("8388608T", 2, "inert: error: Invalid value for '-s' / '--size': '8388608T' is larger"),
    ],
)
@pytest.mark.parametrize("path", ["p.pad", "-"])
def test_a_pad_no_disk_can_hold_is_refused_before_writing(
    inert, tmp_path: Path, size: str, code: int, said: str, path: str
) -> None:
    result = inert("pad", "new", path, "--size", size)
    assert result.returncode == code
    assert err(result).startswith(said), err(result)
    assert result.stdout == b"" and not (tmp_path / "p.pad").exists() and not leftovers(tmp_path)


# ---------------------------------------------------------------------------- 4. stored blobs


def make_writable_and(path: Path, change: Callable[[bytearray], None]) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    change(data)
    path.write_bytes(bytes(data))


def append_byte(data: bytearray) -> None:
    data.append(0)


def flip_first_byte(data: bytearray) -> None:
    data[0] ^= 1


@pytest.mark.parametrize("change", [append_byte, flip_first_byte])
def test_a_pad_damaged_in_the_store_is_named(
    inert, tmp_path: Path, pad_path: Path, change: Callable[[bytearray], None]
) -> None:
    (tmp_path / "w").write_bytes(os.urandom(3000))
    assert inert("encode", "w", "-b", pad_path, "-o", "k", "--offset", "0").returncode == 0
    added = inert("blob", "add", pad_path).stdout.decode()
    stored = Path(added.split(": ", 1)[1].strip())
    make_writable_and(stored, change)
    result = inert("decode", "k", "-o", "out")
    assert result.returncode == 1
    assert f"blob {stored.name[:16]} in the store is damaged" in err(result), err(result)
    assert "key" not in err(result).splitlines()[0]  # the blob is at fault, not the key
    assert not (tmp_path / "out").exists()


def test_a_model_blob_damaged_in_the_store_or_on_disk_is_named(
    inert, tmp_path: Path, tiny_blob: Path
) -> None:
    (tmp_path / "w.txt").write_bytes(CORPUS[:500])
    assert inert("encode", "w.txt", "-b", tiny_blob, "--model-key", "-o", "k").returncode == 0
    stored = Path(inert("blob", "add", tiny_blob).stdout.decode().split(": ", 1)[1].strip())
    make_writable_and(stored, append_byte)
    in_store = inert("decode", "k", "-o", "out")
    assert in_store.returncode == 1 and "in the store is damaged" in err(in_store)
    (tmp_path / "cut.blob").write_bytes(tiny_blob.read_bytes()[:-100])  # not in the store
    for args in (["encode", "w.txt", "-b", "cut.blob", "-o", "k2"], ["imagine", "-b", "cut.blob"]):
        result = inert(*args)
        assert result.returncode == 1 and "model blob cut.blob is damaged" in err(result)
        no_internal_error(result)


# ---------------------------------------------------------------------------- 5. terminals


def run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, bytes, bytes]:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, stdout=terminal, stderr=subprocess.PIPE)
    os.close(terminal)
    shown = bytearray()
    reader = threading.Thread(target=lambda: _drain(controller, shown))
    reader.start()
    _, stderr = proc.communicate(timeout=60)
    reader.join(timeout=60)
    os.close(controller)
    return proc.returncode, bytes(shown), stderr


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            return
        if not chunk:
            return
        into.extend(chunk)


def test_a_binary_work_is_not_written_to_a_terminal(
    inert, inert_exe: Path, tmp_path: Path, pad_path: Path
) -> None:
    binary, text = os.urandom(2000), b"plain words for a person to read\n"
    for name, work in (("bin", binary), ("txt", text)):
        (tmp_path / name).write_bytes(work)
        assert inert("encode", name, "-b", pad_path, "-o", f"{name}.key").returncode == 0
        assert inert("split", name, "-n", "2").returncode == 0
    exe, pad = str(inert_exe), str(pad_path)
    for args in (
        [exe, "decode", "bin.key", "-b", pad, "-o", "-"],
        [exe, "join", "bin.1of2.inert", "bin.2of2.inert", "-o", "-"],
    ):
        code, shown, stderr = run_on_a_terminal(args, tmp_path)
        assert code == 1 and b"refusing to write binary data to a terminal" in stderr
        assert shown == b""
        code, shown, _ = run_on_a_terminal([*args, "--force"], tmp_path)
        assert code == 0 and len(shown) >= len(binary)
    for args in (
        [exe, "decode", "txt.key", "-b", pad, "-o", "-"],
        [exe, "join", "txt.1of2.inert", "txt.2of2.inert", "-o", "-"],
    ):
        code, shown, stderr = run_on_a_terminal(args, tmp_path)
        assert code == 0, stderr
        assert shown.replace(b"\r\n", b"\n") == text  # the terminal turns \n into \r\n


# ---------------------------------------------------------------------------- 6. wrong inputs


def test_a_model_key_whose_code_is_invalid_is_called_damaged(inert, tmp_path: Path, tiny) -> None:
    from inert import codec
    from inert.errors import ChecksumError

    work = CORPUS[:120]
    settings = codec.CodecSettings(segment_tokens=8, codec=2)
    key = bytearray(codec.model_key(work, tiny, settings)[0])
    key[732 // 8] ^= 1 << (732 % 8)  # a flip constriction's decoder asserts on
    with pytest.raises(ChecksumError, match="does not decode"):
        codec.decode_work(bytes(key), tiny)
    # inert's own coder decodes every code: its damage is the checksum's to find
    flipped = bytearray(codec.model_key(work, tiny, codec.CodecSettings(segment_tokens=8))[0])
    flipped[-5] ^= 0x10
    with pytest.raises(ChecksumError, match="the key is damaged"):
        codec.decode_work(bytes(flipped), tiny)
    (tmp_path / "k").write_bytes(bytes(key))
    result = inert("decode", "k", "-b", tiny.blob.path, "-o", "out")
    assert result.returncode == 1 and "the key is damaged" in err(result)
    no_internal_error(result)


def test_join_given_keys_that_are_not_shares(
    inert, tmp_path: Path, pad_path: Path, tiny_blob: Path
) -> None:
    (tmp_path / "w.txt").write_bytes(CORPUS[:300])
    inert("encode", "w.txt", "-b", tiny_blob, "--model-key", "-o", "model.key")
    inert("encode", "w.txt", "-b", pad_path, "-o", "pad.key")
    result = inert("join", "model.key", "pad.key", "-o", "out")
    assert result.returncode == 1
    assert "model.key is a model key, not a share" in err(result)
    no_internal_error(result)


def test_imagine_takes_a_prompt_of_any_bytes(inert, tiny_blob: Path) -> None:
    result = inert(
        "imagine",
        "-b",
        tiny_blob,
        "-n",
        "5",
        "-s",
        "1",
        "-p",
        b"\xff\xfe".decode("utf-8", "surrogateescape"),
    )
    assert result.returncode == 0, err(result)
    assert result.stdout.startswith(b"\xff\xfe")


def test_imagine_decodes_every_seed(tiny) -> None:
    from inert import codec

    for seed in range(70, 80):  # seed 75's bits are no code word of constriction's coder
        assert len(codec.imagine(tiny, 40, seed)) > 0


# ---------------------------------------------------------------------------- 7. broken pipes


def test_a_reader_that_goes_away_ends_inert_silently_with_141(
    inert, inert_exe: Path, tmp_path: Path
) -> None:
    work = os.urandom(200_000)
    (tmp_path / "w").write_bytes(work)
    pad_path = tmp_path / "big.pad"
    assert inert("pad", "new", pad_path, "-s", "1M").returncode == 0
    assert inert("encode", "w", "-b", pad_path, "-o", "k").returncode == 0
    proc = subprocess.Popen(
        [str(inert_exe), "decode", "k", "-b", str(pad_path), "-o", "-"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(10) == work[:10]  # `| head -c 10`
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""


# ---------------------------------------------------------------------------- 8. signals


def sigterm_caught(pid: int) -> bool:
    """Whether the process has installed its own SIGTERM handler (inert's first act)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(
        next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16
    )
    return bool(caught >> (signal.SIGTERM - 1) & 1)


def numpy_loaded(pid: int) -> bool:
    try:
        return "_multiarray_umath" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_ctrl_c_while_inert_starts_up_is_one_line(inert_exe: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(inert_exe), "blob", "list"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    # numpy is mapped while the CLI's modules are still being imported
    wait_for(lambda: numpy_loaded(proc.pid) or proc.poll() is not None, "numpy's import")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr == INTERRUPTED


@pytest.mark.parametrize(
    ("sent", "code", "said"),
    [(signal.SIGINT, 130, b"interrupted"), (signal.SIGTERM, 143, b"terminated")],
    ids=["ctrl-c", "kill"],
)
def test_a_signal_while_the_model_runs_leaves_nothing(
    tmp_path: Path, tiny_blob: Path, inert_exe: Path, sent: int, code: int, said: bytes
) -> None:
    (tmp_path / "long.txt").write_bytes(CORPUS * 300)
    proc = subprocess.Popen(
        [str(inert_exe), "encode", "long.txt", "-b", str(tiny_blob), "-o", "k"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: leftovers(tmp_path), "the key's temporary file")  # the model is running
    proc.send_signal(sent)
    proc.send_signal(sent)  # a second one while it cleans up changes nothing
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stderr == b"inert: error: " + said + b"; no output was written\n"
    assert not (tmp_path / "k").exists() and not leftovers(tmp_path)


# ---------------------------------------------------------------------------- 9. smaller things


def test_a_file_that_is_no_pad_is_refused_as_one(inert, tmp_path: Path, pad_path: Path) -> None:
    (tmp_path / "w").write_bytes(b"a work")
    (tmp_path / "notes.txt").write_bytes(CORPUS)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "zeros").write_bytes(bytes(100_000))
    inert("encode", "w", "-b", pad_path, "-o", "a.key")
    for blob, said in [
        ("notes.txt", "is neither a model blob nor random bytes (it is text)"),
        ("zeros", "is neither a model blob nor random bytes (it compresses)"),
        ("empty", "is empty"),
        ("a.key", "is an inert key, not a blob"),
    ]:
        for args in (["encode", "w", "-b", blob, "-o", "out"], ["blob", "add", blob]):
            result = inert(*args)
            assert result.returncode == 1 and said in err(result), (args, err(result))
            assert not (tmp_path / "out").exists()
    assert inert("blob", "list").stderr.decode().startswith("the store")  # nothing was added


def test_an_output_that_is_an_input_is_refused(inert, tmp_path: Path, pad_path: Path) -> None:
    before = pad_path.read_bytes()
    (tmp_path / "w").write_bytes(b"a work")
    for args in (
        ["encode", "w", "-b", pad_path, "-o", pad_path, "--force"],
        ["encode", "w", "-b", pad_path, "-o", "w", "--force"],
    ):
        result = inert(*args)
        assert result.returncode == 1 and "is also an input" in err(result)
    assert pad_path.read_bytes() == before and (tmp_path / "w").read_bytes() == b"a work"
    inert("encode", "w", "-b", pad_path, "-o", "k")
    result = inert("decode", "k", "-b", pad_path, "-o", "k", "--force")
    assert result.returncode == 1 and "is also an input" in err(result)


def test_out_of_range_numbers_are_usage_errors(inert, tmp_path: Path, tiny_blob: Path) -> None:
    (tmp_path / "w.txt").write_bytes(CORPUS[:200])
    for args in (
        ["explain", "w.txt", "-b", tiny_blob, "--recall-bits", "-1"],
        ["explain", "w.txt", "-b", tiny_blob, "--recall-bits", "nan"],
        ["explain", "w.txt", "-b", tiny_blob, "--segment-tokens", "100000"],
        ["encode", "w.txt", "-b", tiny_blob, "--segment-tokens", "100000"],
    ):
        result = inert(*args)
        assert result.returncode == 2, (args, err(result))
        assert err(result).startswith("inert: error:") and "inert: hint:" in err(result)
    assert "context of 64 tokens" in err(result)


def test_bare_inert_prints_its_help(inert) -> None:
    for args in ([], ["pad"], ["blob"]):
        result = inert(*args)
        assert result.returncode == 0, args
        assert result.stdout.decode().startswith("Usage: inert") and err(result) == ""


def test_counts_are_spelled_right(inert, tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_bytes(CORPUS[:100])
    result = inert("encode", "w.txt")  # the default blob: 512-token segments
    assert " in 1 segment," in err(result), err(result)


def test_explain_says_when_encode_would_store_the_work(
    inert, tmp_path: Path, tiny_blob: Path
) -> None:
    import json

    (tmp_path / "noise").write_bytes(os.urandom(3000))
    result = inert("explain", "noise", "-b", tiny_blob, "--json", "l.json")
    assert result.returncode == 0, err(result)
    assert "inert encode stores these 3,000 bytes as is" in result.stdout.decode()
    assert json.loads((tmp_path / "l.json").read_text())["totals"]["stored"] is True
    (tmp_path / "w.txt").write_bytes(CORPUS)
    result = inert("explain", "w.txt", "-b", tiny_blob)
    assert "as is" not in result.stdout.decode()


def test_a_backend_or_device_that_is_not_there_is_named(inert, tmp_path: Path) -> None:
    """--device bogus, or cuda where there is none: one clear error, no key written."""
    pytest.importorskip("torch")
    import torch

    (tmp_path / "w.txt").write_bytes(b"a work for the torch backend\n")
    devices = ["bogus"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        result = inert("encode", "w.txt", "-o", "w.key", "--backend", "torch", "--device", device)
        message = result.stderr.decode()
        assert result.returncode == 1 and "device" in message, message
        assert "internal error" not in message and "Traceback" not in message, message
        assert not (tmp_path / "w.key").exists()
