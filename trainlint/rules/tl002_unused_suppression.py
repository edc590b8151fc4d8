from trainlint.findings import Severity
from trainlint.rules import EngineRule


class UnusedSuppression(EngineRule):
    """
    ## What it does
    With `--report-unused-suppressions` (or `report-unused-suppressions = true`), reports suppression
    comments that silence nothing: a `# noqa: TL101` or `# trainlint: ignore[TL101]` on a line where TL101
    is not reported, and malformed trainlint directives (`# trainlint: ignore TL101` without brackets, an
    unknown code such as `TL999`).

    ## Why is this bad?
    A stale suppression hides the next real finding on that line, and a malformed one silences nothing
    while looking as if it did. Codes of other tools in a `# noqa` comment are left alone; codes of rules
    that are not enabled in the run are not reported as unused.

    ## Example
    ```python
    model = nn.Sequential(nn.Linear(8, 1))  # noqa: TL101
    ```

    ## Use instead
    ```python
    model = nn.Sequential(nn.Linear(8, 1))
    ```

    ## Fix safety
    A safe fix (applied by `--fix`): it removes the unused suppression comment (the whole line when the
    comment stands alone), or only its unused codes; codes of other tools in a `# noqa` and a reason
    comment after it are kept. Removing a comment never changes what the program does.

    ## References
    - [ruff RUF100 unused-noqa](https://docs.astral.sh/ruff/rules/unused-noqa/)
    """

    code = "TL002"
    name = "unused-suppression"
    severity = Severity.WARNING
    summary = "A suppression comment silences nothing, or cannot be parsed"
