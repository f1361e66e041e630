"""Programs written to fake a pass must fail, in every test kind, while correct ones pass.

Each attack is a wrong ``add`` (or a wrong program around a right-looking one) run in the
real sandbox against ``add(20260, 1207) == 21467`` as a functional, an ``assert`` and a
``check`` test (a number that appears nowhere else, so a thief that finds it found the
test). The first three are the forgeries that used to score 1.0 (issue 13): an object
whose ``__eq__`` is always True, reading the expected outputs from the box, and fake
``done`` lines on file descriptors 3-19. The rest try the other doors we could think of.
"""

from __future__ import annotations

import json
import shutil

import pytest

from reasonmill.sandbox import Limits, Runner, get_runner
from reasonmill.sandbox.backends import BwrapBackend

LIM = Limits(cpu_seconds=4, wall_timeout=4, nproc=32)

TESTS = [
    {"kind": "functional", "input": "20260\n1207", "output": "21467"},
    {"kind": "assert", "input": "assert add(20260, 1207) == 21467", "output": ""},
    {"kind": "check", "input": "def check(candidate):\n    assert candidate(20260, 1207) == 21467\n", "output": "add"},
]

#: Fake result lines for every test index, in every status a harness might trust (with a
#: wrong value: a right one would only be the answer, hard-coded).
FAKE_LINES = (
    "lines = ''.join(\n"
    "    json.dumps({'event': e, 'i': i, 'status': s, 'message': '', 'value': {'v': 4, 'n': []},\n"
    "                'ok': {'v': 4, 'n': []}, 's': i, 'out': ''}) + '\\n'\n"
    "    for i in range(-1, 8) for e in ('start', 'done') for s in ('passed', 'returned'))\n"
)

ATTACKS = {
    "eq_always_true": """
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__

def add(a, b):
    return Anything()
""",
    "reads_expected_outputs_from_the_box": """
import glob, json, os, re

def _steal():
    found = []
    for path in glob.glob('/box/**', recursive=True) + glob.glob('/tmp/**', recursive=True):
        try:
            text = open(path, encoding='utf-8', errors='replace').read()
        except OSError:
            continue
        found += re.findall(r'"output": "(\\d+)"', text) + re.findall(r'== (\\d+)', text)
    for p in ('/proc/%d/cmdline' % os.getppid(), '/proc/%d/environ' % os.getppid(), '/proc/%d/fd/0' % os.getppid()):
        try:
            found += re.findall(r'== (\\d+)', open(p, errors='replace').read())
        except OSError:
            pass
    return found

STOLEN = _steal()

def add(a, b):
    return int(STOLEN[0]) if STOLEN else -1
""",
    "fake_done_lines_on_fds_3_to_19": """
import json, os
""" + FAKE_LINES + """
def _spray():
    for fd in range(3, 20):
        try:
            os.write(fd, lines.encode())
        except OSError:
            pass

_spray()

def add(a, b):
    _spray()
    return 0
""",
    "int_subclass_with_eq": """
class Int(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__

def add(a, b):
    return Int(a - b)
""",
    "str_subclass_and_list_subclass": """
class L(list):
    def __eq__(self, other):
        return True

def add(a, b):
    return L([a, b])
""",
    "monkeypatched_builtins": """
import builtins
builtins.AssertionError = type('AssertionError', (Exception,), {})
builtins.isinstance = lambda *a: True
builtins.abs = lambda x: 0
builtins.len = lambda x: 3
builtins.int = lambda *a: 3

def add(a, b):
    return a - b
""",
    "shadows_checking_names": """
def sorted(x):
    return 3
def len(x):
    return 3
def is_same_tree(a, b):
    return True
def check(candidate):
    pass

def add(a, b):
    return a - b
""",
    "sys_exit_0_at_import": """
import sys
def add(a, b):
    return 0
sys.exit(0)
""",
    "sys_exit_0_in_the_call": """
import sys
def add(a, b):
    sys.exit(0)
""",
    "os_exit_0_at_import": """
import os
def add(a, b):
    return 0
os._exit(0)
""",
    "os_exit_0_in_the_call": """
import os
def add(a, b):
    os._exit(0)
""",
    "overrides_sys_exit_and_exits": """
import os, sys
sys.exit = lambda *a: None
os._exit = lambda *a: None
def add(a, b):
    raise SystemExit(0)
""",
    "prints_fake_markers": """
import json, sys
""" + FAKE_LINES + """
def add(a, b):
    print(lines)
    sys.stderr.write(lines)
    print('PASSED\\nall tests passed\\n3')
    return 4
""",
    "kills_its_parent_then_answers_wrong": """
import os, signal
def add(a, b):
    os.kill(os.getppid(), signal.SIGKILL)
    return 0
""",
    "stops_its_parent_with_signals": """
import os, signal
def add(a, b):
    for sig in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM):
        try:
            os.kill(os.getppid(), sig)
        except OSError:
            pass
    return 0
""",
    "reads_the_parents_memory": """
import os, re
def _scan():
    pid = os.getppid()
    try:
        maps = open('/proc/%d/maps' % pid).read().splitlines()
        mem = open('/proc/%d/mem' % pid, 'rb')
    except OSError:
        return None
    for line in maps:
        lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
        try:
            mem.seek(lo)
            m = re.search(rb'== (\\d+)', mem.read(hi - lo))
        except (OSError, OverflowError, ValueError):
            continue
        if m:
            return int(m.group(1))
    return None

def add(a, b):
    return _scan() or -1
""",
    "searches_its_own_memory_for_the_test": """
import gc, re, sys
def add(a, b):
    for frame_depth in range(1, 30):
        try:
            f = sys._getframe(frame_depth)
        except ValueError:
            break
        for v in list(f.f_locals.values()) + list(f.f_globals.values()):
            m = re.search(r'== (\\d+)|"output": "(\\d+)"', repr(v)[:100000])
            if m:
                return int(m.group(1) or m.group(2))
    for o in gc.get_objects():
        if isinstance(o, (dict, list)):
            m = re.search(r'== (\\d+)', repr(o)[:100000])
            if m:
                return int(m.group(1))
    return -1
""",
    "forges_replies_on_every_open_fd": """
import json, os
REPLY = ''.join(json.dumps({'ok': {'v': 4, 'n': []}, 's': s, 'out': ''}) + '\\n' for s in range(8))
def _forge():
    for name in os.listdir('/proc/self/fd'):
        try:
            os.write(int(name), REPLY.encode())
        except OSError:
            pass
_forge()
def add(a, b):
    _forge()
    return 0
""",
    "returns_a_generator_or_iterator": """
def add(a, b):
    return (x for x in [21467])
""",
    "returns_a_class_instance_with_reversed_eq": """
class Three:
    def __eq__(self, other):
        return True
    def __req__(self, other):
        return True
    def __index__(self):
        return 21467
def add(a, b):
    return Three
""",
    "hangs_after_forging": """
import os, json
""" + FAKE_LINES + """
def add(a, b):
    for fd in range(3, 20):
        try:
            os.write(fd, lines.encode())
        except OSError:
            pass
    while True:
        pass
""",
}


@pytest.fixture(scope="module", params=["auto", "bwrap, a box per run"])
def runner(request):
    """The default runner (on bubblewrap with cgroups: harness runs forked by a zygote)
    and bubblewrap starting a box for every run."""
    if request.param == "auto":
        return get_runner("auto")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    return Runner(BwrapBackend(reuse_interpreter=False))


def test_correct_add_passes_every_kind(runner):
    res = runner.run("def add(a, b):\n    return a + b\n", TESTS, LIM, fn_name="add")
    assert [r.status for r in res] == ["passed"] * 3, res


def test_a_wrong_add_fails_every_kind(runner):
    res = runner.run("def add(a, b):\n    return a - b\n", TESTS, LIM, fn_name="add")
    assert [r.status for r in res] == ["failed"] * 3, res


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_forged_program_fails_every_kind(runner, name):
    res = runner.run(ATTACKS[name], TESTS, LIM, fn_name="add")
    assert len(res) == 3
    assert [r.passed for r in res] == [False] * 3, [(r.kind, r.status, r.message) for r in res]


def test_the_three_reported_forgeries_fail_for_the_right_reason(runner):
    """The __eq__ object is refused as a non-builtin value; the thief finds nothing to
    steal; the fd sprayer's lines reach only its own reply pipe, where they break the
    protocol (a reply out of sequence), so its process is killed."""
    eq, steal, spray = (runner.run(ATTACKS[k], TESTS, LIM, fn_name="add") for k in
                        ("eq_always_true", "reads_expected_outputs_from_the_box", "fake_done_lines_on_fds_3_to_19"))  # fmt: skip
    assert all(r.status == "error" and "not a builtin type" in r.message for r in eq), eq
    assert [r.status for r in steal] == ["failed"] * 3, steal
    assert all(r.status == "error" and "out of sequence" in r.message for r in spray), spray


def test_stdin_program_cannot_find_the_expected_output(runner):
    """A stdin test's expected output stays on the host: a program searching the box for
    it prints nothing useful."""
    thief = (
        "import glob\nfound = []\n"
        "for p in glob.glob('/box/**', recursive=True) + glob.glob('/tmp/**', recursive=True):\n"
        "    try:\n        found.append(open(p, errors='replace').read())\n    except OSError:\n        pass\n"
        "secret = str(6 * 70707)\n"
        "print(secret if any(secret in t for t in found) else 'nothing')\n"
    )
    (res,) = runner.run(thief, [{"kind": "stdin", "input": "", "output": "424242\n"}], LIM)
    assert res.status == "failed" and res.stdout.strip() == "nothing", res


def test_builtin_values_keep_their_meaning(runner):
    """What crosses the boundary is rebuilt faithfully: tuples stay tuples, sets, dicts
    with int keys, big ints, floats, Counter, nodes; so honest solutions pass."""
    code = (
        "from collections import Counter\n"
        "def f(k):\n"
        "    return [(1, 2), {3, 4}, {5: 'x'}, 10**40, 0.1 + 0.2, Counter('aab'), b'\\x00', None, True][k]\n"
    )
    expected = ["(1, 2)", "{3, 4}", "{5: 'x'}", "10**40", "0.30000000000000004", "Counter({'a': 2, 'b': 1})",
                "b'\\x00'", "None", "True"]  # fmt: skip
    tests = [{"kind": "assert", "input": f"assert f({k}) == {e} and type(f({k})) is type({e})", "output": ""}
             for k, e in enumerate(expected)]  # fmt: skip
    tests.append({"kind": "assert", "input": "assert f(0) != [1, 2]", "output": ""})
    res = runner.run(code, tests, LIM)
    assert [r.status for r in res] == ["passed"] * len(tests), [(r.index, r.message) for r in res if not r.passed]


def test_a_solution_named_like_a_builtin_is_still_the_one_tested(runner):
    """MBPP's ``sum``/``gcd``, HumanEval's ``add``/``digits``: the name the test is about
    is the solution's; a checking name (``len`` around the call) stays the builtin."""
    code = ("def sum(a, b):\n    return a * b\ndef len(x):\n    return 7\ndef f(x):\n    return 'ab'\n"
            "def set(x):\n    return 0\ndef sorted(x):\n    return 0\ndef g(x):\n    return 0\n")  # fmt: skip
    tests = [
        {"kind": "assert", "input": "assert sum(2, 3) == 6", "output": ""},
        {"kind": "assert", "input": "assert len(f(1)) == 2", "output": ""},
        {"kind": "assert", "input": "assert len(f(1)) == 7", "output": ""},
        {"kind": "assert", "input": "assert set([1]) == set(g(1))", "output": ""},
        {"kind": "assert", "input": "assert sorted([1]) == g(1)", "output": ""},
        {"kind": "assert", "input": "assert g(1) == sorted([1])", "output": ""},
    ]
    res = runner.run(code, tests, LIM)
    assert [r.status for r in res] == ["passed", "passed", "failed", "error", "failed", "failed"], res


def test_a_class_posing_as_the_function_or_a_stdlib_origin_does_not_pass(runner):
    """``assert is_even(4)`` with ``is_even`` a class: its instance stays in the worker and
    has no truth value. ``gcd.__module__ = "math"``: the function under test is still the
    solution's own, not the real ``math.gcd``. A solution's ``check`` is not the test's."""
    truthy = "class is_even:\n    def __init__(self, n):\n        pass\n"
    tests = [{"kind": "assert", "input": "assert is_even(4)", "output": ""},
             {"kind": "check", "input": "def check(candidate):\n    assert candidate(4)\n", "output": "is_even"}]  # fmt: skip
    assert [r.passed for r in runner.run(truthy, tests, LIM)] == [False, False]
    liar = "def gcd(a, b):\n    return 0\ngcd.__module__ = 'math'\ngcd.__qualname__ = 'gcd'\n"
    tests = [{"kind": "assert", "input": "assert gcd(12, 18) == 6", "output": ""},
             {"kind": "check", "input": "def check(candidate):\n    assert candidate(12, 18) == 6\n", "output": "gcd"}]  # fmt: skip
    assert [r.status for r in runner.run(liar, tests, LIM)] == ["failed", "failed"]
    own_check = "def check(candidate):\n    pass\ndef f(x):\n    return 0\n"
    test = {"kind": "check", "input": "assert f(1) == 1\n", "output": "f"}
    assert not runner.run(own_check, [test], LIM)[0].passed


def test_a_test_that_swallows_every_error_still_sees_the_hang_and_the_crash(runner):
    """``except:`` in the test's code catches the harness's timeout too; the verdict is
    still the timeout (or the crash), never a pass, and the next test gets a fresh worker."""
    swallow = "try:\n    f(1)\nexcept:\n    pass\n"
    tests = [{"kind": "assert", "input": swallow, "output": ""}, {"kind": "assert", "input": "assert f(2) == 2", "output": ""}]
    hang = "def f(x):\n    while x == 1:\n        pass\n    return x\n"
    crash = "import os\ndef f(x):\n    if x == 1:\n        os.kill(os.getpid(), 9)\n    return x\n"
    assert [r.status for r in runner.run(hang, tests, Limits(cpu_seconds=2, wall_timeout=1, nproc=32))] == ["timeout", "passed"]
    assert [r.status for r in runner.run(crash, tests, LIM)] == ["crashed", "passed"]


def test_in_place_functions_change_the_tests_arguments(runner):
    """LeetCode's "modify nums in-place": list/dict/set arguments come back changed."""
    code = ("def rotate(nums, k):\n    k %= len(nums)\n    nums[:] = nums[-k:] + nums[:-k]\n"
            "def tally(d, key):\n    d[key] = d.get(key, 0) + 1\n")  # fmt: skip
    test = ("nums = [1, 2, 3, 4]\nrotate(nums, 1)\nassert nums == [4, 1, 2, 3]\n"
            "d = {}\ntally(d, 'a')\ntally(d=d, key='a')\nassert d == {'a': 2}\n")  # fmt: skip
    wrong = code.replace("nums[-k:] + nums[:-k]", "nums[k:] + nums[:k]")
    assert [r.status for r in runner.run(code, [{"kind": "assert", "input": test, "output": ""}], LIM)] == ["passed"]
    assert [r.status for r in runner.run(wrong, [{"kind": "assert", "input": test, "output": ""}], LIM)] == ["failed"]


def test_exceptions_of_the_solution_reach_the_test(runner):
    code = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    test = "try:\n    f(-1)\n    raise AssertionError('no error')\nexcept ValueError as e:\n    assert 'negative' in str(e)\n"
    (res,) = runner.run(code, [{"kind": "assert", "input": test, "output": ""}], LIM)
    assert res.status == "passed", res


# --- the wire format, on the host ---------------------------------------------------------


def _roundtrip(value, node_kind=None):
    from reasonmill.sandbox import _box_prelude as p
    from reasonmill.sandbox import _wire

    msg = json.loads(_wire.dumps(_wire.Encoder(node_kind=node_kind).message(value)))
    return _wire.Decoder(p.TreeNode, p.ListNode).message(msg)


def test_wire_rebuilds_builtin_values_and_refuses_the_rest():
    from reasonmill.sandbox import _wire

    value = [(1, -2**70), {frozenset({1}): [None, True, 1.5]}, {"a": b"\xff"}, float("inf"), 3 + 4j, range(1, 9, 2)]
    assert _roundtrip(value) == value
    assert [type(x) for x in _roundtrip(value)] == [tuple, dict, dict, float, complex, range]
    assert list(_roundtrip(iter([1, 2]))) == [1, 2]

    class Int(int):
        pass

    for bad in (Int(3), [object()], {"k": Int(1)}, type("T", (), {})):
        with pytest.raises(_wire.WireError, match="not a builtin type"):
            _wire.Encoder().message(bad)
    loop: list = []
    loop.append(loop)
    with pytest.raises(_wire.WireError, match="contains itself"):
        _wire.Encoder().message(loop)


def test_wire_keeps_node_graphs_and_refuses_forged_messages():
    from reasonmill.sandbox import _box_prelude as p
    from reasonmill.sandbox import _wire

    kind = lambda o: "T" if type(o) is p.TreeNode else "L" if type(o) is p.ListNode else None  # noqa: E731
    cyclic = p.list_node([1, 2, 3])
    cyclic.next.next.next = cyclic.next
    back = _roundtrip(cyclic, kind)
    assert (back.val, back.next.val, back.next.next.next is back.next) == (1, 2, True)
    tree = _roundtrip(p.tree_node([4, 2, 7, 1]), kind)
    assert p.is_same_tree(tree, p.tree_node([4, 2, 7, 1])) and type(tree) is p.TreeNode
    decoder = _wire.Decoder(p.TreeNode, p.ListNode)
    for forged in ({"v": {"$": "ref", "v": ["h", 0]}}, {"v": {"$": "node", "v": 5}, "n": []},
                   {"v": {"$": "eval", "v": "1"}}, {"v": {"k": 1}}, {"v": {"$": "type", "v": "open"}},
                   {"v": {"$": "node", "v": 0}, "n": [["T", 1, 1, None], ["L", 2, None]]}):  # fmt: skip
        with pytest.raises(_wire.WireError):
            decoder.message(forged)
