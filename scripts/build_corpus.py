"""Build inert's training and evaluation text from openly licensed Debian packages.

    python scripts/build_corpus.py OUT_DIR

Downloads the packages with `apt-get download` (no root, nothing installed), unpacks them
with `dpkg-deb -x`, cleans each source to plain UTF-8 text and writes

    OUT_DIR/train/<source>.txt     the training set
    OUT_DIR/eval/<source>/...      held-out evaluation files, never trained on
    OUT_DIR/SOURCES.md             every source, its package, version and license

Kept out of training on purpose (evaluation only): the Python documentation, the Linux
manual pages and the Jargon File, so results on them show how the blob generalises.
Licenses are listed in docs/CORPUS.md; all are public domain or free licenses.
"""

from __future__ import annotations

import gzip
import html
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

# source name -> (Debian package, license, cleaner)
TRAIN: dict[str, tuple[str, str]] = {
    "kjv-bible": ("bible-kjv-text", "public domain (King James Version, 1611/1769)"),
    "devils-dictionary": ("dict-devil", "public domain (Ambrose Bierce, 1911)"),
    "gcide": (
        "dict-gcide",
        "GPL-3+ (GNU Collaborative International Dictionary of English, from Webster's 1913)",
    ),
    "wordnet": ("dict-wn", "WordNet 3.0 license (permissive, BSD-like)"),
    "foldoc": ("dict-foldoc", "GFDL-1.1+ (Free On-line Dictionary of Computing)"),
    "fortunes": ("fortunes", "BSD-4-clause and public domain (fortune-mod data files)"),
    "debian-reference": ("debian-reference-en", "GPL-2+ (Debian Reference)"),
    "debian-handbook": (
        "debian-handbook",
        "GPL-2+ or CC-BY-SA-3.0 (The Debian Administrator's Handbook)",
    ),
    "perl-doc": ("perl-doc", "GPL-1+ or Artistic (Perl documentation)"),
    "postgresql-doc": ("postgresql-doc-15", "PostgreSQL license (permissive, BSD-like)"),
    "nodejs-doc": ("nodejs-doc", "Expat/MIT (Node.js API documentation)"),
    "git-doc": ("git-doc", "GPL-2 (Git documentation)"),
    "sqlite-doc": ("sqlite3-doc", "public domain (SQLite documentation)"),
    "django-code": ("python3-django", "BSD-3-clause (Django 3.2 source code)"),
}
EVAL: dict[str, tuple[str, str]] = {
    "python-docs": ("python3.11-doc", "PSF-2.0 (Python documentation)"),
    "manpages": ("manpages", "various free licenses (Linux man-pages project)"),
    "jargon": ("dict-jargon", "public domain (The Jargon File 4.4.7)"),
}
BIBLE_PROGRAM = "bible-kjv"  # its `bible` binary decodes the KJV text package's compressed data


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "pre", "tr", "dt", "dd"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip -= 1
        elif tag in ("p", "div", "h1", "h2", "h3", "h4", "pre", "li"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _TextOfHtml()
    parser.feed(markup)
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", html.unescape(text))
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def dictd_text(root: Path, name: str) -> str:
    """A dictd database (.dict.dz is gzip) without its 00-database-* header entries."""
    text = gzip.decompress(next(root.rglob(f"{name}.dict.dz")).read_bytes()).decode(
        "utf-8", errors="replace"
    )
    return re.sub(r"\A(?:.*\n)*?(?=^\S)", "", text, count=1, flags=re.M)


def clean_fortunes(root: Path) -> str:
    files = sorted(
        p for p in (root / "usr/share/games/fortunes").iterdir() if p.suffix == "" and p.is_file()
    )
    return "\n".join(p.read_text(errors="replace").replace("\n%\n", "\n\n") for p in files)


def clean_bible(root: Path, work: Path) -> str:
    program = fetch(BIBLE_PROGRAM, work)
    out = subprocess.run(
        [str(program / "usr/bin/bible"), "-f", "-d", "bible.data", "gen1:1-rev22:21"],
        cwd=root / "usr/lib",  # it cannot open a data file given by an absolute path
        capture_output=True,
        text=True,
    ).stdout
    if not out.rstrip().endswith("Amen."):
        raise SystemExit("the bible program did not print the whole text")
    return re.sub(r"^\S+?\d+:\d+ ", "", out, flags=re.M)  # drop "Ge1:1 " verse references


def clean_handbook(root: Path) -> str:
    pages = sorted((root / "usr/share/doc/debian-handbook/html/en-US").glob("*.html"))
    return "\n".join(html_to_text(p.read_text(errors="replace")) for p in pages)


def clean_debian_reference(root: Path) -> str:
    return gzip.decompress(next(root.rglob("debian-reference.en.txt.gz")).read_bytes()).decode(
        errors="replace"
    )


def clean_perl_doc(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(root.rglob("*.pod")))


def html_pages_text(folder: Path) -> str:
    return "\n".join(
        html_to_text(p.read_text(errors="replace")) for p in sorted(folder.rglob("*.html"))
    )


def clean_nodejs_doc(root: Path) -> str:
    pages = sorted((root / "usr/share/doc/nodejs/api").glob("*.md.gz"))
    text = "\n".join(gzip.decompress(p.read_bytes()).decode(errors="replace") for p in pages)
    return re.sub(r"<!--.*?-->\n?", "", text, flags=re.S)  # YAML/TOC markers, not prose


CLEANERS: dict[str, Callable[[Path, Path], str]] = {
    "kjv-bible": clean_bible,
    "devils-dictionary": lambda root, _: dictd_text(root, "devil"),
    "gcide": lambda root, _: dictd_text(root, "gcide"),
    "wordnet": lambda root, _: dictd_text(root, "wn"),
    "foldoc": lambda root, _: dictd_text(root, "foldoc"),
    "fortunes": lambda root, _: clean_fortunes(root),
    "debian-reference": lambda root, _: clean_debian_reference(root),
    "debian-handbook": lambda root, _: clean_handbook(root),
    "perl-doc": lambda root, _: clean_perl_doc(root),
    "postgresql-doc": lambda root, _: html_pages_text(root / "usr/share/doc/postgresql-doc-15"),
    "nodejs-doc": lambda root, _: clean_nodejs_doc(root),
    "git-doc": lambda root, _: "\n".join(
        p.read_text(errors="replace") for p in sorted(root.rglob("usr/share/doc/git-doc/*.txt"))
    ),
    "sqlite-doc": lambda root, _: html_pages_text(root / "usr/share/doc/sqlite3"),
    # source code as people write it (the documentation sources hold only snippets)
    "django-code": lambda root, _: "\n".join(
        p.read_text(errors="replace") for p in sorted(root.rglob("dist-packages/django/**/*.py"))
    ),
}


def fetch(package: str, work: Path) -> Path:
    """Download and unpack one Debian package; returns the unpacked root."""
    target = work / package
    if target.exists():
        return target
    download = work / "debs"
    download.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=download, check=True, capture_output=True)
    deb = max(download.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    return target


def version_of(package: str, work: Path) -> str:
    deb = next((work / "debs").glob(f"{package}_*.deb"))
    return deb.name.split("_")[1].replace("%3a", ":")  # the epoch, URL-encoded in file names


def write_eval(out: Path, work: Path) -> None:
    python = fetch(EVAL["python-docs"][0], work)
    docs = out / "eval" / "python-docs"
    docs.mkdir(parents=True, exist_ok=True)
    for page in [
        "tutorial/introduction",
        "library/functions",
        "library/stdtypes",
        "howto/logging",
        "faq/general",
    ]:
        src = next(python.rglob(f"html/{page}.html"))
        (docs / (page.replace("/", "-") + ".txt")).write_text(html_to_text(src.read_text()))
    # a short text: the FAQ's answer to "What is Python?", under 1 KB
    faq = (docs / "faq-general.txt").read_text()
    start = faq.index("Python is an interpreted")
    short = faq[start : faq.index("\n\n", start + 400)].strip() + "\n"
    (out / "eval" / "short").mkdir(parents=True, exist_ok=True)
    (out / "eval" / "short" / "python-what-is.txt").write_text(short[:1000])
    manpages = fetch(EVAL["manpages"][0], work)
    man = out / "eval" / "manpages"
    man.mkdir(parents=True, exist_ok=True)
    for page in ["man7/signal.7.gz", "man5/proc.5.gz", "man7/epoll.7.gz", "man7/regex.7.gz"]:
        src = next(manpages.rglob(page))
        (man / src.name.removesuffix(".gz")).write_bytes(gzip.decompress(src.read_bytes()))
    jargon = fetch(EVAL["jargon"][0], work)
    text = dictd_text(jargon, "jargon")
    (out / "eval" / "jargon").mkdir(parents=True, exist_ok=True)
    (out / "eval" / "jargon" / "jargon-sample.txt").write_text(text[200_000:260_000])


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    (out / "train").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="inert-corpus-"))
    rows = []
    try:
        for name, (package, license_) in TRAIN.items():
            root = fetch(package, work)
            text = CLEANERS[name](root, work)
            (out / "train" / f"{name}.txt").write_text(text)
            rows.append(
                f"| {name} | train | `{package}` {version_of(package, work)} | {license_} | {len(text.encode()):,} |"
            )
            print(f"{name}: {len(text.encode()):,} bytes", file=sys.stderr)
        write_eval(out, work)
        for name, (package, license_) in EVAL.items():
            rows.append(
                f"| {name} | eval | `{package}` {version_of(package, work)} | {license_} | |"
            )
        (out / "SOURCES.md").write_text(
            "| source | use | Debian package | license | bytes |\n|---|---|---|---|---|\n"
            + "\n".join(rows)
            + "\n"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
