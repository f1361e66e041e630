"""Prompt frames: the instructions datasets wrap around a problem.

Why: "Return your final response within \\boxed{}." or LiveCodeBench's "read the inputs
from stdin ..." are not part of the problem. Decontamination would match unrelated
problems through them, and near-dedup would miss a copy that carries one (a short problem
with a long frame shares few n-grams with its bare copy). Both stages strip them.
"""

from __future__ import annotations

import re

#: regular expressions, lowercase, matched after NFKC + lowercasing
PROMPT_FRAMES = (
    r"return your final response within \\boxed\{\}\.?",
    r"let'?s think step by step and output the final answer within \\boxed\{\}\.?",
    r"please reason step by step, and put your final answer within \\boxed\{\}\.?",
    r"you will be given a question \(problem specification\) and will generate a correct python program"
    r" that matches the specification and passes all tests\.(?:\s*question:)?",
    # LiveCodeBench prompts: the frame and the code block after it (the starter code is a
    # separate field in most training sets, so the statement alone is compared)
    r"you will use the following starter code to write the solution to the problem and enclose your code"
    r" within delimiters\.(?:\s*```(?:python)?\n(?s:.*?)```)?",
    r"read the inputs from stdin solve the problem and write the answer to stdout \(do not directly test on"
    r" the sample inputs\)\. enclose your code within delimiters as follows\. ensure that when the python"
    r" program runs, it reads the inputs, runs the algorithm and writes output to stdout\."
    r"(?:\s*```(?:python)?\s*# your code here\s*```)?",
)

#: all frames in one case-insensitive pattern, for texts that are not lowercased first
PROMPT_FRAME_RE = re.compile("|".join(f"(?:{p})" for p in PROMPT_FRAMES), re.IGNORECASE)


#: every frame holds one of these literally; texts without any skip the regex, which is
#: slow (~100 µs a text) because of its case-insensitive alternation
_FRAME_MARKERS = ("boxed{}", "specification", "starter code", "stdin")


def strip_prompt_frames(text: str) -> str:
    """The text without the frames of ``PROMPT_FRAMES`` (each replaced by a blank)."""
    if not any(marker in text for marker in _FRAME_MARKERS):
        return text
    return PROMPT_FRAME_RE.sub(" ", text)
