"""The error classes of issue 14, each with cases written by us: e-notation references,
the numeric tolerance policy, references that do not parse, equations and named values,
extraction shapes, false accepts, degenerate outputs, size and complexity guards, and
linear-time extraction on adversarial input."""

from __future__ import annotations

import time

import pytest

from reasonmill.verify.extract import extract_answer
from reasonmill.verify.math import MathSettings, check
from reasonmill.verify.math_forms import e_notation, split_top, too_complex
from reasonmill.verify.math_numeric import numbers_match, precision_hint


@pytest.mark.parametrize(
    "gold,answer,passed",
    [
        # e-notation references are numbers, not Euler's e
        ("1e-5", "\\boxed{0.00001}", True),
        ("2.45e6", "\\boxed{2450000}", True),
        ("4.5e33", "\\boxed{4.5 \\times 10^{33}}", True),
        ("1e-5", "\\boxed{0.0001}", False),
        ("2e^{x}", "\\boxed{2e^{x}}", True),  # a real e stays e
        # tolerance: relative 1e-4 for non-integers, exact for integers
        ("6630", "\\boxed{6630.65}", True),
        ("\\frac{600}{7}", "\\boxed{85.71}", True),
        ("\\frac{600}{7}", "\\boxed{85.6}", False),
        ("204", "\\boxed{205}", False),
        ("123456", "\\boxed{123457}", False),  # within 1e-4 but both integers: exact
        ("3.14", "\\boxed{3.1416}", True),  # the reference's own precision (3 figures)
        ("3.14", "\\boxed{3.15}", False),
        ("0.5", "\\boxed{0.45}", False),  # one figure says too little to round to
        # equations and named values
        ("x(t)=3e^{-2t}", "\\boxed{x(t) = 3e^{-2t}}", True),
        ("x(t)=3e^{-2t}", "\\boxed{3e^{-2t}}", True),
        ("x(t)=3e^{-2t}", "\\boxed{x(t) = 3e^{-t}}", False),
        ("(x)=x^2-2x+2", "\\boxed{g(x) = x² - 2x + 2}", True),  # gold lost its name; Unicode square
        ("m", "\\boxed{b = m}", True),
        ("y = 2x + 1", "\\boxed{x = \\frac{y-1}{2}}", True),
        (
            "\\frac{dM}{dt}=\\frac{10^{5}L_{\\odot}}{0.007c^{2}M_{\\odot}^{6}}M^{6}",
            "\\boxed{\\frac{dM}{dt} = \\frac{10^5 L_\\odot M^6}{0.007 c^2 M_\\odot^6}}",
            True,
        ),
        (
            "\\frac{dM}{dt}=\\frac{10^{5}L_{\\odot}}{0.007c^{2}M_{\\odot}^{6}}M^{6}",
            "\\boxed{\\frac{dM}{dt} = \\frac{10^5 L_\\odot M^5}{0.007 c^2 M_\\odot^6}}",
            False,
        ),
        ("-2,-2", "\\boxed{(-2, -2)}", True),
        ("-2,-2", "\\boxed{a = -2, b = -2}", True),
        ("-2,-3", "\\boxed{a = -2, b = -4}", False),
        ("\\frac{37}{4}m", "\\boxed{\\frac{37m}{4}}", True),  # m is a variable here, not metres
        ("\\frac{37}{4}m", "\\boxed{\\frac{37}{4}}", True),  # ... or metres, as math-verify reads it
        ("\\frac{1}{4-\\omega^2}", "\\boxed{A = \\frac{1}{4-\\omega^2}, \\quad \\text{for } \\omega^2 \\neq 4}", True),
        ("\\frac{\\sinh(at)}{a}", "\\boxed{\\frac{1}{2a}(e^{at}-e^{-at})}", True),
        ("\\frac{\\sinh(at)}{a}", "\\boxed{\\frac{1}{a}(e^{at}-e^{-at})}", False),
        ("E_{1},E_{2}", "\\boxed{E_1, E_2}", True),
        # yes/no before the number
        ("4", "\\boxed{\\text{Yes, } 4}", True),
        ("4", "\\boxed{\\text{No, } 5}", False),
        ("1", "\\boxed{1 \\text{ and } 36}", False),  # two answers, not a number and a unit
        ("5", "\\boxed{5 \\text{ m/s}^{2}}", True),
        # names on both sides: compared by name
        ("a = 1, b = 2", "\\boxed{a = 1, b = 2}", True),
        ("a = 1, b = 2", "\\boxed{b = 2, a = 1}", True),
        ("a = 1, b = 2", "\\boxed{a = 2, b = 1}", False),  # the same values under swapped names
        ("x_1 = \\frac{1}{2}, x_2 = 3", "\\boxed{x_2 = 3, x_1 = 0.5}", True),
        ("x_1 = \\frac{1}{2}, x_2 = 3", "\\boxed{x_1 = 3, x_2 = \\frac{1}{2}}", False),
        # scientific references, micro units, vectors
        ("6.02e23", "\\boxed{6.022 \\times 10^{23}}", True),  # rounds to the reference's 3 figures
        ("6.02 \\times 10^{23}", "\\boxed{6.0249 \\times 10^{23}}", True),
        ("6.02e23", "\\boxed{6.03 \\times 10^{23}}", False),
        ("6.02e23", "\\boxed{6.02 \\times 10^{22}}", False),
        ("1.5e-3", "\\boxed{1.52 \\times 10^{-3}}", False),  # two figures: only the relative tolerance
        ("3.8", "The wavelength is about $\\boxed{3.8 \\, \\mu\\text{m}}$", True),
        ("3.8", "\\boxed{3.8\\mu g}", False),  # \\mu outside \\text is a variable
        ("(1, 2, 3)", "\\boxed{\\langle 1, 2, 3 \\rangle}", True),  # a vector is the tuple it names
        ("(1, 2, 3)", "\\boxed{\\left\\langle 1, 3, 2 \\right\\rangle}", False),
        # an inequality answer for an interval reference
        ("[-1, 3]", "\\boxed{-1 \\le x \\le 3}", True),
        ("[-1, 3]", "\\boxed{-1 < x \\le 3}", False),
        ("(-\\infty, -1) \\cup (3, \\infty)", "\\boxed{x < -1 \\text{ or } x > 3}", True),
        ("(-\\infty, -1) \\cup (3, \\infty)", "\\boxed{x \\le -1 \\text{ or } x > 3}", False),
        ("[2, \\infty)", "\\boxed{x \\geq 2}", True),
        ("[2, \\infty)", "\\boxed{x > 2}", False),
        ("(-1, 3)", "\\boxed{3 > x > -1}", True),
        ("[2, \\infty)", "\\boxed{x \\ge 2 \\text{ or } y < 3}", False),  # two variables: no interval
        # integers beyond 2^53 compare exactly, not as floats (found by the red team)
        ("18446744073709551617", "\\boxed{18446744073709551616}", False),
        ("10000000000000001", "\\boxed{10000000000000000}", False),
        ("2^{64}+1", "\\boxed{18446744073709551616}", False),
        ("2^{64}+1", "\\boxed{18446744073709551617}", True),
        ("9007199254740993", "\\boxed{9007199254740993}", True),
        # tiny numbers are held to the relative tolerance, not to 6 decimal places
        ("1.602 \\times 10^{-19}", "\\boxed{0}", False),
        ("1.602 \\times 10^{-19}", "\\boxed{-5 \\times 10^{-12}}", False),
        ("6.626e-34", "\\boxed{3\\times 10^{-34}}", False),
        ("9.109e-31", "\\boxed{-9.109e-31}", False),
        ("0", "\\boxed{0.0000001}", False),
        ("6.626e-34", "\\boxed{6.626 \\times 10^{-34}}", True),
        ("\\frac{1}{3000}", "\\boxed{0.000333333}", True),
        ("0.0005", "\\boxed{5\\times10^{-4}}", True),
    ],
)
def test_error_classes(gold, answer, passed):
    v = check(gold, answer)
    assert v.passed is passed, v


@pytest.mark.parametrize(
    "gold,answer",
    [
        # a reference that parses only to a fragment never matches a fragment of the answer
        ("\\lambda_{\\text{red}}/\\sqrt{2}", "\\boxed{\\lambda_{\\text{red}}\\sqrt{2}}"),
        ("\\lambda_{\\text{red}}/\\sqrt{2}", "\\boxed{\\lambda_{\\text{blue}}/2}"),
        # a boxed range is not an answer, even when one end is the reference
        ("25", "The price is \\boxed{\\text{between 25 and 75 cents}}."),
        ("75", "The price is \\boxed{\\text{between 25 and 75 cents}}."),
        ("67", "So the answer is \\boxed{67\\sim75}."),
        # a stray number inside boxed prose is not an answer
        ("3", "\\boxed{\\text{the process repeats until all 3 piles are empty and then stops}}"),
        ("2", "\\boxed{\\text{It depends on whether } n \\text{ is even or 2 mod 4}}"),
    ],
)
def test_false_accepts_stay_rejected(gold, answer):
    v = check(gold, answer)
    assert not v.passed, v


def test_unparsed_reference_still_matches_the_same_text():
    v = check("\\lambda_{\\text{red}}/\\sqrt{2}", "\\boxed{\\lambda_{\\text{red}} / \\sqrt{2}}")
    assert v.passed and v.details["via"] == "text", v


def test_precision_stated_by_the_problem():
    problem = "Give the speed in m/s to 2 decimal places."
    assert check("12.35", "\\boxed{12.347}", problem=problem).passed
    assert not check("12.35", "\\boxed{12.3}", problem=problem).passed
    sf = "Express the answer to three significant figures."
    assert check("0.0362", "\\boxed{0.03624}", problem=sf).passed
    assert not check("0.0362", "\\boxed{0.0366}", problem=sf).passed
    assert precision_hint("round to the nearest hundredth") == ("dp", 2)
    assert precision_hint("to 4 significant digits") == ("sf", 4)
    assert precision_hint("How many apples?") is None
    assert numbers_match(2.0, 2.00001, gold_is_int=True, pred_is_int=False) is None  # a contest integer
    assert numbers_match(6630.0, 6630.65, gold_is_int=True, pred_is_int=False) == "relative"
    assert numbers_match(2.0, 3.0, gold_is_int=True, pred_is_int=True) is None


@pytest.mark.parametrize(
    "text,problem,answer,method",
    [
        ("Work...\n**Final answer for Subproblem 1:** 3 bushels", None, "3 bushels", "final_answer"),
        (
            "We solved all parts.\n- Subproblem 0: 12 nm\n- Subproblem 1: 400 nm\n- Subproblem 2: 671.02 nm\n",
            "Subproblem 0: ... Solution: ... Subproblem 1: ... Solution: ... Subproblem 2: find the wavelength.",
            "671.02 nm",
            "subproblem",
        ),
        (
            "Summary:\n- Subproblem 1: \\boxed{5}\n- Subproblem 2: \\boxed{7}\n",
            "Subproblem 0: x. Solution: 3. Subproblem 1: find y.",
            "5",
            "subproblem",
        ),
        ("Thus \\boxed{b = m}.", None, "b = m", "boxed"),
    ],
)
def test_extraction_shapes(text, problem, answer, method):
    ext = extract_answer(text, problem)
    assert ext is not None and (ext.text, ext.method) == (answer, method)


def test_extraction_shapes_verify():
    assert check("3", "Work...\n**Final answer for Subproblem 1:** 3 bushels").passed
    problem = "Subproblem 0: a. Solution: 12. Subproblem 1: b. Solution: 400. Subproblem 2: find the wavelength."
    listing = "All done.\n- Subproblem 0: 12 nm\n- Subproblem 1: 400 nm\n- Subproblem 2: 671.02 nm\n"
    assert check("671.02", listing, problem=problem).passed
    assert not check("400", listing, problem=problem).passed
    discussed = "Subproblem 2: Using the result of Subproblem 1, the energy is doubled, so \\boxed{5} eV."
    assert check("5", discussed, problem=problem).passed
    chain = "Converting, the volume is " + "x " * 200 + "\n\nV = 0.036 L = 36 mL"
    assert check("36", chain).passed
    assert check("0.036", chain).passed  # the same quantity in litres
    assert not check("0.36", chain).passed


def test_final_answer_paragraph_naming_two_quantities():
    problem = "A car accelerates from rest for 3 s at 2 m/s^2. What is the distance travelled by the car?"
    text = "Work " * 80 + "\n\n**Final Answer**\n\nThe final speed is 6 m/s and the distance travelled is 9 m.\n"
    ext = extract_answer(text, problem)
    assert (ext.text, ext.method) == ("9 m", "final_paragraph")
    assert check("9", text, problem=problem).passed
    assert not check("6", text, problem=problem).passed
    other = "A car accelerates from rest for 3 s at 2 m/s^2. Find its final speed."
    assert check("6", text, problem=other).passed


def test_degenerate_outputs_are_never_correct():
    looping = "Let me compute. " + "\\boxed{1}\n" * 300
    v = check("1", looping)
    assert (v.passed, v.reason) == (False, "degenerate"), v
    many = "".join(f"Try {i}: \\boxed{{1}} fails? " for i in range(40)) + "So the answer is \\boxed{1}."
    assert check("1", many).reason == "degenerate"
    padded = "We add them: 5 + 7 = 12, so \\boxed{12}." + "<|endoftext|>" * 200
    assert check("12", padded).passed
    cut = "First we note that " + "the sum of the terms grows, and " * 20 + "the value is 12, so the answer is:"
    assert check("12", cut).reason == "no_answer_extracted"
    assert check("12", "Since the sum of terms is even, " * 15 + "we get 12 - 3 =").reason == "no_answer_extracted"


def test_answer_size_and_complexity_guards():
    t0 = time.perf_counter()
    huge = "\\boxed{" + "x+" * 600_000 + "1}"
    v = check("1", huge)
    assert (v.passed, v.reason, v.details["side"]) == (False, "answer_too_large", "answer"), v
    v = check("1", "\\boxed{1}", MathSettings(max_answer_chars=5))
    assert v.passed
    assert check("123456", "\\boxed{123456}", MathSettings(max_answer_chars=5)).reason == "answer_too_large"
    v = check("3", "\\boxed{9^{9^{9^{9}}}}")
    assert (v.passed, v.reason) == (False, "answer_too_complex"), v
    assert check("3", "\\boxed{10^{99999999}}").reason == "answer_too_complex"
    assert check("3", "\\boxed{100000000!}").reason == "answer_too_complex"
    assert check("3", "\\boxed{(10^{4})!}").reason == "answer_too_complex"
    assert check("7 = 11a+c", "\\boxed{11a+c}").reason == "math_not_equal"  # an equation, not a name
    assert time.perf_counter() - t0 < 5
    assert too_complex("2^{10} + 3^{-2}") is None
    assert too_complex("9^{9^{9}}") == "power tower"
    assert e_notation("1e-5, 2.45E6 and 2e^{x}") == "1\\times 10^{-5}, 2.45\\times 10^{6} and 2e^{x}"
    assert split_top("(1,2), [3,4], 5") == ["(1,2)", "[3,4]", "5"]


@pytest.mark.parametrize(
    "name,text",
    [
        ("spaces", "The answer is 5" + " " * 400_000 + "x"),
        ("spaces_at_end", "so \\boxed{5}" + " " * 400_000),
        ("unclosed_boxes", "\\boxed{" * 30_000),
        ("unclosed_then_closed", "\\boxed{1" + "a" * 200_000 + "\\boxed{" * 30_000),
        ("bare_boxes", "\\boxed " * 20_000),
        ("boxed_then_spaces", "\\boxed" + " " * 400_000),
        ("answer_tags", "<answer>" * 60_000),
        ("final_spaces", "final " * 60_000 + "answer" + " " * 100_000),
        ("chat_tokens", "x <|im_end|>" * 30_000),
        ("chat_tokens_only", "5 <|im_end|>" + "<|endoftext|>\n" * 60_000),
        ("letters_between_boxes", "\\boxed{1}" + "a" * 400_000 + "\\boxed{2}"),
        ("boxed_loop", "\\boxed{1} " * 20_000),
        ("subproblems", "Subproblem 1: " * 40_000),
    ],
)
def test_extraction_is_linear_on_adversarial_input(name, text):
    t0 = time.perf_counter()
    extract_answer(text, "Subproblem 0: a. Subproblem 1: b.")
    assert time.perf_counter() - t0 < 1.0, name


def test_second_checker_is_recorded_and_disagreements_marked():
    from reasonmill.verify.math_second import second_opinion

    v = check("\\frac{1}{2}", "\\boxed{0.5}")
    assert v.details["second"] == {"passed": True, "via": "number"}
    assert "disagreement" not in v.details
    # math-verify reads "x \in [1,2]" as the interval; the second checker has no intervals
    v = check("[1,2]", "\\boxed{x \\in [1,2]}")
    assert v.passed and v.details["second"]["passed"] is False and v.details["disagreement"] is True
    strict = check("[1,2]", "\\boxed{x \\in [1,2]}", MathSettings(decide="both_must_pass"))
    assert (strict.passed, strict.reason, strict.details["math_reason"]) == (False, "second_checker_not_equal", "math_equal")
    either = check("[1,2]", "\\boxed{x \\in [1,2]}", MathSettings(decide="either"))
    assert (either.passed, either.reason) == (True, "math_equal")
    assert check("[1,2]", "\\boxed{x \\in [1,2]}", MathSettings(second_checker=False)).details.get("second") is None
    assert second_opinion("\\frac{\\sinh(at)}{a}", "\\frac{1}{2a}(e^{at}-e^{-at})").via == "points"
    assert second_opinion("1,3", "3, 1").via == "items"
    assert not second_opinion("42", "43").passed
    assert not second_opinion("2x+1", "2x-1").passed


def test_reference_audit_flags_unparsed_and_outvoted_references():
    from reasonmill.verify.math_audit import audit_reference

    outvoted = [check("(+5)(b+2)", f"Thus \\boxed{{(a+5)(b+2)}}{'.' * i}") for i in range(4)]
    outvoted.append(check("(+5)(b+2)", "\\boxed{(a+2)(b+5)}"))
    flag = audit_reference(outvoted)
    assert flag is not None and (flag.reason, flag.majority_answer, flag.agreeing, flag.responses) == (
        "majority_disagrees", "(a+5)(b+2)", 4, 5
    )
    fine = [check("12", "\\boxed{12}")] * 3 + [check("12", "\\boxed{13}")] * 3
    assert audit_reference(fine) is None  # as many right as agreeing wrong: not suspect
    assert audit_reference([check("12", "\\boxed{13}")] * 2) is None  # too few to say
    unparsed = audit_reference([check("\\lambda_{\\text{red}}/\\sqrt{2}", "\\boxed{3}")])
    assert unparsed is not None and unparsed.reason == "reference_unparsed"


@pytest.mark.parametrize(
    "gold, pred, problem, passed",
    [
        ("25", "\\boxed{25.001}", None, False),  # a contest integer takes only itself
        ("204", "\\boxed{204.00001}", None, False),
        ("25", "\\boxed{25.0}", None, True),  # the same number written as a decimal
        ("25", "\\boxed{24.96}", "Round your answer to the nearest tenth.", True),  # a stated precision
        ("6630", "\\boxed{6630.65}", None, True),  # a rounded measurement: relative 1e-4
    ],
)
def test_integer_references_below_1000_are_exact_unless_a_precision_is_stated(gold, pred, problem, passed):
    assert check(gold, pred, MathSettings(), None, problem).passed is passed


@pytest.mark.parametrize(
    "gold, answer, problem, passed",
    [
        # a time of day H:MM (two-digit minutes) is a time, never the ratio 4/30 = 2/15
        ("4:30", "\\boxed{4:30}", None, True),
        ("4:30", "\\boxed{04:30}", None, True),
        ("04:30", "\\boxed{4:30}", None, True),
        ("4:30", "\\boxed{4:31}", None, False),
        ("4:30", "\\boxed{2/15}", None, False),
        ("4:30", "\\boxed{\\frac{2}{15}}", None, False),
        ("4:30", "\\boxed{2:15}", None, False),  # the same ratio, another time
        ("4:30", "\\boxed{8:60}", None, False),
        ("9:05", "\\boxed{9:5}", None, False),
        ("2/15", "\\boxed{4:30}", None, False),
        ("4:30", "The answer is 4:30 PM.", None, True),  # no a.m./p.m. in the reference: either half
        ("4:30", "\\boxed{16:30}", None, True),
        ("4:30 p.m.", "\\boxed{16:30}", None, True),
        ("\\text{4:30 p.m.}", "\\boxed{4:30 \\text{ a.m.}}", None, False),
        ("4:30p..", "\\boxed{4:30}", None, True),  # the Qwen2.5-Math file's mangled reference
        ("9:24", "Anna, Stephanie and James meet again at 9:24.", "What is the earliest time?", True),
        # ratios keep working as ratios
        ("3:2", "\\boxed{3:2}", None, True),
        ("3:2", "\\boxed{6:4}", None, True),
        ("3:2", "\\boxed{\\frac{3}{2}}", None, True),
        ("3:2", "\\boxed{2:3}", None, False),
        ("1 : 2", "\\boxed{1:2}", None, True),
        # a two-digit second part in a problem that asks for a ratio is a ratio
        ("19:60", "\\boxed{19:60}", "Find the ratio of the length to the perimeter, in the form $a:b$.", True),
        ("1:25", "\\boxed{2:50}", "What is the ratio of the two areas?", True),
        ("1:25", "\\boxed{2:50}", None, False),  # without that, 1:25 is a time
        ("V_{1}:V_{2}=11:21", "\\boxed{11:21}", None, True),  # the reference names a ratio
        ("S_{MBCN}:S=7:32", "\\boxed{14:64}", None, True),
    ],
)
def test_clock_times_are_not_ratios(gold, answer, problem, passed):
    v = check(gold, answer, problem=problem)
    assert v.passed is passed, v
    if v.details.get("compared_as") == "time":
        assert "second" not in v.details  # the second checker reads 4:30 as a ratio too: not asked


@pytest.mark.parametrize(
    ("gold", "answer", "passed"),
    [
        ("1:2:3", "\\boxed{1:2:3}", True),
        ("1:2:3", "The ratio is \\boxed{2:4:6}", True),
        ("1:2:3", "\\boxed{0.5 : 1 : 1.5}", True),
        ("1:2:3", "\\boxed{\\text{1 : 2 : 3}}", True),
        ("2:3:4", "\\boxed{1:\\frac{3}{2}:2}", True),
        # read as expressions, a:b:c is (a/b)/c: 1:3:2 and 1/6 would equal 1:2:3
        ("1:2:3", "\\boxed{1:3:2}", False),
        ("1:2:3", "\\boxed{3:2:1}", False),
        ("1:2:3", "\\boxed{\\frac{1}{6}}", False),
        ("1:2:3", "\\boxed{1:2:3:4}", False),
        ("1:2:3", "\\boxed{2:4:7}", False),
    ],
)
def test_ratios_of_three_terms_compare_term_by_term(gold, answer, passed):
    v = check(gold, answer)
    assert v.passed is passed, v
    assert v.details.get("compared_as") == "ratio" or v.details.get("via") == "text"  # the same text needs no parse


def test_last_number_takes_a_time_or_ratio_whole():
    assert extract_answer("They arrive at 4:30.").text == "4:30"
    assert extract_answer("So the ratio of boys to girls is 3:2.").text == "3:2"
    assert extract_answer("Adding up, there are 30 in all.").text == "30"


@pytest.mark.parametrize(
    "gold,answer,problem,passed",
    [
        # a magnitude word scales the number, unless the problem counts in that word
        ("5", "\\boxed{5 \\text{ million}}", "How many people live there?", False),
        ("5", "\\boxed{5 \\text{ million}}", "How many millions of people live there?", True),
        ("5000", "\\boxed{5 \\text{ thousand}}", "How many seats?", True),
        ("2", "\\boxed{2 \\text{ dozen}}", "How many eggs?", False),
        ("24", "\\boxed{2 \\text{ dozen}}", "How many eggs?", True),
        ("7", "\\boxed{7 \\text{ thousandths}}", None, False),
        # a different name is a different answer; a lost name is not
        ("x=3", "\\boxed{y=3}", "Solve for x.", False),
        ("f(x)=2x", "\\boxed{g(x)=2x}", None, False),
        ("(x)=x^2-2x+2", "\\boxed{g(x) = x^2 - 2x + 2}", None, True),
        # a percent sign is dropped only when the problem asks for a percentage
        ("0.5", "\\boxed{0.5\\%}", "What is the probability of heads?", False),
        ("17.5", "\\boxed{17.5\\%}", "What percent of the class passed?", True),
    ],
)
def test_magnitude_words_names_and_percent_signs(gold, answer, problem, passed):
    """Found by the red team of 2026-12-07: each passed whatever its meaning."""
    v = check(gold, answer, problem=problem)
    assert v.passed is passed, v
