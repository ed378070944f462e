"""canonical_json and js_number against a real Node.js: our bytes must be a fixed point of
JavaScript's ``JSON.stringify(JSON.parse(body))`` (DESIGN section 2, "Canonical bytes")."""

from __future__ import annotations

import base64
import json
import math
import os
import random
import shutil
import struct
import subprocess
from collections import OrderedDict
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook_core.canonical import MAX_SAFE_INTEGER, canonical_json, check_depth, js_number
from webhook_core.errors import PayloadError

# Reads one base64 line of UTF-8 JSON text per request and answers one line:
# "ok <base64 of JSON.stringify(JSON.parse(text))>" or "err <base64 of the error>".
NODE_ROUND_TRIP = r"""
const readline = require('readline');
const decoder = new TextDecoder('utf-8', { fatal: true });
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  let answer;
  try {
    const text = decoder.decode(Buffer.from(line, 'base64'));
    const out = JSON.stringify(JSON.parse(text));
    answer = 'ok ' + Buffer.from(out, 'utf8').toString('base64');
  } catch (err) {
    answer = 'err ' + Buffer.from(String(err), 'utf8').toString('base64');
  }
  process.stdout.write(answer + '\n');
});
"""


class NodeRoundTrip:
    """One long-lived ``node`` child that re-serialises JSON texts the way receivers do."""

    def __init__(self, node: str) -> None:
        self._process = subprocess.Popen(
            [node, "-e", NODE_ROUND_TRIP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def __call__(self, body: bytes) -> bytes:
        """``JSON.stringify(JSON.parse(body))`` as UTF-8 bytes, computed by Node."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(base64.b64encode(body) + b"\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"node exited with status {self._process.poll()}")
        status, _, payload = line.rstrip(b"\n").partition(b" ")
        decoded = base64.b64decode(payload)
        if status != b"ok":
            raise AssertionError(f"node could not parse {body!r}: {decoded.decode()}")
        return decoded

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


@pytest.fixture(scope="session")
def node_json() -> Iterator[NodeRoundTrip]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("Node.js is required in CI for the canonical JSON round-trip tests")
        pytest.skip("Node.js ('node') is not installed; the round-trip tests need it")
    child = NodeRoundTrip(node)
    try:
        yield child
    finally:
        child.close()


# --- strategies ------------------------------------------------------------------------

SPECIAL_TEXT = [
    "नमस्ते",
    "राजेश कुमार",
    "\u2028",
    "\u2029",
    "\x00",
    "\x01",
    "\x1f",
    "\x7f",
    "\x08\x0c\n\r\t",
    '"',
    "\\",
    "/",
    "</script>",
    "😀",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "\ufeff",
    "\U0010ffff",
    "e\u0301",
    "\u0085",
    "",
]
INDEX_LIKE_KEYS = [
    "0",
    "7",
    "01",
    "00",
    "10",
    "2",
    "-0",
    "-1",
    "1.5",
    "1e3",
    " 1",
    "4294967294",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "__proto__",
    "constructor",
    "length",
]
FLOAT_EDGES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    0.1 + 0.2,
    1.5,
    100.0,
    4.35,
    1e-6,
    1e-7,
    1.234e-6,
    1.234e-7,
    1e20,
    1e21,
    -1e21,
    math.nextafter(1e21, 0.0),
    math.nextafter(1e21, math.inf),
    1e22,
    123e-20,
    2.0**53,
    2.0**53 + 2,
    -(2.0**53),
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    math.nextafter(2.2250738585072014e-308, 0.0),
    1.7976931348623157e308,
    -1.7976931348623157e308,
]

texts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"])),
    st.lists(st.sampled_from(SPECIAL_TEXT), max_size=5).map("".join),
    st.lists(
        st.one_of(st.sampled_from(SPECIAL_TEXT), st.text(st.characters(codec="utf-8"))),
        max_size=4,
    ).map("".join),
)
keys = st.one_of(
    st.sampled_from(INDEX_LIKE_KEYS),
    st.integers(min_value=0, max_value=2**32 + 5).map(str),
    st.integers(min_value=2**32 - 4, max_value=2**32 + 1).map(str),
    texts,
)
safe_ints = st.one_of(
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.sampled_from([0, 1, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**31, 2**32]),
)
finite_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(
        min_value=-2.2250738585072014e-308,
        max_value=2.2250738585072014e-308,
        allow_subnormal=True,
    ),
    st.sampled_from(FLOAT_EDGES),
    st.integers(min_value=-(2**70), max_value=2**70).map(float),
    st.floats(min_value=1e20, max_value=1e22),
    st.floats(min_value=1e-8, max_value=1e-5),
)
scalars = st.one_of(st.none(), st.booleans(), safe_ints, finite_floats, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(keys, children, max_size=6),
        st.dictionaries(keys, children, max_size=3).map(OrderedDict),
        st.dictionaries(keys, children, max_size=3).map(MappingProxyType),
    ),
    max_leaves=40,
)


def as_js_values(value: Any) -> Any:
    """``value`` as JavaScript holds it after parsing: numbers as floats, tuples as lists."""
    if isinstance(value, (list, tuple)):
        return [as_js_values(item) for item in value]
    if isinstance(value, (dict, OrderedDict, MappingProxyType)):
        return {key: as_js_values(item) for key, item in value.items()}
    if type(value) is int:
        return float(value)  # exact: only safe integers get this far
    return value


NODE_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- agreement with Node.js --------------------------------------------------------------


@NODE_SETTINGS
@given(value=json_values)
def test_bytes_are_a_fixed_point_of_node_round_trip(node_json: NodeRoundTrip, value: Any) -> None:
    ours = canonical_json(value)
    assert node_json(ours) == ours
    # ...and nothing was lost on the way: the bytes mean the value we were given.
    assert json.loads(ours, parse_int=float) == as_js_values(value)


@NODE_SETTINGS
@given(data=st.dictionaries(keys, scalars, max_size=12))
def test_object_key_order_matches_node(node_json: NodeRoundTrip, data: dict[str, Any]) -> None:
    ours = canonical_json(data)
    assert node_json(ours) == ours
    # The order is the one JavaScript gives the keys in their original (insertion) order.
    as_inserted = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    assert list(json.loads(ours)) == list(json.loads(node_json(as_inserted)))


@settings(max_examples=1500, deadline=None)
@given(number=finite_floats)
def test_js_number_matches_node_for_each_float(node_json: NodeRoundTrip, number: float) -> None:
    text = js_number(number)
    assert node_json(f"[{text}]".encode()) == f"[{text}]".encode()
    assert float(text) == number


def test_js_number_for_random_bit_patterns_matches_node(node_json: NodeRoundTrip) -> None:
    rng = random.Random(20240101)
    numbers: list[float] = list(FLOAT_EDGES)
    while len(numbers) < 30_000:
        (number,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(number):
            numbers.append(number)
    numbers += [rng.uniform(-1e6, 1e6) for _ in range(5_000)]
    numbers += [float(rng.randint(-(2**60), 2**60)) for _ in range(5_000)]
    ours = [js_number(n) for n in numbers]
    theirs = node_json(canonical_json(numbers)).decode().strip("[]").split(",")
    mismatches = [(n, o, t) for n, o, t in zip(numbers, ours, theirs, strict=True) if o != t]
    assert mismatches == []
    assert all(float(text) == n for n, text in zip(numbers, ours, strict=True))


def test_random_safe_integers_match_node(node_json: NodeRoundTrip) -> None:
    rng = random.Random(7)
    numbers = [rng.randint(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) for _ in range(20_000)]
    numbers += [rng.randint(-1000, 1000) for _ in range(1_000)]
    ours = canonical_json(numbers)
    assert node_json(ours) == ours


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-2.0, "-2"),
        (0.5, "0.5"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (123.456, "123.456"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (math.nextafter(1e21, 0.0), "999999999999999900000"),
        (2.0**53, "9007199254740992"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-1.25e-10, "-1.25e-10"),
    ],
)
def test_js_number_known_values(node_json: NodeRoundTrip, number: float, expected: str) -> None:
    assert js_number(number) == expected
    assert node_json(f"[{expected}]".encode()) == f"[{expected}]".encode()


def test_index_like_keys_come_first_in_numeric_order(node_json: NodeRoundTrip) -> None:
    value = {
        "b": 1,
        "a": 2,
        "10": 3,
        "2": 4,
        "01": 5,
        "4294967295": 6,
        "4294967294": 7,
        "0": 8,
        "-1": 9,
    }
    ours = canonical_json(value)
    assert ours == (b'{"0":8,"2":4,"10":3,"4294967294":7,"b":1,"a":2,"01":5,"4294967295":6,"-1":9}')
    assert node_json(ours) == ours


def test_strings_are_escaped_as_javascript_does(node_json: NodeRoundTrip) -> None:
    value = {"s": "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028\u2029नमस्ते😀'}
    ours = canonical_json(value)
    assert node_json(ours) == ours
    assert "नमस्ते😀".encode() in ours  # non-ASCII goes out as UTF-8, not \u escapes
    assert b"\\u001f" in ours
    assert b"\\n" in ours


def test_tuples_and_mappings_encode_like_lists_and_dicts(node_json: NodeRoundTrip) -> None:
    plain = {"a": [1, 2.5, {"7": None, "x": "y"}], "b": True}
    exotic = MappingProxyType({"a": (1, 2.5, OrderedDict([("x", "y"), ("7", None)])), "b": True})
    assert canonical_json(exotic) == canonical_json(plain)
    assert node_json(canonical_json(exotic)) == canonical_json(plain)


def test_maximum_depth_is_accepted(node_json: NodeRoundTrip) -> None:
    value: Any = 1
    for _ in range(64):
        value = [value]
    ours = canonical_json(value)
    assert ours == b"[" * 64 + b"1" + b"]" * 64
    assert node_json(ours) == ours


# --- refusals: PayloadError naming the field ---------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"data": {"items": [1, 2, {"price": math.nan}]}}, "$.data.items[2].price"),
        ({"data": {"items": [1, 2, {"price": math.inf}]}}, "$.data.items[2].price"),
        ({"data": {"items": [1, 2, {"price": -math.inf}]}}, "$.data.items[2].price"),
        ({"data": {"amount": 2**53}}, "$.data.amount"),
        ({"data": {"amount": -(2**53)}}, "$.data.amount"),
        ({"data": {"amount": 10**30}}, "$.data.amount"),
        ({"data": {"tags": ("a", 2**63)}}, "$.data.tags[1]"),
        ({"data": {7: "seven"}}, "$.data"),
        ({"data": {None: "none"}}, "$.data"),
        ({"data": {("a",): 1}}, "$.data"),
        ({"data": {"name": "ok\ud800"}}, "$.data.name"),
        ({"data": {"names": ["fine", "\udfff"]}}, "$.data.names[1]"),
        ({"data": {"\ud83d": 1}}, "$.data (key '\\ud83d')"),
        ({"data": {"set": {1, 2}}}, "$.data.set"),
        ({"data": {"blob": b"bytes"}}, "$.data.blob"),
        ({"data": {"blob": bytearray(b"x")}}, "$.data.blob"),
        ({"data": {"obj": Opaque()}}, "$.data.obj"),
        ({"data": {"n": 1j}}, "$.data.n"),
        ({"data": {"first name": math.nan}}, '$.data["first name"]'),
        ({"data": {"0": math.nan}}, '$.data["0"]'),
        ({"data": {"नाम": math.nan}}, "$.data.नाम"),
        ([0, [1, [2, math.nan]]], "$[1][1][1]"),
        (math.nan, "$"),
        (2**53, "$"),
    ],
)
def test_refusals_name_the_field(value: Any, path: str) -> None:
    with pytest.raises(PayloadError) as info:
        canonical_json(value)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")


def test_refusal_reasons_say_what_is_wrong() -> None:
    cases: list[tuple[Any, str]] = [
        ({"x": math.nan}, "nan"),
        ({"x": 2**53}, "safe range"),
        ({7: 1}, "not a string"),
        ({"x": "\ud800"}, "surrogate"),
        ({"x": {1, 2}}, "set"),
        ({"x": Opaque()}, "Opaque"),
    ]
    for value, words in cases:
        with pytest.raises(PayloadError) as info:
            canonical_json(value)
        assert words in info.value.reason


def test_safe_integer_boundaries_are_accepted(node_json: NodeRoundTrip) -> None:
    ours = canonical_json([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER])
    assert ours == b"[9007199254740991,-9007199254740991]"
    assert node_json(ours) == ours


def test_custom_root_path_prefixes_errors() -> None:
    with pytest.raises(PayloadError) as info:
        canonical_json({"price": math.nan}, path="data")
    assert info.value.path == "data.price"


def test_too_deep_is_refused_with_its_path() -> None:
    value: Any = 1
    for _ in range(65):
        value = [value]
    with pytest.raises(PayloadError) as info:
        canonical_json(value)
    assert info.value.path == "$" + "[0]" * 65
    assert "64" in info.value.reason

    nested: Any = {}
    for _ in range(65):
        nested = {"k": nested}
    with pytest.raises(PayloadError) as info:
        canonical_json(nested)
    assert info.value.path == "$" + ".k" * 65


@given(value=json_values, bad=st.sampled_from([math.nan, math.inf, 2**53, b"x", {1}]))
@settings(max_examples=200, deadline=None)
def test_a_bad_leaf_anywhere_is_refused_with_its_exact_path(value: Any, bad: Any) -> None:
    container = {"data": {"wrapper": [value, {"leaf": bad}]}}
    with pytest.raises(PayloadError) as info:
        canonical_json(container)
    # The good value comes first, so the reported field is the bad leaf.
    assert info.value.path == "$.data.wrapper[1].leaf"


@pytest.mark.parametrize("leaf", [1, "s", None, 1.5, True, {}, [], {"k": 1}, [1]])
@pytest.mark.parametrize("levels", [63, 64, 65])
@pytest.mark.parametrize("wrap", ["list", "dict"])
def test_check_depth_refuses_what_canonical_json_refuses_with_the_same_path(
    leaf: Any, levels: int, wrap: str
) -> None:
    value: Any = leaf
    for _ in range(levels):
        value = [value, "beside"] if wrap == "list" else {"k": value, "x": "beside"}
    try:
        canonical_json(value)
    except PayloadError as exc:
        with pytest.raises(PayloadError) as info:
            check_depth(value)
        assert (info.value.path, info.value.reason) == (exc.path, exc.reason)
    else:
        check_depth(value)
