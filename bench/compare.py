"""Benchmark: inert's keys against classical compressors, in bits per byte, file by file.

    python bench/compare.py FILE_OR_DIR... [--blob MODEL.blob] [--markdown] [--codec 3]
    python bench/compare.py FILE_OR_DIR... --components

--components prints, per file, the model key alone (codec 3), with the work's repeats mixed
in (codec 4), with longer contexts and learned weights (codec 5), codec 4's mix on tables
calibrated to the work's own token counts (codec 6) and the key `inert encode`
writes (the smallest of its codec's key, the best classical method and the work as is), each
as a ratio of the best classical result.

For every file: bits per byte of inert (whole key file, header included; the default blob
unless --blob), xz -9e, zstd -19, brotli -11, bzip2 -9 and PPMd order 6 (pyppmd, 16 MiB),
and inert's size as a ratio of the best classical result (< 1 means inert wins). Every
inert key is decoded and checked. Also prints encode and decode speed in KB/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from inert import codec
from inert.classical import COMPRESSORS as CLASSICAL
from inert.heap import keep_freed_memory
from inert.store import open_blob


def files_of(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
    return out


def main() -> None:
    keep_freed_memory()  # as the inert command does
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--blob", help="model blob [default: the embedded default blob]")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--codec",
        type=int,
        help="3: the model alone; 4: + repeats; 5: + long contexts, learned weights "
        "[default: inert encode's choice]",
    )
    parser.add_argument("--components", action="store_true", help="a column per component")
    args = parser.parse_args()
    if args.blob:
        blob = open_blob(args.blob)
    else:
        from inert.default import default_blob

        blob = default_blob()
    loaded = codec.load_model(blob)
    if args.components:
        components(loaded, files_of(args.paths))
        return
    names = ["inert", *CLASSICAL]
    if args.markdown:
        print("| file | bytes | " + " | ".join(names) + " | inert / best classical |")
        print("|---|---:|" + "---:|" * (len(names) + 1))
    else:
        print(f"blob {blob.id_hex}; bits per byte (whole outputs)", file=sys.stderr)
        print(
            f"{'file':<28} {'bytes':>8} "
            + " ".join(f"{n:>10}" for n in names)
            + f" {'ratio':>6} {'enc KB/s':>8} {'dec KB/s':>8}"
        )
    for path in files_of(args.paths):
        work = path.read_bytes()
        t0 = time.perf_counter()
        settings = codec.default_settings(loaded, len(work))
        if args.codec:
            settings = replace(settings, codec=args.codec)
        key, _ = codec.encode_work(work, loaded, settings)
        t1 = time.perf_counter()
        assert codec.decode_work(key, loaded) == work, f"{path}: round trip failed"
        t2 = time.perf_counter()
        sizes = {"inert": len(key)} | {name: len(fn(work)) for name, fn in CLASSICAL.items()}
        best = min(sizes[n] for n in CLASSICAL)
        bpb = {n: 8 * sizes[n] / len(work) for n in names}
        if args.markdown:
            cells = " | ".join(
                f"**{bpb[n]:.3f}**" if sizes[n] == min(sizes.values()) else f"{bpb[n]:.3f}"
                for n in names
            )
            print(f"| {path.name} | {len(work):,} | {cells} | {sizes['inert'] / best:.3f} |")
        else:
            print(
                f"{path.name[:28]:<28} {len(work):>8} "
                + " ".join(f"{bpb[n]:>10.3f}" for n in names)
                + f" {sizes['inert'] / best:>6.3f} {len(work) / 1000 / (t1 - t0):>8.1f} {len(work) / 1000 / (t2 - t1):>8.1f}"
            )


def components(loaded: codec.LoadedModel, paths: list[Path]) -> None:
    """Each component's key as a ratio of the best classical result, file by file."""
    from inert import classical
    from inert.keyfile import KeyHeader, Kind

    print(
        "| file | bytes | best classical (bits/byte) | model alone (3) | + repeats (4) | "
        "+ long contexts, learned weights (5) | + calibration, codec 4's mix (6) | inert encode |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for path in paths:
        work = path.read_bytes()
        best = min(len(fn(work)) for fn in CLASSICAL.values())
        sizes = {}
        for version in (3, 4, 5, 6):
            settings = codec.CodecSettings(codec=version, smallest=False)
            sizes[version] = len(codec.model_key(work, loaded, settings)[0])
        header = len(KeyHeader(Kind.CLASSICAL, bytes(8), len(work), (1,), 0).to_bytes())
        chosen_codec = codec.default_settings(loaded, len(work)).codec
        chosen = min(
            sizes[chosen_codec], header + len(classical.smallest(work)[1]), header + len(work)
        )
        cells = " | ".join(f"{n / best:.3f}" for n in (*sizes.values(), chosen))
        print(f"| {path.name} | {len(work):,} | {8 * best / len(work):.3f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
