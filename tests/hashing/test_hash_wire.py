"""The digest commands' text, as both ends read and write it: one algorithm table,
the FEAT line, X* arguments and the 213 answer."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fileferry.digests import new_digest
from fileferry.protocol import hashcommands
from fileferry.protocol.hashcommands import (
    ALGORITHMS,
    BY_NAME,
    LEGACY,
    TABLE,
    HashAnswer,
    _split_legacy,
    format_answer,
    legacy_argument,
    parse_answer,
    parse_feature,
    parse_legacy_answer,
)

# --- the table ------------------------------------------------------------------------


def test_the_table_is_what_the_server_announces():
    # FEAT and OPTS HASH are byte for byte what they were before the table.
    assert ALGORITHMS == ("SHA-256", "SHA-512", "SHA-1", "MD5", "CRC32")
    assert LEGACY == {
        "XCRC": "CRC32",
        "XMD5": "MD5",
        "XSHA1": "SHA-1",
        "XSHA256": "SHA-256",
        "XSHA512": "SHA-512",
    }
    assert hashcommands.features("SHA-256") == (
        "HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32",
        "XCRC",
        "XMD5",
        "XSHA1",
        "XSHA256",
        "XSHA512",
    )


@pytest.mark.parametrize("algorithm", [a.name for a in TABLE])
def test_hex_lengths_match_the_digests_both_sides_compute(algorithm):
    digest = new_digest(algorithm)
    digest.update(b"fileferry")
    assert len(digest.hexdigest()) == BY_NAME[algorithm].hex_length


@pytest.mark.parametrize("selected", ALGORITHMS)
def test_the_feat_line_reads_back(selected):
    line = hashcommands.features(selected)[0]
    name, _, listed = line.partition(" ")
    assert name == "HASH"
    assert parse_feature(listed) == ALGORITHMS


def test_parse_feature_is_lenient_about_what_other_servers_write():
    assert parse_feature(" sha-1 ;MD5* ; ;CRC32;MD5") == ("SHA-1", "MD5", "CRC32")
    assert parse_feature("") == ()
    assert parse_feature("SHA-384*") == ("SHA-384",)


# --- X* arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "start", "end", "arg"),
    [
        ("a.bin", 0, None, "a.bin"),
        ("a.bin", 0, 10, "a.bin 0 10"),
        ("my file", 0, None, '"my file"'),
        ("my file", 5, 10, '"my file" 5 10'),
        # Unquoted, this would read as file "x" and range 1-2.
        ("x 1 2", 0, None, '"x 1 2"'),
        # Quotes cannot be inside quotes; without a space they need none.
        ('say"hi', 0, None, 'say"hi'),
        ('say "hi" now', 0, 4, 'say "hi" now 0 4'),
    ],
)
def test_legacy_argument(path, start, end, arg):
    assert legacy_argument(path, start, end) == arg
    assert _split_legacy(arg) == (path, start, end)


@pytest.mark.parametrize(("path", "arg"), [(" lead", '" lead"'), ("trail ", '"trail "')])
def test_spaces_at_the_ends_are_kept_by_quoting(path, arg):
    assert legacy_argument(path) == arg
    assert _split_legacy(arg) == (path, 0, None)


@pytest.mark.parametrize("path", ['"quoted', 'say "x" 1 2'])
def test_legacy_argument_refuses_what_no_form_can_carry(path):
    with pytest.raises(ValueError):
        legacy_argument(path)


names = st.text(
    alphabet=st.sampled_from(["a", "b", " ", '"', "1", "0", "é", "-", "\t"]), max_size=12
)
offsets = st.integers(0, 2**63 - 1)


@settings(max_examples=400, deadline=None)
@given(path=names, start=offsets, length=st.one_of(st.none(), offsets))
def test_legacy_argument_is_read_back_by_the_servers_parser(path, start, length):
    end = None if length is None else min(start + length, 2**63 - 1)
    try:
        arg = legacy_argument(path, start, end)
    except ValueError:
        # Only a name with a quote in it can be impossible to say.
        assert '"' in path
        return
    assert _split_legacy(arg) == (path, start if end is not None else 0, end)


@settings(max_examples=200, deadline=None)
@given(path=names.filter(lambda p: '"' not in p), start=offsets)
def test_a_name_without_quotes_can_always_be_said(path, start):
    assume(path)
    for end in (None, start):
        arg = legacy_argument(path, start, end)
        assert _split_legacy(arg) == (path, start if end is not None else 0, end)


# --- answers ------------------------------------------------------------------------------


def test_parse_answer():
    text = "SHA-256 0-9 0123abcdef /dir/my file.bin"
    assert parse_answer(text) == HashAnswer("SHA-256", 0, 9, "0123abcdef", "/dir/my file.bin")
    assert parse_answer("md5 5-5 ABCDEF") == HashAnswer("MD5", 5, 5, "abcdef", "")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SHA-256",
        "SHA-256 0-9",
        "SHA-256 0:9 abcd x",
        "SHA-256 0- abcd x",
        "SHA-256 x-9 abcd x",
        "SHA-256 0-9 xyz! x",
        "SHA-256 0-9  x",
        "SHA-256 \u0661-9 abcd x",
    ],
)
def test_parse_answer_refuses(text):
    with pytest.raises(ValueError):
        parse_answer(text)


@settings(max_examples=200, deadline=None)
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    first=offsets,
    last=offsets,
    data=st.binary(max_size=64),
    path=st.text(max_size=30).map(lambda p: "/" + p),
)
def test_the_servers_answer_reads_back(algorithm, first, last, data, path):
    digest = new_digest(algorithm)
    digest.update(data)
    hexdigest = digest.hexdigest()
    answer = parse_answer(format_answer(algorithm, first, last, hexdigest, path))
    assert answer == HashAnswer(algorithm, first, last, hexdigest, path)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_answer_raises_only_value_error(text):
    try:
        answer = parse_answer(text)
    except ValueError:
        return
    assert answer.first >= 0 and answer.last >= 0
    int(answer.hexdigest, 16)


def test_parse_legacy_answer():
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert parse_legacy_answer(md5.upper(), "MD5") == md5
    assert parse_legacy_answer(f"MD5 of x.bin is {md5}.", "MD5") == md5
    assert parse_legacy_answer(f"file\n{md5}\nEnd", "MD5") == md5
    assert parse_legacy_answer("1234ABCD", "CRC32") == "1234abcd"
    # A longer run of hex digits is some other digest, not this one's prefix.
    with pytest.raises(ValueError):
        parse_legacy_answer("ab" * 32, "MD5")
    with pytest.raises(ValueError):
        parse_legacy_answer("no digest here", "SHA-1")
