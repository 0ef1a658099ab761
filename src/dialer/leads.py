"""Lead lists from real CSV files: whatever a spreadsheet or a CRM export produced.

Pure: bytes in, a validated list and a report out; no files, no database. ``parse_leads`` copes with:

- **Encodings**: a byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32) wins; otherwise text with NUL bytes
  in every other position is UTF-16 without a mark; then strict UTF-8; anything else is read as GB18030
  (a superset of GBK and GB2312, what Chinese Excel saves). A file none of these read is refused.
- **Delimiters**: comma, semicolon, tab or ``|``, whichever splits the header and the first rows into
  the same number of columns most consistently.
- **Quoted fields with embedded line breaks** (an address on two lines) and doubled quotes.
- **Numbers** with spaces, dashes, dots, parentheses, full-width digits, ``tel:`` prefixes, a float's
  ``.0``, and scientific notation from spreadsheets (``1.3800138E+10``). A number shown with 6
  significant digits or fewer in scientific notation lost its last digits to the display format and
  is rejected, never guessed.
- **Junk rows**: blank rows are skipped and counted; rows with a different number of columns than the
  header, or without a usable number, are rejected with the reason and their line number.

Numbers are normalised to E.164 (``cti.phone.normalize`` for the list's region). Rows with the same
number are merged into one lead (the first row's values win; empty values are filled from later
rows) and the merge is reported. A lead is linked to an existing customer when the caller's
``customers`` map (E.164 → customer id, looked up by the caller) has its number.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType

from cti.phone import normalize

MAX_BYTES = 50 * 1024 * 1024  # a bigger list is split by its owner; bounds memory here
MAX_FIELD_CHARS = 2000
_DELIMITERS = (",", ";", "\t", "|")
_SCIENTIFIC = re.compile(r"^([0-9])(?:\.([0-9]+))?[eE]\+?([0-9]{1,2})$")
_FLOAT_ZERO = re.compile(r"^([0-9]+)\.0+$")

PHONE_HEADERS = (
    "phone", "phone number", "phone_number", "number", "mobile", "tel", "telephone", "msisdn",
    "电话", "手机", "手机号", "手机号码", "电话号码", "号码", "联系电话",
)  # fmt: skip
NAME_HEADERS = ("name", "full name", "full_name", "customer", "姓名", "名字", "客户", "客户名称")
CONSENT_HEADERS = ("consent", "opt_in", "opt-in", "optin", "同意", "授权")
_YES = frozenset({"y", "yes", "true", "1", "是", "同意"})
_NO = frozenset({"n", "no", "false", "0", "否", "不同意", "withdrawn"})


@dataclass(slots=True)
class _Draft:
    name: str
    consent: bool | None
    lines: list[int]
    fields: dict[str, str]


class ImportRefused(ValueError):
    """The file as a whole cannot be read (not a single row is imported)."""


@dataclass(frozen=True, slots=True)
class ImportedLead:
    """One lead from the file: ``phone`` in E.164; ``lines`` the file lines it came from (several
    after a merge); ``fields`` every column of the first row, by header."""

    phone: str
    name: str
    consent: bool | None
    customer_id: int | None
    lines: tuple[int, ...]
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RejectedRow:
    line: int  # the file line the row starts on (1 = the header)
    reason: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportResult:
    encoding: str
    delimiter: str
    columns: tuple[str, ...]
    phone_column: str
    leads: tuple[ImportedLead, ...]
    rejected: tuple[RejectedRow, ...]
    merged: int  # rows folded into an earlier row with the same number
    blank: int  # blank rows skipped
    rows: int  # data rows read (not counting the header)

    def rejected_csv(self) -> bytes:
        """The rejected rows as a CSV report (UTF-8 with a mark, so spreadsheets show Chinese):
        line, reason, then the row's own columns."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["line", "reason", *self.columns])
        for row in self.rejected:
            writer.writerow([row.line, row.reason, *(_defuse(v) for v in row.values)])
        return codecs.BOM_UTF8 + out.getvalue().encode("utf-8")


def _defuse(value: str) -> str:
    # A spreadsheet runs a cell starting with = + - @ as a formula: the report must never do that.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def decode(data: bytes) -> tuple[str, str]:
    """The text of ``data`` and the encoding it was read with (see the module docstring)."""
    for mark, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(mark):
            try:
                return data.decode(name), name
            except UnicodeDecodeError as exc:
                raise ImportRefused(f"the file starts with a {name} mark but is not {name}: {exc}") from exc
    # NUL bytes never occur in text files but are valid UTF-8: UTF-16 without a mark is checked first.
    sample = data[:4096]
    if len(sample) >= 4 and sample.count(0) * 3 >= len(sample):
        name = "utf-16-le" if sample[1::2].count(0) > sample[0::2].count(0) else "utf-16-be"
        try:
            return data.decode(name), name
        except UnicodeDecodeError as exc:
            raise ImportRefused(f"the file looks like UTF-16 but is not: {exc}") from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise ImportRefused(
            "the file is not UTF-8, UTF-16 or GB18030/GBK text; save it as CSV UTF-8"
        ) from exc


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the same, largest number of columns."""
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if not lines:
        raise ImportRefused("the file is empty")
    best, best_score = ",", (-1, -1)
    for delimiter in _DELIMITERS:
        try:
            rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
        except csv.Error:
            continue
        widths = [len(r) for r in rows if r]
        header = widths[0] if widths else 0
        if header < 2:
            continue
        agreeing = sum(1 for w in widths if w == header)
        score = (agreeing, header)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def clean_number(raw: str) -> tuple[str | None, str | None]:
    """A phone cell as digits to normalise, or ``None`` and why it cannot be used.

    Undoes what spreadsheets do to long numbers: ``13800138000.0`` and ``1.3800138E+10``; refuses
    scientific notation that kept 6 significant digits or fewer (the rest were lost).
    """
    text = raw.strip().replace("\u00a0", " ")
    zero = _FLOAT_ZERO.match(text)
    if zero:
        return zero.group(1), None
    sci = _SCIENTIFIC.match(text)
    if sci:
        significant = (sci.group(1) + (sci.group(2) or "")).rstrip("0")
        if len(significant) <= 6:
            return None, f"number in scientific notation lost its last digits: {raw!r}"
        try:
            value = Decimal(text)
        except InvalidOperation:
            return None, f"not a number: {raw!r}"
        if value != value.to_integral_value():
            return None, f"not a whole number: {raw!r}"
        return str(int(value)), None
    return text, None


def _pick(columns: Sequence[str], wanted: str | None, names: Sequence[str]) -> str | None:
    if wanted is not None:
        return wanted if wanted in columns else None
    folded = {c.strip().lower(): c for c in columns}
    for name in names:
        if name in folded:
            return folded[name]
    return None


def parse_leads(
    data: bytes,
    *,
    region: str,
    customers: Mapping[str, int] | None = None,
    phone_column: str | None = None,
    name_column: str | None = None,
    consent_column: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 1000,
) -> ImportResult:
    """Read a lead list (see the module docstring). ``region`` (ISO 3166) reads national numbers.

    Columns are found by their header (English or Chinese) unless named. ``progress(done, total)``
    is called every ``progress_every`` rows and at the end, in lines of the file. Raises
    ``ImportRefused`` when the file as a whole cannot be read; bad rows never raise.
    """
    if len(data) > MAX_BYTES:
        raise ImportRefused(f"the file is over {MAX_BYTES // (1024 * 1024)} MB: split it")
    text, encoding = decode(data)
    text = text.lstrip("\ufeff")
    delimiter = sniff_delimiter(text)
    total_lines = text.count("\n") + 1
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    try:
        header = next(reader)
        while not any(h.strip() for h in header):
            header = next(reader)
    except StopIteration as exc:
        raise ImportRefused("the file has no header row") from exc
    columns = tuple(h.strip() for h in header)
    if len(set(columns)) != len(columns) or any(not c for c in columns):
        raise ImportRefused(f"the header needs distinct, non-empty column names: {list(columns)}")
    phone_col = _pick(columns, phone_column, PHONE_HEADERS)
    if phone_col is None:
        raise ImportRefused(f"no phone column among {list(columns)} (name it 'phone' or '电话')")
    name_col = _pick(columns, name_column, NAME_HEADERS)
    consent_col = _pick(columns, consent_column, CONSENT_HEADERS)
    known = customers or {}

    leads: dict[str, _Draft] = {}
    rejected: list[RejectedRow] = []
    merged = blank = rows = 0
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rejected.append(RejectedRow(line, f"unreadable row: {exc}", ()))
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not any(v.strip() for v in values):
            blank += 1
            continue
        rows += 1
        if progress is not None and rows % progress_every == 0:
            progress(reader.line_num, total_lines)
        row = tuple(values)
        if len(values) != len(columns):
            rejected.append(RejectedRow(start, f"expected {len(columns)} columns, found {len(values)}", row))
            continue
        if any(len(v) > MAX_FIELD_CHARS for v in values):
            rejected.append(RejectedRow(start, f"a value is longer than {MAX_FIELD_CHARS} characters", row))
            continue
        cells = dict(zip(columns, (v.strip() for v in values), strict=True))
        digits, problem = clean_number(cells[phone_col])
        if digits is None:
            rejected.append(RejectedRow(start, problem or "no number", row))
            continue
        number = normalize(digits, region)
        if not number.valid or number.e164 is None:
            reason = number.reason.value if number.reason else "invalid"
            rejected.append(RejectedRow(start, f"not a usable number ({reason}): {cells[phone_col]!r}", row))
            continue
        consent: bool | None = None
        if consent_col is not None and cells[consent_col]:
            flag = cells[consent_col].strip().lower()
            if flag in _YES:
                consent = True
            elif flag in _NO:
                consent = False
            else:
                rejected.append(RejectedRow(start, f"consent must be yes or no: {cells[consent_col]!r}", row))
                continue
        name = cells[name_col] if name_col is not None else ""
        existing = leads.get(number.e164)
        if existing is None:
            leads[number.e164] = _Draft(name, consent, [start], cells)
            continue
        merged += 1
        existing.lines.append(start)
        existing.name = existing.name or name
        # Withdrawn consent anywhere in the file wins over consent given elsewhere: the safe side.
        if consent is False or existing.consent is None:
            existing.consent = False if consent is False else (existing.consent or consent)
        for key, value in cells.items():
            if not existing.fields.get(key) and value:
                existing.fields[key] = value
    if progress is not None:
        progress(total_lines, total_lines)

    out = tuple(
        ImportedLead(
            phone=e164,
            name=draft.name,
            consent=draft.consent,
            customer_id=known.get(e164),
            lines=tuple(draft.lines),
            fields=MappingProxyType(dict(draft.fields)),
        )
        for e164, draft in leads.items()
    )
    return ImportResult(
        encoding=encoding,
        delimiter=delimiter,
        columns=columns,
        phone_column=phone_col,
        leads=out,
        rejected=tuple(rejected),
        merged=merged,
        blank=blank,
        rows=rows,
    )
