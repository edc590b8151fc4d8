from trainlint.findings import Severity
from trainlint.rules import EngineRule


class SyntaxError_(EngineRule):
    """
    ## What it does
    Reports a file that cannot be parsed as Python, at the position of the parse error. The other files of
    the run are still checked. Old code is not a syntax error: a file that only parses under the grammar
    of Python 3.6 (`x.cuda(async=True)`, `async` as a parameter or attribute name, from the PyTorch 0.3
    days) is read with that grammar and checked by every rule. Nor is a Python 2 script: its `print x`,
    `print >>f, x`, `exec code in ns`, `except E, e:` and `raise E, msg` statements are read as their
    Python 3 spelling, line for line, so the rules check it at its own lines (fixes are not applied to
    such a file); backticks, `0777` and other Python 2 syntax still make it a syntax error.

    ## Why is this bad?
    trainlint cannot see anything in a file it cannot parse, so none of its rules ran there: a clean
    report would be a false reassurance. The interpreter would refuse to run the file too.

    ## Example
    ```python
    for x, y in loader
        loss = criterion(model(x), y)
    ```

    ## Use instead
    ```python
    for x, y in loader:
        loss = criterion(model(x), y)
    ```

    ## Fix safety
    No fix is offered.

    ## References
    - [Python grammar](https://docs.python.org/3/reference/grammar.html)
    """

    code = "TL001"
    name = "syntax-error"
    severity = Severity.ERROR
    summary = "The file cannot be parsed, so no rule could check it"
