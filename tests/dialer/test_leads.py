"""Lead lists as real files arrive: encodings, delimiters, line breaks in fields, spreadsheet numbers,
junk rows, duplicates; every bad row is reported with its line and reason, none is lost silently."""

from __future__ import annotations

import codecs
import csv
import io

import pytest

from dialer.leads import ImportRefused, clean_number, decode, parse_leads


def test_utf8_with_a_mark_and_comma() -> None:
    data = codecs.BOM_UTF8 + b"phone,name\n+12125550123,Ann\n"
    result = parse_leads(data, region="US")
    assert (result.encoding, result.delimiter, result.columns) == ("utf-8-sig", ",", ("phone", "name"))
    assert [(lead.phone, lead.name) for lead in result.leads] == [("+12125550123", "Ann")]


def test_gbk_from_chinese_excel_with_chinese_headers() -> None:
    text = "姓名,手机号,备注\r\n张三,138 0013 8000,老客户\r\n李四,13900139000,\r\n"
    result = parse_leads(text.encode("gbk"), region="CN")
    assert result.encoding == "gb18030"
    assert [(lead.name, lead.phone) for lead in result.leads] == [
        ("张三", "+8613800138000"),
        ("李四", "+8613900139000"),
    ]
    assert result.leads[0].fields["备注"] == "老客户"


def test_utf16_tab_separated_as_excel_unicode_text() -> None:
    text = "Name\tPhone\r\nBob\t(212) 555-0123\r\n"
    result = parse_leads(codecs.BOM_UTF16_LE + text.encode("utf-16-le"), region="US")
    assert (result.encoding, result.delimiter) == ("utf-16", "\t")
    assert result.leads[0].phone == "+12125550123"
    no_mark = parse_leads(text.encode("utf-16-le"), region="US")
    assert no_mark.encoding == "utf-16-le" and no_mark.leads[0].phone == "+12125550123"


def test_semicolons_quotes_and_line_breaks_inside_fields() -> None:
    data = (
        "Telefon;Name;Adresse\n"
        '+49 30 1234567;"Müller; Hans";"Hauptstr. 1\nBerlin"\n'
        '+49 30 7654321;"Ann ""the boss"" Lee";x\n'
    ).encode()
    result = parse_leads(data, region="DE", phone_column="Telefon", name_column="Name")
    assert result.delimiter == ";"
    assert [lead.name for lead in result.leads] == ["Müller; Hans", 'Ann "the boss" Lee']
    assert result.leads[0].fields["Adresse"] == "Hauptstr. 1\nBerlin"
    assert [lead.lines for lead in result.leads] == [(2,), (4,)]  # the second row starts on line 4


@pytest.mark.parametrize(
    ("cell", "digits", "problem"),
    [
        ("1.3800138E+10", "13800138000", None),
        ("1.38001384E+10", "13800138400", None),
        ("13800138000.0", "13800138000", None),
        ("1.38001E+10", None, "lost its last digits"),  # Excel's 6-digit display: digits are gone
        ("1.2e3", None, "lost its last digits"),
        (" 138-0013-8000 ", "138-0013-8000", None),
    ],
)
def test_spreadsheet_numbers(cell: str, digits: str | None, problem: str | None) -> None:
    got, why = clean_number(cell)
    assert got == digits
    assert (why is None) if problem is None else (problem in (why or ""))


def test_junk_rows_are_rejected_with_line_and_reason_and_blank_rows_skipped() -> None:
    data = (
        "phone,name,consent\n"
        "13800138000,张三,yes\n"
        "\n"
        ",,\n"
        "not a number,x,\n"
        "12345,short,\n"
        "13900139000,too,many,columns\n"
        "1.38001E+10,lost,\n"
        "13700137000,maybe,perhaps\n"
        "=cmd|' /C calc'!A0,evil,\n"
    ).encode()
    result = parse_leads(data, region="CN")
    assert [lead.phone for lead in result.leads] == ["+8613800138000"]
    assert result.leads[0].consent is True
    assert result.blank == 2
    assert result.rows == 7
    reasons = {row.line: row.reason for row in result.rejected}
    assert set(reasons) == {5, 6, 7, 8, 9, 10}
    assert "not_a_number" in reasons[5]
    assert "not a usable number" in reasons[6]
    assert reasons[7] == "expected 3 columns, found 4"
    assert "lost its last digits" in reasons[8]
    assert "consent must be yes or no" in reasons[9]
    report = list(csv.reader(io.StringIO(result.rejected_csv().decode("utf-8-sig"))))
    assert report[0] == ["line", "reason", "phone", "name", "consent"]
    assert report[1][:3] == ["5", reasons[5], "not a number"]
    assert report[-1][2].startswith("'=")  # never a live formula in the report


def test_duplicates_are_merged_and_linked_to_customers() -> None:
    data = (
        "phone,name,consent,city\n"
        "+8613800138000,,yes,\n"
        "138 0013 8000,张三,,上海\n"
        "0086 138 0013 8000,Zhang,no,北京\n"
        "13900139000,李四,,\n"
    ).encode()
    result = parse_leads(data, region="CN", customers={"+8613900139000": 42})
    assert result.merged == 2
    first, second = result.leads
    assert (first.phone, first.name, first.lines) == ("+8613800138000", "张三", (2, 3, 4))
    assert first.consent is False  # withdrawn anywhere wins
    assert first.fields["city"] == "上海"
    assert (first.customer_id, second.customer_id) == (None, 42)


def test_progress_is_reported_on_large_files() -> None:
    rows = "".join(f"+1212555{i:04d},n{i}\n" for i in range(2500))
    seen: list[tuple[int, int]] = []
    result = parse_leads(
        ("phone,name\n" + rows).encode(), region="US", progress=lambda d, t: seen.append((d, t))
    )
    assert len(result.leads) + len(result.rejected) == 2500
    assert [d for d, _ in seen][:2] == [1001, 2001]
    assert seen[-1][0] == seen[-1][1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"name,city\nAnn,Paris\n", "no phone column"),
        (b"phone,phone\n1,2\n", "distinct"),
        (codecs.BOM_UTF8 + b"\xff\xfe\xfaphone\n", "utf-8-sig"),
    ],
)
def test_unreadable_files_are_refused_as_a_whole(data: bytes, message: str) -> None:
    with pytest.raises(ImportRefused, match=message):
        parse_leads(data, region="US")


def test_decode_prefers_utf8_then_gb18030() -> None:
    assert decode("电话".encode()) == ("电话", "utf-8")
    assert decode("电话".encode("gbk")) == ("电话", "gb18030")
