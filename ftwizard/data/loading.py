"""Read a data file as a stream of records, keeping the problems a parser would hide.

Lint needs more than a loader gives: the 1-based line of a JSONL row, the column of a
JSON syntax error, the byte offset of bytes that are not UTF-8, a BOM. So JSONL is read
line by line in binary (bounded memory, exact positions) and parsed with orjson; CSV goes
through the standard library's csv reader fed by the same byte-level line decoder (pyarrow's
CSV reader stops at the first bad byte without saying where); Parquet streams record batches
through pyarrow. A JSON array above 32 MB is parsed element by element; smaller JSON files,
and an object holding an array, are parsed whole with orjson (faster).

Row numbers: the 1-based line for JSONL, the 1-based record index otherwise.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ftwizard.errors import UserError

BOM = b"\xef\xbb\xbf"
KINDS = ("jsonl", "json", "csv", "parquet")
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}
# CSV cells in these columns that hold JSON (a list of turns) are decoded.
_JSON_COLUMNS = {"messages", "conversations", "chosen", "rejected", "prompt", "completion"}
SNIPPET = 80
# Rows carrying one of these problems have no value: nothing past the loader may look inside them.
UNREADABLE = ("json.invalid", "json.too_deep", "row.too_large")
# No real example nests deeper than a few dozen levels; deeper rows would exhaust Python's stack.
MAX_DEPTH = 100
# Default cap on one row's size in characters (bytes for JSONL): 32 per token at the largest
# max length the config allows. Lint passes a cap from its own max length.
MAX_ROW_CHARS = 32 * 131072


@dataclass(slots=True)
class Problem:
    """A problem found below the row level (syntax, encoding): rule id, message, details."""

    rule: str
    message: str
    field: str | None = None
    snippet: str | None = None


@dataclass(slots=True)
class Record:
    """One row of the file. `value` is None when the row could not be parsed at all."""

    row: int
    value: Any
    problems: list[Problem] = field(default_factory=list)
    raw: bytes | None = None  # the exact JSONL line (without the newline), for lossless copies

    @property
    def parsed(self) -> bool:
        return self.value is not None or not any(p.rule in UNREADABLE for p in self.problems)


def file_kind(path: Path) -> str:
    """jsonl, json, csv or parquet, from the file name (a .json holding JSON lines is handled later)."""
    kind = _EXTENSIONS.get(Path(path).suffix.lower())
    if kind is None:
        raise UserError(
            f"unsupported file type {Path(path).suffix or '(no extension)'!r}",
            where=str(path),
            fix="use JSONL (.jsonl), JSON (.json), CSV (.csv) or Parquet (.parquet)",
        )
    return kind


def check_readable(path: Path) -> Path:
    """The path, if it is a regular, readable data file; otherwise a UserError saying what it is.

    Never opens anything but a regular file (a FIFO would block in open()). Compressed or
    UTF-16 files named like data files are named as such: their bytes would otherwise show up
    as thousands of "not UTF-8" findings.
    """
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError("file not found", where=str(path), fix="check the path") from None
    except OSError as e:
        raise UserError(f"cannot read the file: {e.strerror}", where=str(path), fix="check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError("this is a folder, not a data file", where=str(path), fix="pass a .jsonl, .json, .csv or .parquet file")
    if not stat.S_ISREG(st.st_mode):
        raise UserError("this is not a regular file (a pipe, socket or device)", where=str(path),
                        fix="save the data to a file first, then pass that file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise UserError(f"cannot read the file: {e.strerror}", where=str(path), fix="check its permissions") from None
    what = sniff_container(head, path)
    if what is not None:
        raise UserError(what[0], where=str(path), fix=what[1])
    return path


def sniff_container(head: bytes, path: Path) -> tuple[str, str] | None:
    """(what, fix) when the first bytes show a compressed or UTF-16 file under a text data name."""
    name = Path(path).name
    if Path(path).suffix.lower() in (".parquet", ".pq"):
        if head and not head.startswith(b"PAR1"):
            return ("this file is not Parquet (it does not start with PAR1)",
                    "check the file; a CSV or JSONL file needs its own extension")
        return None
    if head.startswith(b"\x1f\x8b"):
        return (f"this file is gzip-compressed although it is named {name}",
                f"decompress it first: gunzip -k {name} (or zcat {name} > data.jsonl)")
    if head.startswith(b"PK\x03\x04"):
        return (f"this file is a zip archive (or an Excel workbook) although it is named {name}",
                "unzip it, or export the sheet as CSV")
    if head.startswith(b"(\xb5/\xfd"):
        return (f"this file is zstd-compressed although it is named {name}", f"decompress it first: zstd -d {name}")
    if head.startswith(b"BZh"):
        return (f"this file is bzip2-compressed although it is named {name}", f"decompress it first: bunzip2 -k {name}")
    if head.startswith(b"PAR1"):
        return (f"this file is Parquet although it is named {name}", "rename it to .parquet")
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) >= 4 and (
        head[1::2] == b"\x00" * len(head[1::2]) or head[0::2] == b"\x00" * len(head[0::2])))
    if utf16:
        return (f"this file is UTF-16 text; ftwizard reads UTF-8",
                f"convert it: iconv -f UTF-16 -t UTF-8 {name} > {Path(name).stem}.utf8{Path(name).suffix}")
    return None


def iter_records(path: Path, kind: str | None = None, max_row_chars: int | None = MAX_ROW_CHARS) -> Iterator[Record]:
    """Every row of the file, in order, with its row number and raw-level problems.

    A row over `max_row_chars` (bytes of the line for JSONL, characters of its text otherwise)
    or nested deeper than MAX_DEPTH comes back with no value and a `row.too_large` /
    `json.too_deep` problem: nothing downstream spends time or memory on it. For JSONL the
    line is not even held in memory past the cap.
    """
    path = check_readable(path)
    kind = kind or file_kind(path)
    cap = max_row_chars or MAX_ROW_CHARS
    if kind == "jsonl":
        yield from _iter_jsonl(path, cap)
        return
    if kind == "json":
        records = _iter_json(path, cap)
    elif kind == "csv":
        records = _iter_csv(path)
    elif kind == "parquet":
        records = _iter_parquet(path)
    else:
        raise UserError(f"unknown file kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    for rec in records:
        if rec.value is not None:
            _guard_value(rec, cap)
        yield rec


def _guard_value(rec: Record, cap: int) -> None:
    """Replace a parsed value that is too big or too deep by a problem (see iter_records)."""
    size, depth, longest = _measure(rec.value, cap)
    if depth > MAX_DEPTH:
        rec.problems.append(Problem("json.too_deep", f"row {rec.row} is nested more than {MAX_DEPTH} levels deep; "
                                    "no training example nests like this"))
        rec.value = None
    elif size > cap:
        rec.problems.append(_too_large(rec.row, size, cap, longest[1], longest[0], "characters"))
        rec.value = None


def _measure(value: Any, cap: int) -> tuple[int, int, tuple[str, str]]:
    """(characters of text, nesting depth, (path, text) of the longest string); iterative, stops early."""
    size, depth, longest = 0, 0, ("", "")
    stack = [(value, 1, "")]
    while stack:
        v, d, where = stack.pop()
        if d > depth:
            depth = d
            if depth > MAX_DEPTH:
                break
        if isinstance(v, dict):
            stack.extend((x, d + 1, f"{where}.{k}" if where else str(k)) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, d + 1, f"{where}[{i}]") for i, x in enumerate(v))
        elif isinstance(v, str):
            size += len(v)
            if len(v) > len(longest[1]):
                longest = (where, v)
    return size, depth, longest


_B64 = None


def looks_binary(sample: str | bytes) -> str | None:
    """'base64 data' / 'binary data' when a sample of a long value is not prose, else None."""
    global _B64
    import re

    if isinstance(sample, bytes):
        sample = sample.decode("utf-8", "replace")
    sample = sample[:65536]
    if "base64," in sample[:200] or "data:image" in sample[:200]:
        return "base64 data (a data: URI)"
    if _B64 is None:
        _B64 = re.compile(r"[A-Za-z0-9+/=_-]{200,}")
    runs = sum(len(m.group()) for m in _B64.finditer(sample))
    if runs > 0.6 * len(sample):
        return "base64 data"
    bad = sum(1 for c in sample if c == "\ufffd" or (ord(c) < 32 and c not in "\n\r\t"))
    if bad > 0.05 * len(sample):
        return "binary data"
    return None


def _too_large(row: int, size: int, cap: int, sample: str | bytes, field_: str | None, unit: str) -> Problem:
    kind = looks_binary(sample)
    guess = f"; this looks like {kind} pasted as text" if kind else ""
    return Problem(
        "row.too_large",
        f"row {row} is {size:,} {unit}, far past what any max length can train (cap {cap:,}){guess}; "
        "it was not checked further",
        field=field_ or None, snippet=snippet(sample[:200]),
    )


def snippet(text: str | bytes, center: int | None = None, width: int = SNIPPET) -> str:
    """A short, single-line excerpt, centred on `center` when given."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    start = 0 if center is None else max(0, center - width // 2)
    out = text[start:start + width]
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", " ")
    return ("..." if start > 0 else "") + out + ("..." if start + width < len(text) else "")


def _decode_line(line: bytes, offset: int, lineno: int) -> tuple[str, Problem | None]:
    try:
        return line.decode("utf-8"), None
    except UnicodeDecodeError as e:
        bad = line[e.start:e.start + 4]
        return line.decode("utf-8", "replace"), Problem(
            "encoding.invalid_utf8",
            f"bytes that are not UTF-8 at byte offset {offset + e.start} (line {lineno}, byte {e.start + 1} of the line): "
            f"{bad.hex(' ')}",
            snippet=snippet(line.decode("utf-8", "replace"), e.start),
        )


def _iter_jsonl(path: Path, cap: int = MAX_ROW_CHARS) -> Iterator[Record]:
    offset = 0
    with open(path, "rb") as f:
        lineno = 0
        while True:
            line = f.readline(cap + 1)
            if not line:
                break
            lineno += 1
            start = offset
            offset += len(line)
            if len(line) > cap and not line.endswith(b"\n"):  # a huge row: measure and skip the rest unread
                head, size = line[:4096], len(line)
                del line
                while True:
                    chunk = f.readline(1 << 20)
                    if not chunk:
                        break
                    size += len(chunk)
                    offset += len(chunk)
                    if chunk.endswith(b"\n"):
                        break
                yield Record(lineno, None, [_too_large(lineno, size, cap, head, None, "bytes")])
                continue
            line = line.rstrip(b"\r\n")
            problems: list[Problem] = []
            if lineno == 1 and line.startswith(BOM):
                problems.append(Problem(
                    "encoding.bom",
                    "the file starts with a UTF-8 byte order mark (BOM); many JSON readers reject it",
                ))
                line = line[len(BOM):]
                start += len(BOM)
            if not line.strip():
                continue  # blank lines are harmless in JSONL; readers skip them
            if line.count(b"[") + line.count(b"{") > MAX_DEPTH and _nested_too_deep(line):
                yield Record(lineno, None, [Problem(
                    "json.too_deep", f"line {lineno} is nested more than {MAX_DEPTH} levels deep; "
                    "no training example nests like this", snippet=snippet(line[:200]))], raw=line)
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                text, enc = _decode_line(line, start, lineno)
                if enc is not None:
                    problems.append(enc)
                value = _parse_text(text, lineno, problems, line)
            yield Record(lineno, value, problems, raw=line)


def _nested_too_deep(line: bytes) -> bool:
    """Whether a JSON line nests past MAX_DEPTH (brackets inside strings are not counted)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return "recursion" in str(e).lower() or "depth" in str(e).lower()
    return _measure(value, MAX_ROW_CHARS)[1] > MAX_DEPTH


def _parse_text(text: str, lineno: int, problems: list[Problem], raw: bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        # The position comes from the standard library: orjson's differs between releases
        # (3.8 and 3.13 point at different characters), the stdlib's is stable.
        import json

        try:
            json.loads(text)
            col, msg, pos = e.pos + 1, e.msg, e.pos
        except json.JSONDecodeError as j:
            col, msg, pos = j.colno, j.msg, j.pos
        except RecursionError:
            col, msg, pos = e.pos + 1, f"nested more than {MAX_DEPTH} levels deep", e.pos
        hint_line = text.strip()
        if hint_line in ("[", "]", "{", "}") or hint_line.endswith(",") and lineno == 1 and hint_line.startswith("["):
            msg += "; this looks like a JSON array or pretty-printed JSON saved as .jsonl"
        problems.append(Problem(
            "json.invalid", f"not valid JSON at line {lineno}, column {col}: {msg}", snippet=snippet(text, pos),
        ))
        return None


# JSON arrays above this size are parsed element by element (bounded memory); below it the
# whole file goes through orjson at once, which is faster.
STREAM_JSON_BYTES = 32 << 20
_CHUNK = 1 << 20


def _iter_json(path: Path, cap: int = MAX_ROW_CHARS) -> Iterator[Record]:
    if path.stat().st_size > STREAM_JSON_BYTES:
        with open(path, "rb") as f:
            head = f.read(64)
        if head.removeprefix(BOM).lstrip()[:1] == b"[":
            yield from _stream_json_array(path)
            return
    data = path.read_bytes()
    problems: list[Problem] = []
    if data.startswith(BOM):
        problems.append(Problem("encoding.bom", "the file starts with a UTF-8 byte order mark (BOM); many JSON readers reject it"))
        data = data[len(BOM):]
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        if "recursion" in str(e).lower() or "depth" in str(e).lower():
            yield Record(1, None, problems + [Problem(
                "json.too_deep", f"the file is nested more than {MAX_DEPTH} levels deep; no data set nests like this")])
            return
        # Many .json files are really JSON lines; read them as such when the first line is a whole object.
        first = data.split(b"\n", 1)[0].strip()
        if first.startswith(b"{") and _loads_ok(first):
            yield from _iter_jsonl(path, cap)
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as u:
            line = data.count(b"\n", 0, u.start) + 1
            yield Record(1, None, problems + [Problem(
                "encoding.invalid_utf8",
                f"bytes that are not UTF-8 at byte offset {u.start} (line {line}): {data[u.start:u.start + 4].hex(' ')}",
                snippet=snippet(data[max(0, u.start - 40):u.start + 40]),
            )])
            text = data.decode("utf-8", "replace")
        try:
            import json

            json.loads(text)
            line, col, msg, pos = 1, 1, e.msg, e.pos
        except json.JSONDecodeError as j:
            line, col, msg, pos = j.lineno, j.colno, j.msg, j.pos
        except RecursionError:
            line, col, msg, pos = 1, 1, f"nested more than {MAX_DEPTH} levels deep", e.pos
        yield Record(1, None, problems + [Problem(
            "json.invalid", f"not valid JSON at line {line}, column {col}: {msg}", snippet=snippet(text, pos),
        )])
        return
    rows = _rows_of(value, path)
    for i, row in enumerate(rows, start=1):
        yield Record(i, row, problems if i == 1 else [])


def _stream_json_array(path: Path) -> Iterator[Record]:
    """Elements of a large top-level JSON array, one at a time: memory follows the largest element.

    The standard library's `raw_decode` parses one value from a position in a buffer; a value
    cut by the end of the buffer fails to parse, so more of the file is read and it is tried
    again. A syntax error ends the stream with its line and column (JSON cannot be resynced).
    """
    import codecs
    import json
    import re

    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")
    strict = codecs.getincrementaldecoder("utf-8")("strict")
    lenient = codecs.getincrementaldecoder("utf-8")("replace")
    pending: list[Problem] = []
    bad_bytes: list[Problem] = []  # attached to the element that holds them
    read_bytes = 0
    buf, pos, line_base, col_base, eof = "", 0, 1, 0, False
    index = 0
    with open(path, "rb") as f:

        def more() -> bool:
            nonlocal buf, pos, line_base, col_base, read_bytes, strict
            chunk = f.read(_CHUNK)
            if strict is not None:
                try:
                    strict.decode(chunk, final=not chunk)
                except UnicodeDecodeError as e:
                    at = read_bytes + e.start
                    bad_bytes.append(Problem("encoding.invalid_utf8", f"bytes that are not UTF-8 at byte offset {at}: "
                                             f"{chunk[e.start:e.start + 4].hex(' ')}"))
                    strict = None
            if read_bytes == 0 and chunk.startswith(BOM):
                pending.append(Problem("encoding.bom", "the file starts with a UTF-8 byte order mark (BOM); many JSON readers reject it"))
                chunk = chunk[len(BOM):]
            read_bytes += len(chunk)
            gone = buf[:pos]
            nl = gone.rfind("\n")
            line_base += gone.count("\n")
            col_base = len(gone) - nl - 1 if nl >= 0 else col_base + len(gone)
            buf = buf[pos:] + lenient.decode(chunk, final=not chunk)
            pos = 0
            return bool(chunk)

        def error(msg: str) -> Record:
            pending.extend(bad_bytes)
            line = line_base + buf.count("\n", 0, pos)
            nl = buf.rfind("\n", 0, pos)
            col = pos - nl if nl >= 0 else col_base + pos + 1
            return Record(index + 1, None, pending + [Problem(
                "json.invalid", f"not valid JSON at line {line}, column {col}: {msg}", snippet=snippet(buf, pos))])

        more()
        pos = space.match(buf, pos).end()
        if buf[pos:pos + 1] != "[":
            yield error("expected '[' at the start of the array")
            return
        pos += 1
        expect_value = True
        while True:
            pos = space.match(buf, pos).end()
            if pos >= len(buf) - 1 and not eof:
                eof = not more()
                continue
            if pos >= len(buf):
                yield error("the array is not closed with ']'")
                return
            if buf[pos] == "]" and (not expect_value or index == 0):
                return
            if not expect_value:
                if buf[pos] != ",":
                    yield error("expected ',' or ']' after an element")
                    return
                pos += 1
                expect_value = True
                continue
            try:
                value, end = decoder.raw_decode(buf, pos)
            except RecursionError:
                yield error(f"an element is nested more than {MAX_DEPTH} levels deep")
                return
            except json.JSONDecodeError as e:
                if not eof:
                    eof = not more()
                    continue
                pos = e.pos
                yield error(e.msg)
                return
            if end >= len(buf) and not eof:  # a number may continue in the next chunk
                eof = not more()
                continue
            if bad_bytes and "\ufffd" in buf[pos:end]:  # the element holding the bad bytes
                pending += bad_bytes
                bad_bytes.clear()
            pos = end
            index += 1
            yield Record(index, value, pending)
            pending = []
            expect_value = False


def _loads_ok(b: bytes) -> bool:
    try:
        orjson.loads(b)
        return True
    except orjson.JSONDecodeError:
        return False


def _rows_of(value: Any, path: Path) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        from ftwizard.data.formats import detect_format

        if detect_format(value) is not None:
            return [value]  # a single example
        lists = [k for k, v in value.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v[:5])]
        if len(lists) == 1:
            return value[lists[0]]
        if len(lists) > 1:
            for key in ("data", "train", "rows", "examples", "records"):
                if key in lists:
                    return value[key]
        raise UserError(
            "the JSON object holds no list of rows" if not lists else f"the JSON object holds several lists of rows: {', '.join(lists)}",
            where=str(path),
            fix="save the rows as a JSON array, or as JSONL (one object a line)",
        )
    raise UserError(
        f"the JSON file holds a single value ({json_kind(value)}), not a list of rows", where=str(path),
        fix="save the rows as a JSON array, or as JSONL (one object a line)",
    )


def json_kind(value: Any) -> str:
    """A value's kind in JSON's words (never a Python type name such as NoneType or str)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "text", dict: "an object", list: "a list", type(None): "null"}.get(type(value), "a value")


_json_kind = json_kind


class _LineDecoder:
    """Feeds the csv reader decoded lines while noting encoding problems and BOMs."""

    def __init__(self, f: io.BufferedReader):
        self.f = f
        self.offset = 0
        self.lineno = 0
        self.pending: list[Problem] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.f.readline()
        if not line:
            raise StopIteration
        start = self.offset
        self.offset += len(line)
        self.lineno += 1
        if self.lineno == 1 and line.startswith(BOM):
            self.pending.append(Problem("encoding.bom", "the file starts with a UTF-8 byte order mark (BOM); many readers reject it"))
            line = line[len(BOM):]
            start += len(BOM)
        text, problem = _decode_line(line, start, self.lineno)
        if problem is not None:
            self.pending.append(problem)
        return text


def _iter_csv(path: Path) -> Iterator[Record]:
    csv.field_size_limit(1 << 30)
    with open(path, "rb") as f:
        lines = _LineDecoder(f)
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = csv.reader(lines, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise UserError(f"not a readable CSV file: {e}", where=f"{path}, line {lines.lineno}") from None
        header_problems = lines.pending
        lines.pending = []
        index = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                index += 1
                yield Record(index, None, [Problem("json.invalid", f"not valid CSV at line {lines.lineno}: {e}")])
                continue
            if not cells:
                continue
            index += 1
            problems = header_problems + lines.pending
            header_problems, lines.pending = [], []
            if len(cells) != len(header):
                problems.append(Problem(
                    "csv.columns",
                    f"{len(cells)} cells where the header has {len(header)} columns (line {lines.lineno})",
                ))
            row: dict[str, Any] = {}
            for name, cell in zip(header, cells):
                row[name] = _csv_cell(name, cell)
            yield Record(index, row, problems)


def _csv_cell(name: str, cell: str) -> Any:
    if name in _JSON_COLUMNS and cell[:1] in ("[", "{"):
        try:
            return orjson.loads(cell)
        except orjson.JSONDecodeError:
            return cell
    return cell


def _iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"not a readable Parquet file: {e}", where=str(path), fix="check that the file is complete") from None
    index = 0
    for batch in pf.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            index += 1
            yield Record(index, _drop_nulls(row))


def _drop_nulls(value: Any) -> Any:
    """Parquet structs carry every field of the schema; a field a row lacks comes back as None."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value
