"""The `inert` command, run through its installed entry point as a user would."""

from __future__ import annotations

import os
import pty
import resource
import signal
import subprocess
from pathlib import Path

import pytest
from test_cli_reliability import leftovers, wait_for

from inert.keyfile import parse_key

WORK = "Ünïcode, NUL \x00 and\r\nmixed newlines\n".encode() + bytes(range(256))


@pytest.fixture
def work_file(tmp_path: Path) -> Path:
    path = tmp_path / "work.bin"
    path.write_bytes(WORK)
    return path


def err(result) -> str:
    return result.stderr.decode()


def test_pad_new_encode_decode_round_trip(inert, tmp_path: Path, work_file: Path) -> None:
    assert inert("pad", "new", "p.pad", "--size", "64K").returncode == 0
    assert (tmp_path / "p.pad").stat().st_size == 64 << 10
    assert (tmp_path / "p.pad").stat().st_mode & 0o077 == 0  # a pad is a secret: owner only
    result = inert("encode", "work.bin", "--blob", "p.pad")
    assert result.returncode == 0, err(result)
    key = (tmp_path / "work.bin.inert").read_bytes()
    assert len(key) - len(WORK) in (19, 20, 21)  # header: offset in a 64 KiB pad takes 1-3 bytes
    work_file.unlink()
    result = inert("decode", "work.bin.inert", "-b", "p.pad")
    assert result.returncode == 0, err(result)
    assert work_file.read_bytes() == WORK


def test_two_encodes_never_share_pad_bytes(inert, tmp_path: Path, work_file: Path) -> None:
    inert("pad", "new", "p.pad", "-s", "10K")
    ranges = []
    for name in ("a.key", "b.key", "c.key"):
        assert inert("encode", "work.bin", "-b", "p.pad", "-o", name).returncode == 0
        header, _ = parse_key((tmp_path / name).read_bytes())
        ranges.append(range(header.param("offset"), header.param("offset") + len(WORK)))
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            assert not set(a) & set(b)


def test_exhausted_pad_is_refused(inert, tmp_path: Path, work_file: Path) -> None:
    inert("pad", "new", "p.pad", "-s", str(len(WORK) + 100))
    first = inert("encode", "work.bin", "-b", "p.pad", "-o", "a.key")
    assert first.returncode == 0
    assert "would overlap this one with probability" in err(first)  # small pad: a warning
    second = inert("encode", "work.bin", "-b", "p.pad", "-o", "b.key")
    assert second.returncode == 1
    assert f"no unused range of {len(WORK)} bytes" in err(second)
    assert not (tmp_path / "b.key").exists()


def test_explicit_offset_reuse_warns(inert, work_file: Path) -> None:
    inert("pad", "new", "p.pad", "-s", "1M")
    assert (
        inert("encode", "work.bin", "-b", "p.pad", "-o", "a.key", "--offset", "0").returncode == 0
    )
    result = inert("encode", "work.bin", "-b", "p.pad", "-o", "b.key", "--offset", "100")
    assert result.returncode == 0
    assert "already used for another key" in err(result)


def test_stdin_to_stdout_and_back(inert, pad_path: Path) -> None:
    encoded = inert("encode", "-", "-b", pad_path, stdin=WORK)
    assert encoded.returncode == 0, err(encoded)
    decoded = inert("decode", "-", "-b", pad_path, stdin=encoded.stdout)
    assert decoded.returncode == 0, err(decoded)
    assert decoded.stdout == WORK


def test_decode_finds_the_blob_in_the_store(inert, pad_path: Path, work_file: Path) -> None:
    inert("encode", "work.bin", "-b", pad_path, "-o", "k")
    missing = inert("decode", "k", "-o", "out")
    assert missing.returncode == 1
    assert "is not in the store" in err(missing) and "inert blob add" in err(missing)
    assert inert("blob", "add", pad_path).returncode == 0
    assert inert("decode", "k", "-o", "out").returncode == 0
    listing = inert("blob", "list").stdout.decode()
    assert parse_key(Path(work_file.parent / "k").read_bytes())[0].blob_id_hex in listing


def test_blob_info_by_path_and_by_id(inert, pad_path: Path) -> None:
    added = inert("blob", "add", pad_path).stdout.decode()
    blob_id = added.split()[0]
    for ref in (str(pad_path), blob_id):
        shown = inert("blob", "info", ref)
        assert shown.returncode == 0, err(shown)
        assert "pad" in shown.stdout.decode() and blob_id in shown.stdout.decode()
        assert "65536 bytes" in shown.stdout.decode()


def test_wrong_blob_fails_and_writes_nothing(
    inert, tmp_path: Path, pad_path: Path, work_file: Path
) -> None:
    inert("encode", "work.bin", "-b", pad_path, "-o", "k")
    inert("pad", "new", "other.pad", "-s", "64K")
    result = inert("decode", "k", "-b", "other.pad", "-o", "out")
    assert result.returncode == 1
    assert "inert: error: wrong blob" in err(result)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))  # no temporary file left behind either


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda key: key[:-1], "truncated key"),
        (lambda key: key[:10], "truncated key"),
        (lambda key: key + b"\n", "trailing garbage"),
        (lambda key: key[:-5] + bytes([key[-5] ^ 4]) + key[-4:], "checksum mismatch"),
        (lambda key: b"not a key at all", "not an inert key"),
    ],
)
def test_damaged_key_fails_and_writes_nothing(
    inert, tmp_path, pad_path, work_file, damage, message
) -> None:
    inert("encode", "work.bin", "-b", pad_path, "-o", "k")
    (tmp_path / "k").write_bytes(damage((tmp_path / "k").read_bytes()))
    result = inert("decode", "k", "-b", pad_path, "-o", "out")
    assert result.returncode == 1
    assert message in err(result)
    assert "Traceback" not in err(result)
    assert not (tmp_path / "out").exists()


def test_damaged_key_to_stdout_emits_nothing(
    inert, tmp_path: Path, pad_path: Path, work_file: Path
) -> None:
    inert("encode", "work.bin", "-b", pad_path, "-o", "k")
    key = bytearray((tmp_path / "k").read_bytes())
    key[-1] ^= 1
    result = inert("decode", "-", "-b", pad_path, stdin=bytes(key))
    assert result.returncode == 1
    assert result.stdout == b""


def test_existing_output_is_kept_without_force(
    inert, tmp_path: Path, pad_path: Path, work_file: Path
) -> None:
    (tmp_path / "work.bin.inert").write_bytes(b"precious")
    result = inert("encode", "work.bin", "-b", pad_path)
    assert result.returncode == 1
    assert "already exists" in err(result) and "--force" in err(result)
    assert (tmp_path / "work.bin.inert").read_bytes() == b"precious"
    assert inert("encode", "work.bin", "-b", pad_path, "--force").returncode == 0
    assert (tmp_path / "work.bin.inert").read_bytes() != b"precious"


def test_split_and_join(inert, tmp_path: Path, work_file: Path) -> None:
    assert inert("split", "work.bin", "-n", "3").returncode == 0
    names = [f"work.bin.{i}of3.inert" for i in (1, 2, 3)]
    assert all((tmp_path / n).exists() for n in names)
    result = inert("join", *reversed(names), "-o", "joined")
    assert result.returncode == 0, err(result)
    assert (tmp_path / "joined").read_bytes() == WORK
    partial = inert("join", *names[:2], "-o", "partial")
    assert partial.returncode == 1 and "missing share 3 of 3" in err(partial)
    assert not (tmp_path / "partial").exists()
    share = inert("decode", names[0], "-o", "x")
    assert share.returncode == 1 and "inert join" in err(share)
    sizes = [(tmp_path / n).stat().st_size for n in names]
    assert max(sizes[:2]) < 64 < len(WORK) < sizes[2]  # two seeds and one work-sized share


def test_split_full_writes_every_share_at_the_works_size(
    inert, tmp_path: Path, work_file: Path
) -> None:
    assert inert("split", "work.bin", "-n", "2", "--full", "-o", "f").returncode == 0
    names = ["f.1of2.inert", "f.2of2.inert"]
    assert len({(tmp_path / n).stat().st_size for n in names}) == 1
    assert inert("join", *names, "-o", "joined").returncode == 0
    assert (tmp_path / "joined").read_bytes() == WORK


def test_usage_errors_exit_2_with_a_hint(inert) -> None:
    for args in (
        ["encode"],
        ["split", "x", "-n", "1"],
        ["pad", "new", "p", "-s", "lots"],
        ["frobnicate"],
    ):
        result = inert(*args)
        assert result.returncode == 2, args
        assert err(result).startswith("inert: error:")
        assert "inert: hint:" in err(result)


def test_unreadable_input_is_one_clear_line(inert, pad_path: Path) -> None:
    result = inert("encode", "no-such-file", "-b", pad_path)
    assert result.returncode == 1
    assert (
        err(result).strip().splitlines()[0]
        == "inert: error: cannot read the work: No such file or directory"
    )


def test_default_blob_needs_no_flag(inert, tmp_path: Path) -> None:
    text = b"The default blob ships with inert, so a fresh install can encode text at once.\n"
    (tmp_path / "notes.txt").write_bytes(text)
    encoded = inert("encode", "notes.txt")
    assert encoded.returncode == 0, err(encoded)
    assert len((tmp_path / "notes.txt.inert").read_bytes()) < len(text)
    (tmp_path / "notes.txt").unlink()
    decoded = inert("decode", "notes.txt.inert")  # the key names the default blob by id
    assert decoded.returncode == 0, err(decoded)
    assert (tmp_path / "notes.txt").read_bytes() == text
    info = inert("blob", "info", "default")
    assert info.returncode == 0 and "model" in info.stdout.decode()


# every default blob inert shipped before the present one (docs/DEFAULT_BLOB.md)
@pytest.mark.parametrize("earlier_id", ["385b71b07c0e8469", "fca6def395830456"])
def test_keys_of_an_earlier_default_blob_still_decode(
    inert, tmp_path: Path, earlier_id: str
) -> None:
    import inert as package

    earlier = Path(package.__file__).parent / "blobs" / f"{earlier_id}.blob"
    assert earlier.is_file()
    text = b"A key made before the default blob changed still decodes with no flag.\n"
    (tmp_path / "old.txt").write_bytes(text)
    assert inert("encode", "old.txt", "-b", earlier, "-o", "old.inert").returncode == 0
    decoded = inert("decode", "old.inert", "-o", "back.txt")  # empty store, no --blob
    assert decoded.returncode == 0, err(decoded)
    assert (tmp_path / "back.txt").read_bytes() == text


def test_binary_work_is_stored_not_enlarged(inert, tmp_path: Path) -> None:
    data = os.urandom(5000)
    (tmp_path / "noise.bin").write_bytes(data)
    encoded = inert("encode", "noise.bin")
    assert encoded.returncode == 0 and "stored as is" in err(encoded)
    assert len((tmp_path / "noise.bin.inert").read_bytes()) <= len(data) + 20
    assert inert("decode", "noise.bin.inert", "-o", "back").returncode == 0
    assert (tmp_path / "back").read_bytes() == data


def test_help_shows_a_worked_example(inert) -> None:
    result = inert("--help")
    assert result.returncode == 0
    assert "inert encode notes.txt --blob secret.pad" in result.stdout.decode()
    assert "two-time pad" in result.stdout.decode()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_permission_denied_is_reported(inert, tmp_path: Path, pad_path: Path) -> None:
    secret = tmp_path / "locked"
    secret.write_bytes(b"x")
    secret.chmod(0)
    result = inert("encode", "locked", "-b", pad_path)
    assert result.returncode == 1 and "Permission denied" in err(result)


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".inert-tmp")]


def test_write_failure_is_one_line_leaves_nothing_and_gives_the_pad_range_back(
    inert, tmp_path: Path, pad_path: Path, inert_exe: Path
) -> None:

    (tmp_path / "big").write_bytes(os.urandom(40_000))

    def limit_file_size() -> None:  # the kernel refuses writes past 16 KiB: EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, 16_384))

    result = subprocess.run(
        [str(inert_exe), "encode", "big", "-b", str(pad_path), "-o", "k"],
        cwd=tmp_path,
        capture_output=True,
        preexec_fn=limit_file_size,
        timeout=60,
    )
    assert result.returncode == 1
    assert "inert: error: cannot write k: File too large\n" in err(result)
    assert not (tmp_path / "k").exists() and no_leftovers(tmp_path)
    # the key never left: its pad range is free again
    assert "0 bytes by 0 keys" in inert("blob", "info", pad_path).stdout.decode()
    assert inert("encode", "big", "-b", pad_path, "-o", "k").returncode == 0
    assert "40000 bytes by 1 keys" in inert("blob", "info", pad_path).stdout.decode()


def test_explain_stopped_midway_leaves_no_output_and_no_helper_process(
    tmp_path: Path, tiny_blob: Path, inert_exe: Path
) -> None:
    work = tmp_path / "long-work.txt"
    work.write_bytes((Path(__file__).parent / "golden" / "corpus.txt").read_bytes() * 400)
    outputs = ["--json", "j.json", "--html", "h.html", "--plot", "p.png"]
    proc = subprocess.Popen(
        [str(inert_exe), "explain", str(work), "-b", str(tiny_blob), *outputs],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # the outputs exist as temporary files and the helpers are forked: the model is running
    wait_for(
        lambda: len(leftovers(tmp_path)) == 3 and len(helpers_of(proc.pid)) == 2, "the helpers"
    )
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert not {"j.json", "h.html", "p.png"} & {p.name for p in tmp_path.iterdir()}
    assert no_leftovers(tmp_path)
    wait_for(lambda: not running_with(str(work).encode()), "the helpers' end")  # none outlives it


def helpers_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def running_with(argument: bytes) -> list[str]:
    """Processes whose command line holds `argument` (forked children carry the parent's)."""
    return [pid for pid in os.listdir("/proc") if pid.isdigit() and argument in _cmdline(pid)]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_refuses_binary_on_a_terminal(
    tmp_path: Path, pad_path: Path, work_file: Path, inert_exe: Path
) -> None:

    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [str(inert_exe), "encode", "work.bin", "-b", str(pad_path), "-o", "-"],
            cwd=tmp_path,
            stdout=terminal,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 1
    assert b"refusing to write binary data to a terminal" in result.stderr


def test_decoded_work_gets_normal_permissions(
    inert, tmp_path: Path, pad_path: Path, work_file: Path
) -> None:
    inert("encode", "work.bin", "-b", pad_path, "-o", "k")
    inert("decode", "k", "-b", pad_path, "-o", "out")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o666 & ~umask


def test_model_encode_decode_imagine_and_info(inert, tmp_path: Path, tiny_blob: Path) -> None:
    work = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes()
    (tmp_path / "w.txt").write_bytes(work)
    encoded = inert("encode", "w.txt", "-b", tiny_blob, "--segment-tokens", "32")
    assert encoded.returncode == 0, err(encoded)
    assert "bits per byte" in err(encoded)
    assert len((tmp_path / "w.txt.inert").read_bytes()) < len(work)
    assert inert("blob", "add", tiny_blob).returncode == 0
    decoded = inert("decode", "w.txt.inert", "-o", "back.txt")  # blob found in the store
    assert decoded.returncode == 0, err(decoded)
    assert (tmp_path / "back.txt").read_bytes() == work
    imagined = inert("imagine", "-b", tiny_blob, "-n", "20", "-s", "5", "-p", "It was")
    assert imagined.returncode == 0 and imagined.stdout.startswith(b"It was")
    info = inert("blob", "info", tiny_blob).stdout.decode()
    assert "model" in info and "parameters" in info and "2 layers" in info
    offset = inert("encode", "w.txt", "-b", tiny_blob, "--offset", "5", "-o", "x")
    assert offset.returncode == 2 and "pad blobs only" in err(offset)


def test_thread_count_never_changes_a_key(inert, tmp_path: Path, tiny_blob: Path) -> None:
    (tmp_path / "w.txt").write_bytes(
        (Path(__file__).parent / "golden" / "corpus.txt").read_bytes() * 3
    )
    keys = []
    for threads in ("1", "3"):
        out = f"k{threads}"
        result = inert(
            "encode", "w.txt", "-b", tiny_blob, "--segment-tokens", "16", "-T", threads, "-o", out
        )
        assert result.returncode == 0, err(result)
        keys.append((tmp_path / out).read_bytes())
        decoded = inert(
            "decode", out, "-b", tiny_blob, "-T", "2" if threads == "1" else "1", "-o", f"{out}.txt"
        )
        assert (
            decoded.returncode == 0
            and (tmp_path / f"{out}.txt").read_bytes() == (tmp_path / "w.txt").read_bytes()
        )
    assert keys[0] == keys[1]


def test_model_key_with_the_wrong_blob_writes_nothing(
    inert, tmp_path: Path, tiny_blob: Path, pad_path: Path
) -> None:
    (tmp_path / "w.txt").write_bytes((Path(__file__).parent / "golden" / "corpus.txt").read_bytes())
    inert("encode", "w.txt", "-b", tiny_blob, "--model-key", "-o", "k")
    result = inert("decode", "k", "-b", pad_path, "-o", "out")
    assert result.returncode == 1 and "wrong blob" in err(result)
    assert not (tmp_path / "out").exists()


def test_explain_agrees_with_encode(inert, tmp_path: Path, tiny_blob: Path) -> None:
    import json

    from inert.keyfile import parse_key

    (tmp_path / "w.txt").write_bytes((Path(__file__).parent / "golden" / "corpus.txt").read_bytes())
    result = inert("explain", "w.txt", "-b", tiny_blob, "--json", "ledger.json", "-r", "classical")
    assert result.returncode == 0, err(result)
    assert "held by the blob" in result.stdout.decode()
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert inert("encode", "w.txt", "-b", tiny_blob, "--model-key", "-o", "k").returncode == 0
    _, payload = parse_key((tmp_path / "k").read_bytes())
    assert abs(ledger["totals"]["key_bits"] - 8 * len(payload)) < 1e-6
    assert ledger["reference"]["name"].startswith("classical:")
    assert len(ledger["tokens"]) == ledger["totals"]["tokens"]
    # every codec, with the model alone (1, 3) or not (2): the key and the ledger agree too
    for version in "123":
        k, j = f"k{version}", f"l{version}.json"
        args = ("-b", tiny_blob, "--codec", version)
        assert inert("encode", "w.txt", *args, "--model-key", "-o", k).returncode == 0
        assert inert("explain", "w.txt", *args, "--json", j).returncode == 0
        _, payload1 = parse_key((tmp_path / k).read_bytes())
        ledger1 = json.loads((tmp_path / j).read_text())
        assert abs(ledger1["totals"]["key_bits"] - 8 * len(payload1)) < 1e-6
        assert (ledger1["totals"]["repeat_bits"] == 0) == (version != "2")
        assert len(payload1) != len(payload)
    assert "".join(t["text"] for t in ledger["tokens"]) == (tmp_path / "w.txt").read_text()


def test_explain_writes_the_same_outputs_with_and_without_helper_processes(
    inert, tmp_path: Path, tiny_blob: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked helpers (Linux) and the in-turn fallback (elsewhere) give identical files."""
    from inert import aside
    from inert.cli import main

    work = (Path(__file__).parent / "golden" / "corpus.txt").read_bytes() * 3
    (tmp_path / "w.txt").write_bytes(work)
    for reference in ("pad", "classical", str(tiny_blob)):
        outputs = ["--json", "f.json", "--html", "f.html", "--plot", "f.png", "--force"]
        args = ["explain", "w.txt", "-b", str(tiny_blob), "-r", reference]
        assert inert(*args, *outputs).returncode == 0
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(aside, "FORKS", False)
        inline = ["--json", "i.json", "--html", "i.html", "--plot", "i.png", "--force"]
        assert main([*args, *inline]) == 0
        monkeypatch.undo()
        for suffix in ("json", "html"):
            forked, in_turn = (tmp_path / f"{n}.{suffix}" for n in ("f", "i"))
            assert forked.read_bytes() == in_turn.read_bytes(), (reference, suffix)
        assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "i.png").stat().st_size > 10_000


def test_explain_json_on_stdout_is_json_alone(inert, tmp_path: Path, tiny_blob: Path) -> None:
    import json

    (tmp_path / "w.txt").write_bytes(b"A short work for stdout. " * 20)
    result = inert("explain", "w.txt", "-b", tiny_blob, "--json", "-")
    assert result.returncode == 0, err(result)
    assert json.loads(result.stdout)["totals"]["bytes"] == 500
    assert "held by the blob" in err(result)  # the summary moved to stderr
