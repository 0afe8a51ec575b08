"""Where a dataset comes from (a Hugging Face hub id or local files) and how prepared samples are stored.

Local JSON/JSONL is parsed with `json` rather than through Arrow: the Nemotron RL blend mixes
categories whose nested fields differ, and Arrow would unify their structs, adding None-valued keys
to dicts such as IFEval kwargs. Prepared sample files store `metadata` as a JSON string for the same
reason.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2rl.errors import UserError

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class Record:
    """One raw row and where it came from: file or hub id, row number (from 0), line in a text file."""

    where: str
    index: int
    row: dict[str, Any]
    line: int | None = None

    @property
    def location(self) -> str:
        """`file line N` (text files) or `source row N` (parquet, hub): counted from 1, in every error."""
        return (
            f"{self.where} line {self.line}"
            if self.line is not None
            else f"{self.where} row {self.index + 1}"
        )


class RecordCursor:
    """Iterates records, remembering the one being read so that an error can name its file and line."""

    def __init__(self, records: Iterable[Record]):
        self._records = iter(records)
        self.current: Record | None = None

    def __iter__(self) -> RecordCursor:
        return self

    def __next__(self) -> Record:
        self.current = next(self._records)
        return self.current

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A value of the wrong type or shape in the current row becomes a UserError naming the row."""
        try:
            yield
        except json.JSONDecodeError as exc:  # its position is within the field, not the file
            raise UserError(f"{self.where}: a field holds text that is not valid JSON ({exc.msg})") from exc
        except (TypeError, AttributeError, ValueError, KeyError, IndexError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise UserError(
                f"{self.where}: a field has the wrong type or shape ({type(exc).__name__}: {detail})"
            ) from exc

    @property
    def where(self) -> str:
        """The current record's location."""
        return self.current.location if self.current is not None else "data"


def is_local(source: str) -> bool:
    """True if `source` names a local file or directory rather than a hub dataset id."""
    path = Path(source).expanduser()
    if path.exists():
        return True
    looks_like_hub_id = (
        source.count("/") == 1
        and not source.startswith((".", "/", "~"))
        and not source.endswith(FILE_SUFFIXES)
    )
    if looks_like_hub_id:
        return False
    raise UserError(
        f"data source {source!r} is not an existing file or directory (nor a hub id like owner/name)"
    )


def local_files(source: str, split: str | None = None) -> list[Path]:
    """The data files of a local source: the file itself, or the supported files under a directory.

    In a directory holding several splits, only files whose name or parent folder starts with
    `split` are used when there are any.
    """
    path = Path(source).expanduser()
    if path.is_file():
        if not path.name.endswith(FILE_SUFFIXES):
            raise UserError(f"{path}: unsupported file type; use one of {', '.join(FILE_SUFFIXES)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(FILE_SUFFIXES))
    if not files:
        raise UserError(f"{path}: no {'/'.join(FILE_SUFFIXES)} files in this directory")
    if split:
        matching = [
            p
            for p in files
            if p.name.startswith(split)
            or any(part.startswith(split) for part in p.relative_to(path).parts[:-1])
        ]
        if matching:
            return matching
    return files


def _decoded(path: Path, data: bytes, first_line: int = 1) -> str:
    """`data` as UTF-8 text, without a leading byte-order mark; an invalid byte: an error naming its line."""
    try:
        return data.decode("utf-8-sig" if first_line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = first_line + before.count(b"\n")
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise UserError(
            f"{path} line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _json_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for each row of a `.json` file: a list of objects, or an object holding one such list."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno})") from None
    if isinstance(data, dict):
        keys = [k for k, v in data.items() if isinstance(v, list)]
        if len(keys) != 1:
            raise UserError(f"{path}: expected a list of rows (or an object holding one list of rows)")
        start = _member_start(text, keys[0])
        data = data[keys[0]]
    elif isinstance(data, list):
        start = len(text) - len(text.lstrip())
    else:
        raise UserError(f"{path}: expected a list of rows, found {_kind(data)}")
    lines, counted = 1, 0
    for row, at in zip(data, _element_starts(text, start), strict=True):
        lines, counted = lines + text.count("\n", counted, at), at
        if not isinstance(row, dict):
            raise UserError(f"{path} line {lines}: expected an object per row, found {_kind(row)}")
        yield lines, row


_DECODER = json.JSONDecoder()


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _member_start(text: str, key: str) -> int:
    """Where the value of the top-level object's last member named `key` starts (as json keeps the last)."""
    found, at = 0, _skip_space(text, 0) + 1
    while True:
        at = _skip_space(text, at)
        if text[at] == "}":
            return found
        name, at = _DECODER.raw_decode(text, at)
        at = _skip_space(text, _skip_space(text, at) + 1)  # past the colon
        if name == key:
            found = at
        _, at = _DECODER.raw_decode(text, at)
        at = _skip_space(text, at)
        if text[at] == ",":
            at += 1


def _element_starts(text: str, at: int) -> Iterator[int]:
    """Where each element of the JSON list opening at `at` starts."""
    at += 1
    while True:
        at = _skip_space(text, at)
        if text[at] == "]":
            return
        yield at
        _, at = _DECODER.raw_decode(text, at)
        at = _skip_space(text, at)
        if text[at] == ",":
            at += 1


def _read_file(path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """(line the row starts on, or None for parquet; row) for each row of one local file, in file order."""
    name = path.name
    if name.endswith(".jsonl"):
        with path.open("rb") as handle:
            for line_number, raw in enumerate(handle, 1):
                line = _decoded(path, raw, line_number)
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(
                        f"{path} line {line_number}: invalid JSON ({exc.msg}, column {exc.colno})"
                    ) from None
                if not isinstance(row, dict):
                    raise UserError(
                        f"{path} line {line_number}: expected a JSON object per line, found {_kind(row)}"
                    )
                yield line_number, row
    elif name.endswith(".json"):
        yield from _json_rows(path, _decoded(path, path.read_bytes()))
    elif name.endswith(".parquet"):
        # lazy: pyarrow, only where a parquet file is read or written
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
            for batch in batches:
                for row in batch.to_pylist():
                    yield None, row
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    elif name.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(_decoded(path, path.read_bytes()), newline=""))
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as exc:
            raise UserError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None


def _hub_error(source: str, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(
        f"could not load {source!r} from the Hugging Face hub ({type(exc).__name__}: {first}); "
        "download it and point the config at the local file or directory instead"
    )


def hub_files(repo_id: str, filenames: list[str]) -> list[Path]:
    """Download named files of a hub dataset repo (cached) and return their local paths."""
    # lazy: huggingface_hub, only where a file is downloaded
    from huggingface_hub import hf_hub_download

    try:
        return [Path(hf_hub_download(repo_id=repo_id, filename=f, repo_type="dataset")) for f in filenames]
    except Exception as exc:  # network, auth, missing file: all mean "not available here"
        raise _hub_error(repo_id, exc) from exc


def iter_records(
    source: str, split: str | None = None, name: str | None = None, files: list[str] | None = None
) -> Iterator[Record]:
    """Every row of a source as a plain dict, with its location.

    Local: a file or directory (jsonl, json, parquet, csv). Hub: `files` names raw files of the
    dataset repo to download and parse like local ones; otherwise `datasets.load_dataset(source,
    name, split=split)` (all splits in order when `split` is None).
    """
    if is_local(source):
        paths = local_files(source, split)
    elif files:
        paths = hub_files(source, list(files))
    else:
        yield from _iter_hub(source, split, name)
        return
    for path in paths:
        for index, (line, row) in enumerate(_read_file(path)):
            yield Record(str(path), index, row, line)


def _iter_hub(source: str, split: str | None, name: str | None) -> Iterator[Record]:
    # lazy: datasets (heavy), only where a dataset file is read or written
    import datasets

    try:
        loaded = datasets.load_dataset(source, name, split=split)
    except Exception as exc:
        raise _hub_error(source if name is None else f"{source} ({name})", exc) from exc
    parts = {split: loaded} if split is not None else dict(loaded)
    for split_name, dataset in parts.items():
        where = f"{source}{'/' + name if name else ''}[{split_name}]"
        for index, row in enumerate(dataset):
            yield Record(where, index, dict(row))


def load_indexed(source: str, split: str | None = None, name: str | None = None):
    """A source as a random-access `datasets.Dataset` (Arrow, memory-mapped): for lookups by row number."""
    # lazy: datasets (heavy), only where a dataset file is read or written
    import datasets

    if is_local(source):
        paths = local_files(source, split)
        builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
        kinds = {next(b for s, b in builder.items() if p.name.endswith(s)) for p in paths}
        if len(kinds) != 1:
            raise UserError(f"{source}: mixes file types {sorted(kinds)}; keep one type per source")
        try:
            return datasets.load_dataset(kinds.pop(), data_files=[str(p) for p in paths], split="train")
        except Exception as exc:
            raise UserError(
                f"{source}: could not read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from exc
    try:
        loaded = datasets.load_dataset(source, name, split=split or "train")
    except Exception as exc:
        raise _hub_error(source, exc) from exc
    return loaded


# -------------------------------------------------------------------------------------------------
# prepared sample files (what `m2rl data prepare` writes)


def write_samples(path: Path, samples: list[dict[str, Any]]) -> Path:
    """Write canonical samples to a parquet file; `metadata` is stored as a JSON string."""
    # lazy: pyarrow, only where a parquet file is read or written
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    prompt_type = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("domain", pa.string()),
            ("rm_type", pa.string()),
            ("prompt", prompt_type),
            ("label", pa.string()),
            ("metadata", pa.string()),
        ]
    )
    columns = {
        "id": [str(s["id"]) for s in samples],
        "domain": [s["domain"] for s in samples],
        "rm_type": [s["rm_type"] for s in samples],
        "prompt": [[{"role": m["role"], "content": m["content"]} for m in s["prompt"]] for s in samples],
        "label": [None if s.get("label") is None else str(s["label"]) for s in samples],
        "metadata": [json.dumps(s.get("metadata") or {}, ensure_ascii=False) for s in samples],
    }
    tmp = path.with_name(path.name + ".partial")
    pq.write_table(pa.table(columns, schema=schema), tmp)
    tmp.replace(path)
    return path


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Samples from a file written by `write_samples`, metadata decoded back to a dict."""
    # lazy: pyarrow, only where a parquet file is read or written
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise UserError(f"prepared sample file {path} does not exist (run `m2rl data prepare`)")
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        row["metadata"] = json.loads(row["metadata"]) if row.get("metadata") else {}
    return rows
