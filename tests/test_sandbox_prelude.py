"""The prelude every sandboxed Python solution gets: LeetCode's ListNode/TreeNode helpers
and the bare imports (``List``, ``Counter``, ``inf``, ``xor``, ``SortedList``...).

The helpers are checked on the host (they are a plain module) and end to end in the real
sandbox, on self-contained problems and on real LeetCode (rllm) problems; wrong answers
must still fail, so the comparators are checked on near misses (same values in another
shape, one list node too many)."""

from __future__ import annotations


import pytest

from reasonmill.sandbox import Limits, get_runner, prelude
from reasonmill.sandbox._box_prelude import (
    ListNode,
    TreeNode,
    is_same_list,
    is_same_tree,
    list_node,
    tree_node,
)

LIM = Limits(cpu_seconds=4, wall_timeout=6, nproc=32)
needs_sortedcontainers = pytest.mark.skipif(
    prelude.sortedcontainers_dir() is None, reason="sortedcontainers not installed (a declared dependency)"
)


@pytest.fixture(scope="module")
def runner():
    return get_runner("auto")


def _check(code: str) -> dict:
    """A LeetCode (rllm) style test: the code defines ``check`` and calls it itself."""
    return {"kind": "check", "input": code, "output": ""}


# --- the helpers, on the host -----------------------------------------------------------


def test_tree_node_follows_leetcode_level_order():
    root = tree_node([1, None, 2, 3])
    assert (root.val, root.left, root.right.val) == (1, None, 2)
    assert (root.right.left.val, root.right.right) == (3, None)
    # the children of a missing node are not listed: 4 and 5 hang under 3
    t = tree_node([1, 2, 3, None, None, 4, 5])
    assert (t.right.left.val, t.right.right.val, t.left.left, t.left.right) == (4, 5, None, None)
    assert tree_node([]) is None and tree_node([None]) is None
    assert repr(t) == "TreeNode([1, 2, 3, None, None, 4, 5])"


def test_is_same_tree_compares_shape_and_values():
    assert is_same_tree(tree_node([4, 2, 7, 1, 3]), tree_node([4, 2, 7, 1, 3]))
    assert is_same_tree(None, tree_node([]))
    assert not is_same_tree(tree_node([1, 2]), tree_node([1, None, 2]))  # same values, other shape
    assert not is_same_tree(tree_node([1, 2, 3]), tree_node([1, 2, 4]))
    assert not is_same_tree(tree_node([1, 2, 3]), tree_node([1, 2, 3, 4]))
    assert not is_same_tree(tree_node([1]), None)
    deep = tree_node([0])
    node = deep
    for v in range(1, 20000):  # a 20k-deep chain: no recursion limit
        node.right = TreeNode(v)
        node = node.right
    assert is_same_tree(deep, deep) and not is_same_tree(deep, tree_node([0]))


def test_list_node_and_is_same_list():
    head = list_node([1, 2, 3])
    assert (head.val, head.next.val, head.next.next.val, head.next.next.next) == (1, 2, 3, None)
    assert list_node([]) is None and is_same_list(None, list_node([]))
    assert is_same_list(list_node(range(30000)), list_node(range(30000)))
    assert not is_same_list(list_node([1, 2]), list_node([1, 2, 3]))
    assert not is_same_list(list_node([1, 2, 3]), list_node([1, 2]))
    assert not is_same_list(list_node([1, 2]), list_node([2, 1]))
    cyclic = list_node([1, 2])
    cyclic.next.next = cyclic
    assert not is_same_list(cyclic, list_node([1, 2, 1, 2]))  # terminates
    assert repr(cyclic) == "ListNode([1, 2] -> cycle)"
    # nodes keep identity semantics (hashable, usable in sets), like LeetCode's
    a, b = ListNode(1), ListNode(1)
    assert a != b and len({a, b}) == 2


# --- the program text ------------------------------------------------------------------


def test_program_is_one_header_line_and_hoists_future_imports():
    code = '"""doc"""\nfrom __future__ import annotations\nx = 1\n'
    text = prelude.program(code, "/box/lib")
    lines = text.split("\n")
    assert lines[0] == "from __future__ import annotations"
    assert lines[1].startswith("import sys; sys.path.append('/box/lib'); from _box_prelude import *")
    assert lines[2:] == ['"""doc"""', "", "x = 1", ""]
    compile(text, "solution.py", "exec")
    assert prelude.program("x = 1\n", "/b").count("\n") == 2  # the solution's lines move by one only
    assert "sortedcontainers" in prelude.program("", "/b", sortedcontainers=True)


def test_sortedcontainers_is_imported_only_when_named():
    assert prelude.names_sortedcontainers("sl = SortedList()")
    assert prelude.names_sortedcontainers("x = 1", "from sortedcontainers import SortedDict")
    assert prelude.names_sortedcontainers("s = SortedKeyList(key=abs)")
    assert not prelude.names_sortedcontainers("sorted_list = sorted(a)", "MySortedListLike = 1")


# --- in the sandbox --------------------------------------------------------------------

INVERT = """
class Solution:
    def invertTree(self, root: Optional[TreeNode]) -> Optional[TreeNode]:
        if root:
            root.left, root.right = self.invertTree(root.right), self.invertTree(root.left)
        return root
"""
INVERT_TESTS = """
def check(candidate):
    assert is_same_tree(candidate(root=tree_node([4, 2, 7, 1, 3, 6, 9])), tree_node([4, 7, 2, 9, 6, 3, 1]))
    assert is_same_tree(candidate(root=tree_node([])), tree_node([]))

check(Solution().invertTree)
"""
REVERSE = """
class Solution:
    def reverseList(self, head: Optional[ListNode]) -> Optional[ListNode]:
        prev = None
        while head:
            head.next, prev, head = prev, head, head.next
        return prev
"""
REVERSE_TESTS = """
def check(candidate):
    assert is_same_list(candidate(head=list_node([1, 2, 3])), list_node([3, 2, 1]))
    assert is_same_list(candidate(head=list_node([])), list_node([]))

check(Solution().reverseList)
"""


def test_tree_and_list_problems_pass_and_near_misses_fail(runner):
    cases = [
        (INVERT, INVERT_TESTS, "passed"),
        # swaps the root's children only: the right values at depth 1, wrong below
        (INVERT.replace("self.invertTree(root.right), self.invertTree(root.left)", "root.right, root.left"),
         INVERT_TESTS, "failed"),  # fmt: skip
        (REVERSE, REVERSE_TESTS, "passed"),
        (REVERSE.replace("return prev", "return head"), REVERSE_TESTS, "failed"),
        # drops the last node: every value it returns is right
        (REVERSE.replace("return prev", "return prev and prev.next and ListNode(prev.val, prev.next.next)"),
         REVERSE_TESTS, "failed"),  # fmt: skip
    ]
    for code, tests, status in cases:
        (res,) = runner.run(code, [_check(tests)], LIM)
        assert res.status == status, (code, res)


def test_a_solution_defining_its_own_node_class_still_works(runner):
    """Models often uncomment LeetCode's ``class TreeNode`` stub: the helpers keep
    building the prelude's nodes, which have the same attributes."""
    stub = "class TreeNode:\n    def __init__(self, x):\n        self.val, self.left = x, None\n        self.right = None\n"
    code = stub + INVERT
    (res,) = runner.run(code, [_check(INVERT_TESTS)], LIM)
    assert res.status == "passed", res


def test_bare_names_solutions_use(runner):
    code = "def f(n):\n    return n\n"
    asserts = [
        "assert pow(3, 200, 7) == 2",  # the builtin, not math.pow / operator.pow
        "assert abs(-2) == 2 and inf > 10**18 and comb(5, 2) == 10 and gcd(12, 18) == 6",
        "assert ascii_lowercase[:3] == 'abc' and reduce(xor, [1, 2, 3]) == 0",
        "assert list(pairwise('ab')) == [('a', 'b')] and list(accumulate([1, 2])) == [1, 3]",
        "assert Counter('aab')['a'] == 2 and defaultdict(list)[0] == [] and deque([1]).popleft() == 1",
        "assert bisect_left([1, 3], 2) == 1 and nlargest(1, [3, 9]) == [9]",
        "h = []; heappush(h, 2); heappush(h, 1); assert heappop(h) == 1",
        "assert List[int] and Optional[str] and re.fullmatch('a+', 'aa')",
        "assert string.digits and random.random() < 1 and datetime.date(2024, 1, 1).weekday() == 0",
        "assert cache(lambda: 1)() == 1 and sys.maxsize and itertools and functools and collections and math",
    ]
    res = runner.run(code, [{"kind": "assert", "input": a, "output": ""} for a in asserts], LIM)
    failing = [(r.index, r.message) for r in res if not r.passed]
    assert [r.status for r in res] == ["passed"] * len(asserts), failing


@needs_sortedcontainers
def test_sortedcontainers_in_the_sandbox(runner):
    """Running medians with SortedList, as a functional test (harness) and as a stdin
    program (solution.py run alone); a wrong expected output still fails."""
    code = (
        "class Solution:\n    def medians(self, nums: List[int]) -> List[int]:\n"
        "        sl, out = SortedList(), []\n"
        "        for x in nums:\n            sl.add(x)\n            out.append(sl[(len(sl) - 1) // 2])\n"
        "        return out\n"
    )
    tests = [
        {"kind": "functional", "input": "[2, 8, 6, 4, 10]", "output": "[2, 2, 6, 4, 6]"},
        {"kind": "functional", "input": "[2, 8, 6, 4, 10]", "output": "[2, 2, 6, 6, 6]"},
    ]
    res = runner.run(code, tests, LIM, fn_name="medians")
    assert [r.status for r in res] == ["passed", "failed"], res
    stdin = code + "print(*Solution().medians(list(map(int, input().split()))))\n"
    (res,) = runner.run(stdin, [{"kind": "stdin", "input": "2 8 6 4 10\n", "output": "2 2 6 4 6\n"}], LIM)
    assert res.status == "passed", res
