"""The `inert` command: arguments -> library calls, errors -> `inert: error:` lines and exit codes.

Exit codes: 0 success, 1 runtime failure, 2 usage error, 130 interrupted (Ctrl-C),
141 the reader of stdout went away, 143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from . import __version__, entry, pad, shares
from .aside import Aside
from .errors import InertError
from .heap import keep_freed_memory
from .keyfile import KeyHeader, Kind, check_payload_length, read_header
from .store import Blob, Store, check_blob
from .streams import (
    STDIO,
    atomic_output,
    atomic_outputs,
    open_input,
    signals_deferred,
    size_text,
)
from .streams import Progress as ProgressFn

if TYPE_CHECKING:  # the codec (and numpy's engine) is imported only by commands that code
    from .codec import CodecSettings, LoadedModel

KEY_SUFFIX = ".inert"
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

EXAMPLES = """\b
Examples:
  inert encode notes.txt                  # -> notes.txt.inert, coded by the default model
  inert decode notes.txt.inert -o restored.txt
  inert imagine --tokens 100              # random bits decoded into a new work
  inert pad new secret.pad --size 64M     # a blob of 64 MiB of random bytes
  inert encode notes.txt --blob secret.pad  # key = notes XOR pad bytes
  inert split notes.txt -n 3              # -> notes.txt.1of3.inert ... 3of3
  inert join notes.txt.*of3.inert -o restored.txt
  inert hide secret.txt -o cover.txt      # secret.txt, encrypted, as model text
  inert scan books/ -o books.parquet      # explain a whole corpus, a row per work
"""


# ---------------------------------------------------------------------------- helpers


def warn(message: str) -> None:
    stderr.print(f"inert: warning: {message}", markup=False)


def info(quiet: bool, message: str) -> None:
    if not quiet:
        stderr.print(message, markup=False)


@contextlib.contextmanager
def progress_bar(
    total: int, description: str, quiet: bool, unit: str = "bytes"
) -> Iterator[ProgressFn | None]:
    """A progress bar on stderr, shown only to a person watching a terminal on a long run."""
    long_run = total >= (64 << 20 if unit == "bytes" else 2000)
    if quiet or not stderr.is_terminal or not long_run:
        yield None
        return
    if unit == "bytes":
        counts = (DownloadColumn(binary_units=True), TransferSpeedColumn())
    else:
        counts = (MofNCompleteColumn(), TextColumn(f"{unit}"))
    columns = (BarColumn(), *counts, TimeRemainingColumn())
    with Progress(
        "[progress.description]{task.description}", *columns, console=stderr, transient=True
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'64M' -> 67108864. Suffixes K, M, G, T are powers of 1024; 'KiB', 'MB', ... are accepted too."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size (examples: 4096, 64K, 64M, 2G)")
    size = int(match[1]) * SIZE_UNITS[match[2].upper()]
    if size >= 2**63:  # keys hold lengths and offsets below 2**63
        raise click.BadParameter(f"{text!r} is larger than any pad or work can be")
    return size


class SizeType(click.ParamType):
    name = "SIZE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        return value if isinstance(value, int) else parse_size(str(value))


class PositiveFloat(click.ParamType):
    """A finite number above 0 (click's FloatRange lets nan through)."""

    name = "NUMBER"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} is not a finite number above 0", param, ctx)
        return number


def resolve_blob(store: Store, ref: str | None) -> Blob:
    """--blob: a path, a store id, `default`, or nothing (the default blob)."""
    from .api import open_blob

    return open_blob(ref, store)


def find_blob(store: Store, header: KeyHeader, blob_ref: str | None) -> Blob:
    """The blob a key names: --blob if given, else the store, else a blob shipped with inert."""
    from .api import blob_of_key

    return blob_of_key(header, blob_ref, store)


def codec_settings(
    loaded: LoadedModel, version: str | None, segment_tokens: int | None, work_length: int = 0
) -> CodecSettings:
    """--codec and --segment-tokens, checked against the model: a segment fits its context."""
    from .codec import default_settings

    settings = default_settings(loaded, work_length)
    if version is not None:
        settings = replace(settings, codec=int(version))
    check_segment_tokens(loaded, segment_tokens)
    return settings if segment_tokens is None else replace(settings, segment_tokens=segment_tokens)


def check_segment_tokens(loaded: LoadedModel, segment_tokens: int | None) -> None:
    """--segment-tokens fits the model's context."""
    context = loaded.model.config.max_seq_len
    if segment_tokens is not None and segment_tokens > context:
        raise click.BadParameter(
            f"{segment_tokens} is more than the model's context of {context} tokens",
            param_hint="'--segment-tokens'",
        )


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def key_output_for(work: str) -> str:
    if work == STDIO:
        return STDIO
    return work + KEY_SUFFIX


def work_output_for(key: str) -> str:
    if key == STDIO:
        return STDIO
    if key.endswith(KEY_SUFFIX) and len(key) > len(KEY_SUFFIX):
        return key[: -len(KEY_SUFFIX)]
    raise click.UsageError(
        f"cannot derive an output name: {key} does not end in {KEY_SUFFIX}; pass -o FILE"
    )


# ---------------------------------------------------------------------------- commands

force_option = click.option(
    "-f", "--force", is_flag=True, help="Overwrite existing outputs; allow binary on a terminal."
)
quiet_option = click.option(
    "-q", "--quiet", is_flag=True, help="Print nothing but errors and warnings."
)
model_blob_option = click.option(
    "-b",
    "--blob",
    "blob_ref",
    metavar="MODEL",
    help="Model blob file or id [default: the embedded one].",
)
codec_option = click.option(
    "--codec",
    "codec_version",
    type=click.Choice(["1", "2", "3", "4", "5", "6"]),
    help="Model blobs: 6 codes with the model's tables calibrated to the work and the work's "
    "own repeats, 5 with longer repeats and weights learned as it goes (smaller keys of long "
    "works), 4 as 6 without calibration, 3 with the model alone (1 and 2: their "
    "predecessors, at 2^24 with constriction's coder) [default: for models inert trained 6, "
    "or 5 for works of 64 KiB or more; 3 for imported ones].",
)


def _set_backend(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        from . import codec

        codec.BACKEND[param.name] = value


def threads_option(command: Callable) -> Callable:
    """-T/--threads, --backend and --device: how a model is evaluated; keys never depend on it."""
    for option in (
        click.option(
            "--device",
            metavar="DEVICE",
            expose_value=False,
            callback=_set_backend,
            help="The torch backend's device: cpu, cuda, cuda:1... [default: cuda if available].",
        ),
        click.option(
            "--backend",
            type=click.Choice(["numpy", "torch"]),
            expose_value=False,
            callback=_set_backend,
            help="Evaluate the model with numpy (and inert's compiled kernels) or torch; "
            "the same tables to the bit [default: numpy].",
        ),
        click.option(
            "-T",
            "--threads",
            type=click.IntRange(0),
            default=0,
            help="Threads evaluating a model; keys never depend on it [default: 0 = every core].",
        ),
    ):
        command = option(command)
    return command


@click.group(
    epilog=EXAMPLES, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, "-V", "--version", prog_name="inert")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
def cli(debug: bool) -> None:
    """Encode any work into a key against an inert blob, and decode it back bit-exactly.

    A blob is a random pad or a language model. With a model the key is the arithmetic code
    of the work under the model: only what the model could not predict. With a pad the key
    is the work XOR pad bytes, so key and pad alone are each pure noise. NEVER use the same
    pad bytes for two works: the XOR of their keys is the XOR of the works (the two-time
    pad). inert picks a fresh random offset and remembers the ranges it used on this machine.
    """


@cli.command()
@click.argument("work", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-b",
    "--blob",
    "blob_ref",
    metavar="BLOB",
    help="Blob file, store id or `default` [default: the embedded default model].",
)
@click.option(
    "-o",
    "--output",
    metavar="KEY",
    help="Where to write the key [default: WORK.inert; stdout for -].",
)
@click.option(
    "--offset", type=SizeType(), help="Pad byte to start at [default: a random unused one]."
)
@click.option(
    "--segment-tokens",
    type=click.IntRange(1),
    help="Model blobs: tokens per independently coded segment [default: 512, at most the model's context].",
)
@codec_option
@click.option(
    "--model-key",
    is_flag=True,
    help="Model blobs: write the model's key even where a classical or stored one is smaller.",
)
@threads_option
@force_option
@quiet_option
def encode(
    work: str,
    blob_ref: str | None,
    output: str | None,
    offset: int | None,
    segment_tokens: int | None,
    codec_version: str | None,
    model_key: bool,
    threads: int,
    force: bool,
    quiet: bool,
) -> None:
    """Encode WORK (a file, or - for stdin) into a key.

    With a model blob (the default) the key is the arithmetic code of the work's tokens under
    the model, sharpened by what the work itself repeats — or, where smaller, the work
    compressed by the best classical method (xz's LZMA2, zstd, brotli, bzip2, PPMd), or the
    work as is: no key is more than a header larger than the best classical result. Binary
    data skips the model, incompressible data is stored at once. With a pad blob the key holds work XOR pad[offset : offset+len]. The offset is drawn at
    random among the pad ranges not yet used on this machine; reusing pad bytes for two
    works leaks the XOR of the two works, so inert refuses unless --offset says so.
    """
    store = Store()
    blob = resolve_blob(store, blob_ref)
    output = output or key_output_for(work)
    if blob.kind is Kind.MODEL:
        if offset is not None:
            raise click.UsageError("--offset applies to pad blobs only; this blob is a model")
        encode_with_model(
            work, blob, output, segment_tokens, codec_version, model_key, threads, force, quiet
        )
    else:
        encode_with_pad(work, blob, store, output, offset, force, quiet)


def encode_with_pad(
    work: str, blob: Blob, store: Store, output: str, offset: int | None, force: bool, quiet: bool
) -> None:
    from .api import reserve_pad_range

    with open_input(work, "the work") as (src, length):
        # Reserved (recorded under the store's lock) before a byte is XORed; given back if
        # the key never leaves this process (a full disk, Ctrl-C), kept once it may have.
        chosen, reused = reserve_pad_range(blob, length, offset, store)
        if reused:
            warn(
                "these pad bytes were already used for another key made here: "
                "anyone holding both keys learns the XOR of the two works"
            )
        chance = pad.collision_chance(blob.size, length)
        if chance > 0.01:
            warn(
                f"the pad is small for this work: a key made elsewhere with this pad would overlap "
                f"this one with probability {chance:.1%}"
            )
        published = []
        try:
            header_size = len(pad.key_header(blob, length, chosen).to_bytes())
            with atomic_output(
                output,
                force=force,
                size=header_size + length,
                inputs=[work, str(blob.path)],
                before_publish=lambda: published.append(True),
            ) as out:
                with progress_bar(length, "encode", quiet) as progress:
                    pad.encode_stream(src, length, blob, chosen, out, progress)
                key_size = out.tell()
        except BaseException:
            if not published:
                release_pad_range(store, blob, chosen, length)
            raise
    info(
        quiet or output == STDIO,
        f"{work} -> {output}: key of {key_size} bytes (pad {blob.id_hex}, offset {chosen})",
    )


def release_pad_range(store: Store, blob: Blob, offset: int, length: int) -> None:
    """Give back the range of a key that was never written; say so if that fails."""
    try:
        store.release_pad_range(blob.id, offset, length)
    except (OSError, ValueError) as e:
        warn(
            f"pad bytes {offset}-{offset + length} stay recorded as used ({e}): "
            "no byte of them left this machine, but inert will not hand them out again"
        )


def encode_with_model(
    work: str,
    blob: Blob,
    output: str,
    segment_tokens: int | None,
    version: str | None,
    model_key: bool,
    threads: int,
    force: bool,
    quiet: bool,
) -> None:
    from . import codec

    loaded = codec.load_model(blob, threads)
    check_segment_tokens(loaded, segment_tokens)  # a bad option fails before the work is read
    with open_input(work, "the work") as (src, length):
        data = src.read()
    if len(data) != length:
        raise InertError("the work changed size while being read")
    settings = codec_settings(loaded, version, segment_tokens, length)
    settings = replace(settings, smallest=not model_key)
    tokens_guess = max(1, length // 3)
    with atomic_output(output, force=force, inputs=[work, str(blob.path)]) as out:
        with progress_bar(tokens_guess, "encode", quiet, unit="tokens") as progress:
            key, stats = codec.encode_work(data, loaded, settings, progress)
        out.write(key)
    bpb = 8 * len(key) / length if length else 0.0
    if stats.kind is Kind.MODEL:
        how = (
            f"{plural(stats.tokens, 'token')} in {plural(stats.segments, 'segment')}, "
            f"model {blob.id_hex}"
        )
    else:
        why = (
            "smaller than the model's key"
            if stats.model_ran
            else "binary data: the model was not run"
        )
        how = (
            f"compressed with {stats.method}: {why}"
            if stats.kind is Kind.CLASSICAL
            else "stored as is: "
            + ("the model would have enlarged it" if stats.model_ran else "incompressible data")
        )
    info(
        quiet or output == STDIO,
        f"{work} -> {output}: key of {len(key)} bytes, {bpb:.3f} bits per byte ({how})",
    )


@cli.command()
@click.argument("key", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-b",
    "--blob",
    "blob_ref",
    metavar="BLOB",
    help="Blob file or id [default: the key's blob, from the store].",
)
@click.option(
    "-o",
    "--output",
    metavar="WORK",
    help="Where to write the work [default: KEY without .inert; stdout for -].",
)
@threads_option
@force_option
@quiet_option
def decode(
    key: str, blob_ref: str | None, output: str | None, threads: int, force: bool, quiet: bool
) -> None:
    """Decode KEY back into the work, verifying the blob id first and the checksum last."""
    output = output or work_output_for(key)
    with open_input(key, "the key") as (src, key_length):
        header = read_header(src)
        if header.kind.is_share:
            raise InertError(
                f"{key} is share {header.param('index') + 1} of {header.param('count')}",
                hint="restore shares with: inert join SHARE... -o WORK",
            )
        if header.kind in (Kind.PAD, Kind.STORED):
            check_payload_length(header, key_length - src.tell())
        if header.kind in (Kind.STORED, Kind.CLASSICAL):  # no blob needed
            from . import codec

            with atomic_output(
                output, force=force, content="work", size=header.work_length, inputs=[key]
            ) as out:
                if header.kind is Kind.STORED:
                    codec.decode_stored(src, header, out)
                else:
                    codec.decode_classical(src, header, out)
            info(
                quiet or output == STDIO,
                f"{key} -> {output}: {header.work_length} bytes ({header.kind.label}), "
                "checksum verified",
            )
            return
        blob = find_blob(Store(), header, blob_ref)
        check_blob(header, blob)
        work_output = {"size": header.work_length, "inputs": [key, str(blob.path)]}
        if header.kind is Kind.MODEL:
            from . import codec

            loaded = codec.load_model(blob, threads)
            with (
                atomic_output(output, force=force, content="work", **work_output) as out,
                progress_bar(header.param("token_count"), "decode", quiet, "tokens") as progress,
            ):
                codec.decode_key(src, header, loaded, out, progress=progress)
        else:
            with (
                atomic_output(output, force=force, content="work", **work_output) as out,
                progress_bar(header.work_length, "decode", quiet) as progress,
            ):
                pad.decode_stream(src, header, blob, out, progress)
    info(
        quiet or output == STDIO,
        f"{key} -> {output}: {header.work_length} bytes, checksum verified",
    )


@cli.command()
@click.argument("work", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-b", "--blob", "blob_ref", metavar="MODEL", help="Model blob [default: the embedded one]."
)
@click.option(
    "-r",
    "--reference",
    default="pad",
    show_default=True,
    metavar="pad|classical|BLOB",
    help="What the work costs without the blob: 8 bits per byte, the best classical compressor, "
    "or a second model blob's key.",
)
@click.option("--json", "json_path", metavar="PATH", help="Write the whole ledger as JSON.")
@click.option("--html", "html_path", metavar="PATH", help="Write a self-contained HTML report.")
@click.option("--plot", "plot_path", metavar="PATH.png", help="Plot the bits (needs matplotlib).")
@click.option("--segment-tokens", type=click.IntRange(1), help="Tokens per segment, as for encode.")
@click.option(
    "--recall-tokens",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="A recalled span is at least this many tokens ...",
)
@click.option(
    "--recall-bits",
    type=PositiveFloat(),
    default=0.1,
    show_default=True,
    help="... costing less than this many bits each on average.",
)
@codec_option
@threads_option
@force_option
def explain(
    work: str,
    blob_ref: str | None,
    reference: str,
    json_path: str | None,
    html_path: str | None,
    plot_path: str | None,
    segment_tokens: int | None,
    recall_tokens: int,
    recall_bits: float,
    codec_version: str | None,
    threads: int,
    force: bool,
) -> None:
    """Where does WORK live: how many of its bits the blob held, and how many the key brings."""
    from . import api, codec, ledger

    blob = resolve_blob(Store(), blob_ref)
    if blob.kind is not Kind.MODEL:
        raise InertError(
            f"{blob.path} is a pad; it holds nothing of any work", hint="explain needs a model blob"
        )
    with open_input(work, "the work") as (src, _):
        data = src.read()
    other = None if reference in ("pad", "classical") else resolve_blob(Store(), reference)
    if other is not None and other.kind is not Kind.MODEL:
        raise click.UsageError("--reference must be pad, classical or a model blob")
    outputs = [
        (p, content)
        for p, content in ((json_path, "text"), (html_path, "text"), (plot_path, "binary"))
        if p
    ]
    if len({p for p, _ in outputs}) < len(outputs):
        raise click.UsageError("--json, --html and --plot need different paths")
    with contextlib.ExitStack() as stack:  # the outputs exist (as temporary files) from the start
        inputs = [work, str(blob.path), *([str(other.path)] if other else [])]
        files = {
            path: stack.enter_context(
                atomic_output(path, force=force, content=content, inputs=inputs)
            )
            for path, content in outputs
        }
        # Outputs are written by child processes, forked from this one while it has no
        # threads, on the CPU time the model's threads leave over: the JSON's child formats
        # each segment's records as soon as the segment is done; the plot's child imports
        # matplotlib meanwhile and draws at the end; the HTML is written here at the end.
        helpers: list[Aside] = []
        stack.callback(lambda: [helper.cancel() for helper in helpers])
        if plot_path:
            from .plot import curves, draw

            with signals_deferred():  # no helper runs unknown to the clean-up above
                plotter = Aside.ready(partial(write_each, draw, files[plot_path]), nice_pyplot)
                helpers.append(plotter)
        streaming = json_path is not None and other is None
        if streaming:
            token_bytes = codec.load_model(blob, threads).model.vocab.token_bytes
            spool = None if json_path == STDIO else os.path.dirname(os.path.abspath(json_path))
            with signals_deferred():
                json_writer = Aside.ready(
                    partial(
                        ledger.stream_json, files[json_path], data, token_bytes, spool_dir=spool
                    ),
                    low_priority,
                )
                helpers.append(json_writer)

        def send_rows(book: ledger.Ledger, a: int, b: int, reference: np.ndarray) -> None:
            json_writer.send(("rows", book.segment_tokens, ledger.rows(book, a, b), reference))

        check_segment_tokens(codec.load_model(blob, threads), segment_tokens)
        report = api.explain(
            data,
            blob,
            reference=other or reference,
            codec=int(codec_version) if codec_version else None,
            segment_tokens=segment_tokens,
            recall_tokens=recall_tokens,
            recall_bits=recall_bits,
            threads=threads,
            on_rows=send_rows if streaming else None,
        )
        result = report.result
        result["work"] = {"path": work, "bytes": len(data)}
        if streaming:
            json_writer.send(("end", {k: v for k, v in result.items() if k != "tokens"}))
            json_writer.close()
        elif json_path:
            with signals_deferred():
                helpers.append(Aside(write_flushed, ledger.write_json, files[json_path], result))
        if plot_path:
            plotter.send(curves(result))
            plotter.close()
        if html_path:
            from .html import render

            files[html_path].write(render(result, data).encode())
        for helper in helpers:
            helper.wait()
    # an output on stdout (-) keeps stdout to itself: the summary goes to stderr then
    show_explanation(result, stderr if STDIO in (json_path, html_path, plot_path) else Console())


def low_priority() -> None:
    """Run mostly on CPU time the model's threads leave over: nice 19.

    Not SCHED_IDLE, which never runs while anything else is runnable: on a busy machine
    the helpers then waited forever after the model had finished (seen as explain runs
    that outlived a 120-second limit while other jobs kept both cores busy).
    """
    with contextlib.suppress(OSError):
        os.nice(19)


def nice_pyplot() -> None:
    """Import matplotlib at low priority: on the CPU time the model's threads leave over."""
    from .plot import pyplot

    low_priority()
    pyplot()


def write_each(write: Callable[[object, BinaryIO], None], out: BinaryIO, items: Iterator) -> None:
    for item in items:
        write_flushed(write, out, item)


def write_flushed(write: Callable[[object, BinaryIO], None], out: BinaryIO, data: object) -> None:
    """write(data, out), its buffered bytes flushed to the file (a child exits without it)."""
    write(data, out)
    out.flush()


def show_explanation(result: dict, console: Console) -> None:
    """The ledger's summary, for a person at a terminal."""
    t = result["totals"]
    table = Table(box=None, show_header=False)
    table.add_row("work", f"{result['work']['path']}: {t['bytes']:,} bytes, {t['tokens']:,} tokens")
    table.add_row("blob", result["blob"]["id"])
    table.add_row(
        "key",
        f"{t['key_bits'] / 8:,.0f} bytes of payload ({t['key_bits_per_byte']:.3f} bits per byte)",
    )
    table.add_row(
        "reference", f"{t['reference_bits'] / 8:,.0f} bytes: {result['reference']['name']}"
    )
    share = lambda bits: bits / t["reference_bits"] if t["reference_bits"] else 0.0  # noqa: E731
    table.add_row(
        "held by the blob",
        f"{t['blob_held_bits'] / 8:,.0f} bytes = {share(t['blob_held_bits']):.1%} of the reference",
    )
    if t["repeat_bits"]:
        table.add_row(
            "from its repeats",
            f"{t['repeat_bits'] / 8:,.0f} bytes = {share(t['repeat_bits']):.1%}: what the work's "
            "earlier text supplied",
        )
    if t["stored"]:
        table.add_row(
            "note",
            f"the key would be larger than the work: inert encode stores these {t['bytes']:,} "
            "bytes as is (the blob holds nothing of them that pays)",
        )
    spans, rule = result["recall"]["spans"], result["recall"]["rule"]
    table.add_row(
        "recalled spans",
        f"{len(spans)} (runs of >= {rule['min_tokens']} tokens under {rule['max_mean_bits']} bits each)",
    )
    extraction = result["extraction"]
    if extraction["max_log2_probability"] is not None:
        table.add_row(
            "extraction",
            f"most likely {extraction['window']}-token window: p = 2^{extraction['max_log2_probability']:.1f} "
            f"(from token {extraction['at_token']})",
        )
    console.print(table)
    for span in sorted(spans, key=lambda sp: -sp["tokens"])[:5]:
        text = span["text"].replace("\n", " / ")
        console.print(
            f"  bytes {span['start']}-{span['end']}, {span['tokens']} tokens, {span['bits']:.1f} bits: "
            f"{text[:70]}{'...' if len(text) > 70 else ''}",
            markup=False,
            highlight=False,
        )


@cli.command()
@model_blob_option
@click.option(
    "-s", "--seed", type=click.IntRange(0), help="Seed of the random bits [default: fresh]."
)
@click.option(
    "-n",
    "--tokens",
    "count",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Tokens to imagine.",
)
@click.option("-p", "--prompt", default="", help="Text the work starts with.")
@click.option(
    "-o", "--output", default=STDIO, metavar="WORK", help="Where to write it [default: stdout]."
)
@force_option
def imagine(
    blob_ref: str | None, seed: int | None, count: int, prompt: str, output: str, force: bool
) -> None:
    """Decode random bits into a new work: every bit string reads as some text under a model."""
    from . import codec

    blob = resolve_blob(Store(), blob_ref)
    if blob.kind is not Kind.MODEL:
        raise InertError(f"{blob.path} is a pad; imagine needs a model blob")
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
        stderr.print(f"inert: seed {seed}", markup=False)
    # the prompt's bytes as given: click decodes arguments with the file system's encoding,
    # undecodable bytes kept as surrogate escapes (a Latin-1 or binary prompt)
    work = codec.imagine(codec.load_model(blob), count, seed, os.fsencode(prompt))
    with atomic_output(output, force=force, content="work") as out:
        out.write(work)


passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, allow_dash=False),
    help="Read the passphrase from this file (its first line) [default: ask on the terminal].",
)
prompt_text_option = click.option(
    "-p",
    "--prompt",
    default="",
    help="Text the cover text continues (reveal needs the same) [default: none].",
)


def read_passphrase(path: str | None, confirm: bool) -> bytes:
    """The passphrase: the first line of a file, or typed on the terminal (never an argument:
    arguments are visible to every user of the machine)."""
    if path is not None:
        try:
            with open(path, "rb") as f:
                line = f.readline().rstrip(b"\r\n")
        except OSError as e:
            raise InertError(f"cannot read the passphrase file {path}: {e.strerror or e}") from None
        if not line:
            raise InertError(f"the passphrase file {path} is empty")
        return line
    if not sys.stdin.isatty():
        raise InertError(
            "no terminal to ask for the passphrase", hint="pass --passphrase-file FILE"
        )
    typed = click.prompt("passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    if not typed:
        raise InertError("the passphrase is empty")
    return typed.encode()


@cli.command()
@click.argument("payload", type=click.Path(dir_okay=False, allow_dash=True))
@model_blob_option
@prompt_text_option
@passphrase_option
@click.option(
    "-o",
    "--output",
    default=STDIO,
    metavar="COVER",
    help="Where to write the cover text [default: stdout].",
)
@force_option
@quiet_option
def hide(
    payload: str,
    blob_ref: str | None,
    prompt: str,
    passphrase_file: str | None,
    output: str,
    force: bool,
    quiet: bool,
) -> None:
    """Hide PAYLOAD, encrypted under a passphrase, in ordinary-looking text of a model.

    The sealed bytes are decoded as the model's own text: without the passphrase the text
    reads as a sample of the model, and reveals nothing of the payload, not even that it is
    there (whoever holds the blob can still tell that the text is likely model output).

    \b
    Examples:
      inert hide secret.pdf -o cover.txt --prompt "Dear Anna,"
      inert reveal cover.txt -o secret.pdf --prompt "Dear Anna,"
    """
    from . import codec
    from . import hide as hiding

    blob = resolve_blob(Store(), blob_ref)
    if blob.kind is not Kind.MODEL:
        raise InertError(f"{blob.path} is a pad; hide needs a model blob")
    with open_input(payload, "the payload") as (src, _):
        data = src.read()
    passphrase = read_passphrase(passphrase_file, confirm=True)
    loaded = codec.load_model(blob)
    started = time.monotonic()
    # the output is claimed first: an existing file is refused before the work, not after
    with atomic_output(
        output, force=force, content="text", inputs=[payload, str(blob.path)]
    ) as out:
        cover = hiding.hide(data, loaded, passphrase, os.fsencode(prompt))
        out.write(cover.text)
    elapsed = time.monotonic() - started
    info(
        quiet or output == STDIO,
        f"{payload} -> {output}: {len(data)} bytes hidden in {len(cover.text):,} bytes of text "
        f"({len(cover.tokens):,} tokens, {8 * cover.sealed_bytes / cover.payload_tokens:.2f} bits "
        f"per token) in {elapsed:.1f} s",
    )


@cli.command()
@click.argument("cover", type=click.Path(dir_okay=False, allow_dash=True))
@model_blob_option
@prompt_text_option
@passphrase_option
@click.option(
    "-o",
    "--output",
    default=STDIO,
    metavar="PAYLOAD",
    help="Where to write the payload [default: stdout].",
)
@force_option
@quiet_option
def reveal(
    cover: str,
    blob_ref: str | None,
    prompt: str,
    passphrase_file: str | None,
    output: str,
    force: bool,
    quiet: bool,
) -> None:
    """Reveal the payload COVER carries, given its passphrase, blob and prompt."""
    from . import codec
    from . import hide as hiding

    blob = resolve_blob(Store(), blob_ref)
    if blob.kind is not Kind.MODEL:
        raise InertError(f"{blob.path} is a pad; reveal needs a model blob")
    with open_input(cover, "the cover text") as (src, _):
        text = src.read()
    passphrase = read_passphrase(passphrase_file, confirm=False)
    with atomic_output(output, force=force, content="work", inputs=[cover, str(blob.path)]) as out:
        payload = hiding.reveal(text, codec.load_model(blob), passphrase, os.fsencode(prompt))
        out.write(payload)
    info(quiet or output == STDIO, f"{cover} -> {output}: {len(payload)} bytes revealed")


@cli.command()
@click.argument("source", type=click.Path(exists=True))
@model_blob_option
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="RESULTS.parquet",
    help="One row per work (resumed if it exists).",
)
@click.option(
    "--windows",
    metavar="WINDOWS.parquet",
    help="Also write each work's 50-token windows' extraction log2 probabilities.",
)
@click.option(
    "--plot",
    metavar="MAP.png",
    help="Draw every work's windows as one row of a heatmap [windows kept in RESULTS.windows.parquet].",
)
@click.option(
    "--id-field", default="id", show_default=True, help="JSONL or Parquet sources: the id field."
)
@click.option(
    "--text-field",
    default="text",
    show_default=True,
    help="JSONL or Parquet sources: the text field.",
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(1),
    help="Worker processes or Ray actors [default: one per core].",
)
@click.option(
    "--ray",
    "ray_address",
    metavar="auto|local|ADDRESS",
    help="Scan on Ray: auto (the running cluster), local (one started here) or an address.",
)
@force_option
@quiet_option
def scan(
    source: str,
    blob_ref: str | None,
    output: str,
    windows: str | None,
    plot: str | None,
    id_field: str,
    text_field: str,
    workers: int | None,
    ray_address: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Explain every work of SOURCE (a folder, a .jsonl or a .parquet file) against a model:
    one Parquet row per work with its key, reference and blob bits, recalled spans and
    50-token extraction probabilities. Run again, it scans only what is missing.

    \b
    Examples:
      inert scan books/ -o books.parquet --plot books.png
      inert scan corpus.jsonl --text-field body -o rows.parquet --ray auto
    """
    from . import scan as scanning

    blob = resolve_blob(Store(), blob_ref)
    if blob.kind is not Kind.MODEL:
        raise InertError(f"{blob.path} is a pad; scan needs a model blob")
    if plot and not windows:
        windows = str(Path(output).with_suffix(".windows.parquet"))
    total = scanning.count_source(source)
    started, done, done_bytes = time.monotonic(), [0], [0]
    with scan_progress(total, quiet) as advance:

        def on_row(row: dict) -> None:
            done[0] += 1
            done_bytes[0] += row["bytes"] or 0
            if row["error"]:
                warn(f"{row['id']}: {row['error']}")
            if advance:
                elapsed = max(time.monotonic() - started, 1e-9)
                advance(
                    f"{done[0] / elapsed:.2f} works/s, {done_bytes[0] / elapsed / 1e6:.3f} MB/s"
                )

        summary = scanning.scan(
            source,
            str(blob.path),
            output,
            windows=windows,
            workers=workers or 0,
            ray=ray_address,
            id_field=id_field,
            text_field=text_field,
            on_row=on_row,
        )
    if plot:
        with atomic_output(plot, force=force, content="binary") as out:
            scanning.heatmap(windows, out)
    elapsed, added = time.monotonic() - started, summary.added
    kept = f", {summary.kept} already there" if summary.kept else ""
    failed = f", {summary.errors} with errors (see their rows)" if summary.errors else ""
    info(
        quiet,
        f"{source} -> {output}: {added} works scanned{kept}{failed} in {elapsed:.1f} s "
        f"({added / max(elapsed, 1e-9):.2f} works/s, {done_bytes[0] / max(elapsed, 1e-9) / 1e6:.3f} MB/s)",
    )


@contextlib.contextmanager
def scan_progress(total: int | None, quiet: bool) -> Iterator[Callable[[str], None] | None]:
    """A bar of works done, with works/s and MB/s, and the time left when the total is known."""
    if quiet or not stderr.is_terminal:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task("scan", total=total, rate="")
        yield lambda rate: bar.update(task, advance=1, rate=rate)


@cli.command()
@click.argument("corpus", type=click.Path(exists=True, file_okay=False))
@click.option(
    "-o", "--output", required=True, metavar="MODEL.blob", help="Where to write the model blob."
)
@click.option(
    "--steps", type=click.IntRange(1), default=2000, show_default=True, help="Optimizer steps."
)
@click.option("--dim", type=click.IntRange(8), default=256, show_default=True)
@click.option("--layers", "n_layers", type=click.IntRange(1), default=4, show_default=True)
@click.option("--heads", "n_heads", type=click.IntRange(1), default=8, show_default=True)
@click.option("--kv-heads", "n_kv_heads", type=click.IntRange(1), default=4, show_default=True)
@click.option("--hidden", "hidden_dim", type=click.IntRange(8), default=768, show_default=True)
@click.option("--vocab", "vocab_size", type=click.IntRange(300), default=4096, show_default=True)
@click.option("--context", type=click.IntRange(16), default=512, show_default=True)
@click.option("--batch", "batch_size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--source-cap",
    type=SizeType(),
    default="8M",
    show_default=True,
    help="Bytes taken from each corpus file (slices spread evenly), so no source dominates.",
)
@click.option(
    "--threads", type=click.IntRange(0), default=0, help="torch CPU threads [default: all cores]."
)
@click.option(
    "--checkpoint", type=click.Path(dir_okay=False), help="Save progress here every 200 steps."
)
@click.option("--resume", is_flag=True, help="Continue from --checkpoint.")
@force_option
@quiet_option
def train(
    corpus: str,
    output: str,
    checkpoint: str | None,
    resume: bool,
    force: bool,
    quiet: bool,
    **settings: object,
) -> None:
    """Train a tokenizer and a small model on CORPUS (a folder of .txt files) into a blob.

    Needs the train extra: pip install 'inert[train]'. Seeded and reproducible; with
    --checkpoint it can be stopped and resumed with --resume.
    """
    from pathlib import Path

    from . import train as training

    training.require_torch()
    if resume and not checkpoint:
        raise click.UsageError("--resume needs --checkpoint")
    if os.path.lexists(output) and not force:
        raise InertError(f"{output} already exists", hint="add --force to overwrite it")
    cfg = training.TrainConfig(**settings)  # type: ignore[arg-type]
    log = (lambda _: None) if quiet else (lambda m: stderr.print(f"inert: {m}", markup=False))
    columns = (
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TextColumn("{task.fields[rate]:.0f} tok/s"),
        TimeRemainingColumn(),
    )
    with Progress("train", *columns, console=stderr, disable=quiet) as bar:
        task = bar.add_task("train", total=cfg.steps, loss=float("nan"), rate=0.0)

        def report(step: int, loss: float, rate: float) -> None:
            bar.update(task, completed=step, loss=loss, rate=rate)
            if step % 100 == 0 and not stderr.is_terminal:
                log(f"step {step}/{cfg.steps} loss {loss:.3f} ({rate:.0f} tokens/s)")

        result = training.train(
            Path(corpus), cfg, Path(checkpoint) if checkpoint else None, resume, report, log
        )
    with atomic_output(output, force=force) as out:
        out.write(result.blob)
    info(
        quiet,
        f"{output}: {len(result.blob):,} bytes, {result.model_config.parameter_count():,} parameters; "
        f"train loss {result.train_loss:.3f} nats/token, validation {result.valid_bits_per_byte:.3f} bits/byte "
        f"(float32), {result.tokens_per_second:.0f} tokens/s",
    )


@cli.group("pad", no_args_is_help=True)
def pad_group() -> None:
    """Make random pads: blobs of uniform random bytes."""


@pad_group.command("new")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "-s",
    "--size",
    type=SizeType(),
    required=True,
    help="Size, e.g. 64M (K, M, G, T = powers of 1024).",
)
@force_option
@quiet_option
def pad_new(path: str, size: int, force: bool, quiet: bool) -> None:
    """Write a new pad of SIZE bytes from the operating system's CSPRNG to PATH."""
    with progress_bar(size, "pad", quiet) as progress:
        blob = pad.new_pad(path, size, force=force, progress=progress)
    info(quiet, f"{path}: pad {blob.id_hex} of {size_text(size)}")


@cli.command()
@click.argument("work", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-n",
    "--shares",
    "count",
    type=click.IntRange(2, shares.MAX_SHARES),
    required=True,
    help="Number of shares (2-255); all are needed to restore the work.",
)
@click.option(
    "-o",
    "--output",
    "prefix",
    metavar="PREFIX",
    help="Write PREFIX.1ofN.inert ... [default: WORK as the prefix].",
)
@click.option(
    "--full",
    is_flag=True,
    help="Write every share at the work's size (default: shares 1..N-1 are ~55-byte seeds).",
)
@force_option
@quiet_option
def split(work: str, count: int, prefix: str | None, full: bool, force: bool, quiet: bool) -> None:
    """Split WORK into N shares; any N-1 of them are uniform noise, all N restore it.

    Shares 1..N-1 are AES-256-CTR keystreams under fresh random keys and share N is the
    work XOR all of them. A keystream is determined by its 32-byte key, so by default
    shares 1..N-1 store just that key (a "seed share" of about 55 bytes) and only share N is as
    large as the work: the same security, one work-sized file to write. With --full every
    share holds its bytes in full.
    """
    if prefix is None:
        if work == STDIO:
            raise click.UsageError(
                "reading the work from stdin: pass -o PREFIX for the share files"
            )
        prefix = work
    paths = [f"{prefix}.{i}of{count}{KEY_SUFFIX}" for i in range(1, count + 1)]
    with (
        open_input(work, "the work") as (src, length),
        atomic_outputs(
            paths, force=force, sizes=shares.share_sizes(length, count, full), inputs=[work]
        ) as outs,
        progress_bar(length, "split", quiet) as progress,
    ):
        shares.split_stream(src, length, outs, progress, full=full)
    info(quiet, f"{work} -> {', '.join(paths)}")


@cli.command()
@click.argument(
    "share_paths", nargs=-1, required=True, metavar="SHARE...", type=click.Path(dir_okay=False)
)
@click.option(
    "-o", "--output", required=True, metavar="WORK", help="Where to write the work (- for stdout)."
)
@force_option
@quiet_option
def join(share_paths: tuple[str, ...], output: str, force: bool, quiet: bool) -> None:
    """Restore a work from all the shares of its set."""
    with contextlib.ExitStack() as stack:
        streams, headers = [], []
        for path in share_paths:
            stream, length = stack.enter_context(open_input(path, path))
            header = read_header(stream)
            if not header.kind.is_share:
                raise InertError(
                    f"{path} is a {header.kind.label} key, not a share",
                    hint=f"decode it with: inert decode {path}",
                )
            check_payload_length(header, length - stream.tell())
            streams.append(stream)
            headers.append(header)
        with (
            atomic_output(
                output,
                force=force,
                content="work",
                size=headers[0].work_length,
                inputs=share_paths,
            ) as out,
            progress_bar(headers[0].work_length, "join", quiet) as progress,
        ):
            shares.join_stream(streams, headers, share_paths, out, progress)
    info(quiet or output == STDIO, f"{len(share_paths)} shares -> {output}: checksum verified")


@cli.group("blob", no_args_is_help=True)
def blob_group() -> None:
    """The local blob store, where decode finds blobs by id."""


@blob_group.command("list")
def blob_list() -> None:
    """List the blobs in the store."""
    store = Store()
    blobs = store.list()
    if not blobs:
        stderr.print(
            f"the store ({store.blobs}) holds no blobs yet; add one with: inert blob add PATH"
        )
        return
    table = Table("id", "kind", "size", box=None)
    for blob in blobs:
        table.add_row(blob.id_hex, blob.kind.name.lower(), size_text(blob.size))
    Console().print(table)


@blob_group.command("add")
@click.argument("path", type=click.Path(dir_okay=False))
def blob_add(path: str) -> None:
    """Copy the blob at PATH into the store."""
    blob, new = Store().add(path, check=lambda b: b.kind is not Kind.PAD or pad.check_random(b))
    click.echo(f"{blob.id_hex} {'added' if new else 'already in the store'}: {blob.path}")


@blob_group.command("import")
@click.argument("source", type=click.Path(exists=True))
@click.option(
    "-o", "--output", required=True, metavar="MODEL.blob", help="Where to write the blob."
)
@force_option
@quiet_option
def blob_import(source: str, output: str, force: bool, quiet: bool) -> None:
    """Turn a Hugging Face model folder or a GGUF file into a portable model blob.

    Families: Llama (SmolLM2, Llama 3), Qwen2/2.5, Gemma 3. Weights are re-quantised to int8
    per output row; GGUF files need the import extra: pip install 'inert[import]'.
    """
    from .importer import import_model
    from .modelfile import model_bytes

    if os.path.lexists(output) and not force:
        raise InertError(f"{output} already exists", hint="add --force to overwrite it")
    say = (lambda _: None) if quiet else (lambda m: stderr.print(f"inert: {m}", markup=False))
    found = import_model(source, say)
    say(f"quantising {found.config.parameter_count():,} parameters to int8 rows")
    data = model_bytes(found.config, found.tokenizer_json, found.weights, found.source)
    with atomic_output(output, force=force, inputs=[source]) as out:
        out.write(data)
    blob_id = hashlib.sha256(data).hexdigest()[:16]
    info(quiet, f"{output}: {size_text(len(data))}, model {blob_id}")


@blob_group.command("info")
@click.argument("ref", metavar="PATH|ID")
def blob_info(ref: str) -> None:
    """Show what a blob is: kind, id, size, and for pads the bytes already used here."""
    store = Store()
    blob = resolve_blob(store, ref)
    uses = store.pad_uses(blob.id)
    table = Table(box=None, show_header=False)
    table.add_row("path", str(blob.path))
    table.add_row("kind", blob.kind.name.lower())
    table.add_row("id", blob.id_hex)
    table.add_row("sha256", blob.sha256.hex())
    table.add_row("size", f"{blob.size} bytes ({size_text(blob.size)})")
    table.add_row("in store", "yes" if store.find(blob.id) else "no")
    if blob.kind is Kind.PAD:
        used = sum(n for _, n in uses)
        table.add_row("used here", f"{used} bytes by {len(uses)} keys")
    else:
        from .modelfile import read_model

        model = read_model(blob.path)
        config = model.config
        table.add_row("family", config.family)
        table.add_row(
            "architecture",
            f"{config.n_layers} layers, dim {config.dim}, {config.n_heads} heads "
            f"({config.n_kv_heads} key/value) of {config.head_dim}, MLP {config.hidden_dim} "
            f"{'SwiGLU' if config.activation == 'silu' else 'GeGLU'}, context {config.max_seq_len}",
        )
        table.add_row("attention", config.attention_pattern())
        table.add_row("parameters", f"{config.parameter_count():,}")
        table.add_row("vocabulary", f"{config.vocab_size:,} tokens ({model.vocab.kind})")
        if model.source:
            kinds = ", ".join(f"{n} {k}" for k, n in model.source.get("tensor types", {}).items())
            table.add_row("imported from", f"{model.source.get('format')} ({kinds}), as int8 rows")
        from . import exact

        table.add_row(
            "engine",
            "numpy with inert's compiled kernels"
            if exact.KERNELS is not None
            else "numpy alone (inert's kernels were not built: no C compiler at install)",
        )
    Console().print(table)


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    keep_freed_memory()
    try:
        # click's own main() would turn Ctrl-C into a blank line plus Abort, and a broken
        # pipe into exit 1: the command runs here instead, and the handlers below decide
        with cli.make_context("inert", list(args)) as ctx:
            cli.invoke(ctx)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.NoArgsIsHelpError as e:  # bare `inert` (or `inert pad`): its help
        click.echo(e.ctx.get_help())
        return 0
    except click.UsageError as e:
        stderr.print(f"inert: error: {e.format_message()}", markup=False)
        command = e.ctx.command_path if e.ctx else "inert"
        stderr.print(f"inert: hint: see: {command} --help", markup=False)
        return 2
    except (click.Abort, KeyboardInterrupt):  # click.Abort: click's prompts, were there any
        sys.stderr.write(entry.INTERRUPTED)
        return 130
    except entry.Terminated:
        sys.stderr.write(entry.TERMINATED)
        return 143
    except InertError as e:
        if debug:
            traceback.print_exc()
        stderr.print(f"inert: error: {e.message}", markup=False)
        if e.hint:
            stderr.print(f"inert: hint: {e.hint}", markup=False)
        return 1
    except BrokenPipeError:
        # The reader went away (`inert decode K -o - | head`): silent, exit 141 (128 + SIGPIPE),
        # as cat, gzip and xz end when SIGPIPE kills them — whether or not SIGPIPE is
        # ignored where inert runs (Python ignores it, and sees EPIPE instead).
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if debug:
            traceback.print_exc()
        where = f": {e.filename}" if e.filename else ""
        stderr.print(f"inert: error: {e.strerror or e}{where}", markup=False)
        return 1
    except Exception as e:
        if debug:
            traceback.print_exc()
        stderr.print(f"inert: error: internal error: {type(e).__name__}: {e}", markup=False)
        stderr.print(
            "inert: hint: run again with --debug for the traceback, and report it", markup=False
        )
        return 1
