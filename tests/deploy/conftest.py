"""The deployment's offline checks (terraform/, cloudbuild.yaml, the Dockerfiles, the staged
functions). Tests marked ``tools`` install pinned tools from PyPI into .tools/ the first time
(checkov, terraform for fmt, a clean virtualenv for the functions): slow once, then cached."""

# The ``tools`` marker is declared in pyproject.toml.
